"""Motion statistics and packing: Mean/Std over a training split, and clips converted to feature files.

    mean, std = compute_stats("clips/", spec, holdout=0.05)    # over the clips a run with that holdout trains on
    report = pack_motion("clips/", "packed/", spec, holdout=0.05)
    # packed/train/<clip>.npy and (with a holdout) packed/val/<clip>.npy features [T, D] at spec.fps,
    # packed/Mean.npy, packed/Std.npy (training clips only), packed/motion.json: never among the clips

`spec` is a motion model config (mmtok.families.motion_vq.config.MotionVQConfig: features, fps, joint_map, ...).
The statistics follow HumanML3D's convention (mmtok.modalities.motion.features.mean_std) and are computed over every
finite frame of the training split only: with `holdout`, the clips held out by name (mmtok.data.holdout, the
same rule `data.val=holdout` uses) are converted but left out of Mean/Std. A packed folder is both training
data (`--data packed/train --set data.val=packed/val`) and the recipe's statistics (`model.stats=packed`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from mmtok.data.holdout import check_holdout, relative_name, split_files
from mmtok.errors import DataError
from mmtok.modalities.motion.clips import find_clips, layout_of, read_clip
from mmtok.modalities.motion.features import mean_std


@dataclass
class PackReport:
    """What `pack_motion` did: clips written (train / held out), frames used for the statistics, clips dropped."""

    out: str
    written: int = 0
    held_out: int = 0
    frames: int = 0
    dropped: list[str] = field(default_factory=list)  # "NAME: REASON"
    train_command: str = ""  # set by pack_for_recipe: the `mmtok train` line for these features

    def summary(self) -> str:
        line = (f"{self.written} clips -> {self.out} ({self.held_out} held out of the statistics), Mean/Std over "
                f"{self.frames} frames")
        if self.dropped:
            line += f"; {len(self.dropped)} dropped (e.g. {self.dropped[0]})"
        return line


def _finite_rows(feats: np.ndarray) -> np.ndarray:
    return feats[np.isfinite(feats).all(axis=1)]


def compute_stats(source: str, spec, holdout: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(Mean, Std) float32 [D] over the finite frames of the training clips in folder `source` (see the module
    docstring). DataError when no clip is usable."""
    files = find_clips(source)
    train, _ = split_files(source, files, check_holdout(holdout)) if holdout else (files, [])
    clips, errors = [], []
    for f in train:
        try:
            clips.append(_finite_rows(read_clip(f, spec)))
        except DataError as e:
            errors.append(f"{relative_name(f, source)}: {e.message}")
    return _stats(clips, spec, source, errors)


def _stats(clips: list[np.ndarray], spec, source: str, errors: list[str]):
    clips = [c for c in clips if len(c)]
    if not clips:
        raise DataError(f"no usable clip in {source} to compute Mean/Std from"
                        + (f" ({len(errors)} dropped, e.g. {errors[0]})" if errors else ""),
                        hint="check the files and model.features / model.fps")
    return mean_std(clips, layout_of(spec))


@lru_cache(maxsize=4)
def _demo_stats(features: str, num_joints, fps: float) -> tuple[np.ndarray, np.ndarray]:
    from types import SimpleNamespace

    from mmtok.modalities.motion.sources import demo_files

    spec = SimpleNamespace(features=features, num_joints=num_joints, fps=fps, joint_map={}, bvh_scale=None)
    clips = [_finite_rows(read_clip(f, spec)) for f in demo_files("train")]
    return _stats(clips, spec, "demo", [])


def demo_stats(spec) -> tuple[np.ndarray, np.ndarray]:
    """Mean/Std of the built-in clips' training split (mmtok.modalities.motion.sources.DEMO_TRAIN) in `spec`'s layout and fps."""
    mean, std = _demo_stats(spec.features, spec.num_joints, float(spec.fps))
    return mean.copy(), std.copy()


def pack_motion(source: str, out: str, spec, *, holdout: float = 0.0, overwrite: bool = False) -> PackReport:
    """Convert every clip under `source` to `out/train|val/<relative path>.npy` features and write Mean.npy /
    Std.npy over the training split, plus motion.json (layout, fps, holdout, counts). `out` must be absent or empty unless
    `overwrite`. Clips that cannot be read are dropped and listed in the report."""
    files = find_clips(source)
    if not files:
        raise DataError(f"no motion clips in folder {source}",
                        hint="give a folder of .bvh files, DeepMimic .txt clips or .npy feature files")
    out_dir = Path(out)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not overwrite)):
        raise DataError(f"{out_dir} exists and is not an empty folder", hint="choose a new folder for the packed clips")
    _, held = split_files(source, files, check_holdout(holdout)) if holdout else (files, [])
    held = set(held)
    report = PackReport(out=str(out_dir))
    train_clips = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in files:
        name = relative_name(f, source)
        try:
            feats = read_clip(f, spec)
        except DataError as e:
            report.dropped.append(f"{name}: {e.message}")
            continue
        part = "val" if f in held else "train"  # clips always in a subfolder: OUT holds Mean/Std/motion.json
        target = out_dir / part / Path(name).with_suffix(".npy")
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, feats.astype(np.float32))
        report.written += 1
        if f in held:
            report.held_out += 1
        else:
            rows = _finite_rows(feats)
            report.frames += len(rows)
            train_clips.append(rows)
    mean, std = _stats(train_clips, spec, source, report.dropped)
    np.save(out_dir / "Mean.npy", mean)
    np.save(out_dir / "Std.npy", std)
    layout = layout_of(spec)
    (out_dir / "motion.json").write_text(json.dumps({
        "features": layout.kind, "feature_dim": layout.dim, "num_joints": layout.num_joints, "fps": float(spec.fps),
        "slices": {k: list(v) for k, v in layout.slices.items()}, "source": str(source), "holdout": holdout,
        "clips": report.written, "held_out": report.held_out, "stats_frames": report.frames,
        "dropped": report.dropped}, indent=2))
    return report


SHOWN_DROPS = 5


def pack_for_recipe(src: str | os.PathLike, out: str, *, recipe: str = "motion_quickstart",
                    val_fraction: float = 0.0) -> PackReport:
    """`mmtok data pack --modality motion`: the clips under `src` as features in the layout and fps of `recipe`'s
    model (pack_motion), with the command that trains on them in `train_command`. RecipeError (one line) when the
    recipe is not a motion recipe."""
    from mmtok import config, families
    from mmtok.errors import RecipeError

    spec = config.load(recipe).model
    if families.get(spec.family).modality != "motion":
        raise RecipeError(f"recipe {recipe!r} is not a motion recipe", hint="give --recipe motion_quickstart, "
                          "motion_t2m_gpt, motion_momask_rvq or a YAML of the motion family")
    report = pack_motion(str(src), out, spec, holdout=val_fraction)
    data = f"{out}/train --set data.val={out}/val" if val_fraction else f"{out}/train --set data.val=null"
    report.train_command = f"mmtok train {recipe} --data {data} --set model.stats={out}"
    return report


def summary_lines(report: PackReport) -> list[str]:
    """What `mmtok data pack` prints after packing motion."""
    lines = [report.summary()] + [f"dropped {line}" for line in report.dropped[:SHOWN_DROPS]]
    if len(report.dropped) > SHOWN_DROPS:
        lines.append(f"... and {len(report.dropped) - SHOWN_DROPS} more (all listed in {report.out}/motion.json)")
    return lines + ["train on them with:", f"  {report.train_command}"]
