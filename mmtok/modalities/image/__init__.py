"""The image modality: images float32 [B, C, H, W] in [-1, 1] under the batch key "image" (with "caption": str).

Its parts: reading and decoding (decode.py), the built-in demo photographs (demo.py), streams over folders and
shards (stream.py, folder.py, shards.py, sources.py), `mmtok data pack` for folders of images (pack.py), the
objective, validation suite, PatchGAN adversary and reconstruction grids shared by every image family
(objective.py, grid.py), `mmtok eval` on images with its rFID protocol (evaluate.py, fid_protocol.py), what
`mmtok.load` returns for an image bundle and its tokenizer.json keys (tokenizer.py) and the model card (card.py).
"""
from __future__ import annotations

from mmtok.modalities import Modality

MODALITY = Modality(
    name="image",
    sources={"demo": "mmtok.modalities.image.sources:image_demo",
             "folder": "mmtok.modalities.image.sources:image_folder",
             "shards": "mmtok.modalities.image.sources:image_shards"},
    evaluate="mmtok.modalities.image.evaluate:evaluate",
    tokenizer="mmtok.modalities.image.tokenizer:ImageTokenizer",
    bundle_meta="mmtok.modalities.image.tokenizer:bundle_meta",
    card="mmtok.modalities.image.card:model_card",
    lm_prefix="img",
    lm_inputs="mmtok.modalities.image.lm_inputs:read_inputs",
    pack="mmtok.modalities.image.pack:pack_folder",
    find_files="mmtok.modalities.image.decode:find_images",
)
