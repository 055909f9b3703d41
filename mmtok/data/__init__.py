"""Image data: `build_dataset` / `make_loader` over "demo", webdataset shards or a folder, and `pack_folder`.

Samples are {"image": float32 [3, R, R] in [-1, 1], "skipped": int, "bad": list[str]}; `BadSamples`
collects the "bad" entries of batches once each; `holdout=` splits off held-out validation data.
Names are imported on first use, so `import mmtok.data` itself loads neither torch nor webdataset.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "build_dataset": "mmtok.data.sources",
    "make_loader": "mmtok.data.sources",
    "collate_samples": "mmtok.data.sources",
    "source_kind": "mmtok.data.sources",
    "expand_shards": "mmtok.data.sources",
    "ImageStream": "mmtok.data.stream",
    "BadSamples": "mmtok.data.bad",
    "check_holdout": "mmtok.data.holdout",
    "holdout_score": "mmtok.data.holdout",
    "DataStreamError": "mmtok.data.stream",
    "pack_folder": "mmtok.data.pack",
    "PackReport": "mmtok.data.pack",
    "to_rgb": "mmtok.data.image",
    "decode_image": "mmtok.data.image",
    "image_to_tensor": "mmtok.data.image",
    "ImageDecodeError": "mmtok.data.image",
    "DEMO_TRAIN": "mmtok.data.demo",
    "DEMO_VAL": "mmtok.data.demo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mmtok.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
