"""`build_teacher(cfg)`: a TeacherConfig (or a preset name / dict) -> a frozen Teacher, from local files only."""
from __future__ import annotations

from typing import Any

from mmtok.teachers.base import Teacher
from mmtok.teachers.config import TeacherConfig


def build_teacher(cfg: TeacherConfig | str | dict[str, Any], load_weights: bool = True) -> Teacher:
    """The teacher `cfg` describes, on CPU, frozen and in eval mode. AssetError (one line: the file, what was
    expected, what to do) when its weights are missing or do not fit the architecture; MmtokError for a
    configuration that cannot run (unknown architecture, layer out of range, transformers missing for hf).

    `load_weights=False` builds the architecture only (random weights, no file read; Hugging Face teachers still
    read config.json from their folder): for a model whose checkpoint or bundle holds the teacher's weights."""
    if not isinstance(cfg, TeacherConfig):
        cfg = TeacherConfig.model_validate(cfg)
    common = dict(layer=cfg.layer, norm=cfg.norm, resolution=cfg.resolution, mean=cfg.mean, std=cfg.std)
    if cfg.kind == "timm":
        from mmtok.teachers.timm_teacher import build_timm_teacher

        return build_timm_teacher(cfg.arch, cfg.weights if load_weights else None, kwargs=cfg.kwargs, **common)
    if cfg.kind == "open_clip":
        from mmtok.teachers.open_clip_teacher import build_open_clip_teacher

        return build_open_clip_teacher(cfg.arch, cfg.weights if load_weights else None, kwargs=cfg.kwargs, **common)
    if cfg.kind == "hf":
        from mmtok.teachers.hf_teacher import build_hf_teacher

        return build_hf_teacher(cfg.weights, kwargs=cfg.kwargs, **common)
    from mmtok.teachers.efficientnet_lite import load_efficientnet_lite
    from mmtok.teachers.timm_teacher import TimmTeacher

    if cfg.kwargs:
        from mmtok.errors import MmtokError

        raise MmtokError(f"teacher kind 'efficientnet_lite' takes no kwargs, got {cfg.kwargs}")
    model = load_efficientnet_lite(cfg.arch, cfg.weights, load_weights=load_weights)
    return TimmTeacher(model, f"efficientnet_lite:{cfg.arch}", **common)
