"""The image modality: images float32 [B, C, H, W] in [-1, 1] under the batch key "image" (with "caption": str).

Its parts: reading and decoding (decode.py), the built-in demo photographs (demo.py), streams over folders and
shards (stream.py, folder.py, shards.py, sources.py), `mmtok data pack` for folders of images (pack.py), the
objective, validation suite, PatchGAN adversary and reconstruction grids shared by every image family
(objective.py, grid.py), `mmtok eval` on images with its rFID protocol (evaluate.py, fid_protocol.py), what
`mmtok.load` returns for an image bundle and its tokenizer.json keys (tokenizer.py) and the model card (card.py).
"""
from __future__ import annotations

import os
from pathlib import Path

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


def require_image_bundle(bundle: str | os.PathLike, command: str) -> None:
    """`mmtok encode` / `decode` (image commands) take image bundles; another modality's bundle is one line naming
    what does. A folder that is not a readable bundle passes: mmtok.load says what is wrong with it."""
    import json

    from mmtok.errors import MmtokError

    bundle = Path(bundle)
    try:
        modality = json.loads((bundle / "tokenizer.json").read_text()).get("modality", "image")
    except (OSError, ValueError):
        return
    if modality != "image":
        article = "an" if modality[:1] in "aeiou" else "a"
        raise MmtokError(f"mmtok {command} reads and writes images; {bundle} is {article} {modality} tokenizer",
                         hint=f"for {modality}: `mmtok tokenize {bundle} --data FOLDER --out DIR` writes the ids of a "
                         "dataset; in Python, mmtok.load(BUNDLE).encode(...) / .decode(ids)")
