"""The motion modality: pose sequences as per-frame feature vectors (mmtok.data.motion_layout), their data
sources, objective and metrics, `mmtok eval`, the tokenizer `mmtok.load` returns, and packing.

Importing this package registers the data sources "motion/folder" (a folder of .npy features, .bvh files or
DeepMimic clips) and "motion/demo" (the DeepMimic clips inside PyPI pybullet); see mmtok.data.motion.
Webdataset shards of motion are not supported yet ("motion/shards" is not registered).
"""
from __future__ import annotations

from mmtok.data.sources import DATA_SOURCES
from mmtok.modalities import Modality


def _folder(source, split, spec, **options):
    from mmtok.data.motion import motion_folder

    return motion_folder(source, split, spec, **options)


def _demo(source, split, spec, **options):
    from mmtok.data.motion import motion_demo

    return motion_demo(source, split, spec, **options)


for _name, _builder in (("motion/folder", _folder), ("motion/demo", _demo)):
    if _name not in DATA_SOURCES:
        DATA_SOURCES.register(_name, _builder)

MODALITY = Modality(
    name="motion",
    evaluate="mmtok.modalities.motion.evaluate:evaluate_motion",
    tokenizer="mmtok.modalities.motion.tokenizer:MotionTokenizer",
    bundle_meta="mmtok.modalities.motion.tokenizer:motion_bundle_meta",
    card="mmtok.modalities.motion.tokenizer:motion_card",
    lm_prefix="mot",
    pack="mmtok.data.motion_pack:pack_motion",
)
