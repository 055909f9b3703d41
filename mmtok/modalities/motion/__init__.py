"""The motion modality: pose sequences as per-frame feature vectors (mmtok.modalities.motion.layout), their data
sources, objective and metrics, `mmtok eval`, the tokenizer `mmtok.load` returns, and packing.

Its data sources are "folder" (a folder of .npy features, .bvh files or DeepMimic clips) and "demo" (the DeepMimic
clips inside PyPI pybullet); see mmtok.modalities.motion.sources. Webdataset shards of motion are not supported yet
(no "shards" source). Kinematics and feature layouts: features.py, layout.py, clips.py.
"""
from __future__ import annotations

from mmtok.modalities import Modality

MODALITY = Modality(
    name="motion",
    sources={"folder": "mmtok.modalities.motion.sources:motion_folder",
             "demo": "mmtok.modalities.motion.sources:motion_demo"},
    evaluate="mmtok.modalities.motion.evaluate:evaluate_motion",
    tokenizer="mmtok.modalities.motion.tokenizer:MotionTokenizer",
    bundle_meta="mmtok.modalities.motion.tokenizer:motion_bundle_meta",
    card="mmtok.modalities.motion.tokenizer:motion_card",
    lm_prefix="mot",
    lm_inputs="mmtok.modalities.motion.lm_inputs:read_inputs",
    pack="mmtok.modalities.motion.pack:pack_for_recipe",
    pack_summary="mmtok.modalities.motion.pack:summary_lines",
    find_files="mmtok.modalities.motion.clips:find_clips",
)
