"""Data of every modality, modality-free: `build_dataset` / `make_loader` over a source string ("demo", webdataset
shards, a folder; mmtok.data.sources) through the source builders a modality declares (`Modality.sources`), one
stream base with split / holdout / sharding / skip accounting (mmtok.data.stream), shard packing
(mmtok.data.pack), held-out splits (mmtok.data.holdout) and bad-sample accounting (`BadSamples`).

Samples are {MODALITY: float32 tensor, "skipped": int, "bad": list[str], ...}. Names are imported on first use, so
`import mmtok.data` itself loads neither torch nor webdataset.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "build_dataset": "mmtok.data.sources",
    "make_loader": "mmtok.data.sources",
    "collate_samples": "mmtok.data.sources",
    "source_kind": "mmtok.data.sources",
    "expand_shards": "mmtok.data.sources",
    "Stream": "mmtok.data.stream",
    "DataStreamError": "mmtok.data.stream",
    "BadSamples": "mmtok.data.bad",
    "check_holdout": "mmtok.data.holdout",
    "holdout_score": "mmtok.data.holdout",
    "PackReport": "mmtok.data.pack",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mmtok.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
