"""Frozen teachers (feature extractors) and pretrained backbones, loaded only from local files.

- `TeacherConfig` (torch-free; recipes embed it), `TEACHER_PRESETS`, `CLASSIFIERS`
- `build_teacher(cfg) -> Teacher`: `teacher(x in [-1, 1]) -> TeacherOutput(patches [B, N, C], global_ [B, C])`
- `load_classifier(name) -> ImageNetClassifier`: logits [B, 1000] for images in [-1, 1] (evaluation)
- `load_efficientnet_lite(arch, weights)`: timm EfficientNet-Lite from the shipped ImageNet weights
- `load_lpips(net, weights)`, `lpips_available(...)`: the LPIPS network (metric and perceptual loss)

Importing this package (or `mmtok.teachers.config`) does not import torch; the rest loads on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from mmtok.teachers.config import CLASSIFIERS, TEACHER_KINDS, TEACHER_PRESETS, TeacherConfig

_LAZY = {
    "Teacher": "mmtok.teachers.base",
    "TeacherOutput": "mmtok.teachers.base",
    "build_teacher": "mmtok.teachers.build",
    "ImageNetClassifier": "mmtok.teachers.efficientnet_lite",
    "load_classifier": "mmtok.teachers.efficientnet_lite",
    "load_efficientnet_lite": "mmtok.teachers.efficientnet_lite",
    "LPIPSNetwork": "mmtok.teachers.lpips",
    "load_lpips": "mmtok.teachers.lpips",
    "lpips_available": "mmtok.teachers.lpips",
}

__all__ = ["CLASSIFIERS", "TEACHER_KINDS", "TEACHER_PRESETS", "TeacherConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmtok.teachers' has no attribute {name!r}")
