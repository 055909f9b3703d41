"""Motion data: windows of per-frame features from a folder of clips or the built-in DeepMimic clips.

Sources (declared in mmtok.modalities.motion's Modality.sources as "folder" and "demo"):
- a folder, searched recursively for .npy feature files, .bvh files and DeepMimic .txt/.json clips (read and
  converted by mmtok.modalities.motion.clips to the recipe's layout and fps);
- "demo": the DeepMimic humanoid clips that ship inside PyPI `pybullet` (pybullet_data/data/motions/): DEMO_TRAIN
  to train on, DEMO_VAL held out (never trained on: other performances of kinds of motion seen in training).
  humanoid3d_kick (1.5 s, not a cycle) is in neither: it is shorter than most windows.

Samples are {"motion": float32 [window, D] raw features (not normalised: the model normalises with the
statistics it carries), "clip": the clip's name, "start": first frame, "skipped": int, "bad": list[str]}.
train: endless; each pass visits this worker's clips in a fresh random order and takes one random window of
`spec.window` frames from each (seeded), mirrored left-right half the time with `spec.mirror`. val: one deterministic pass over every clip (sorted by name, clip i
read by worker i mod workers), each cut into consecutive non-overlapping windows from its first frame.
A clip is dropped, counted in "skipped" and named once in "bad" when it cannot be read, has fewer frames than a
window, or has no finite run of that length; non-finite frames split a clip and only its finite runs of at
least a window are used (the dropped frames are named too). With `holdout`, folders split by clip path
(mmtok.data.holdout).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from mmtok.data.holdout import relative_name, split_files
from mmtok.data.stream import DataStreamError, Place, SkipCounter, Stream
from mmtok.errors import DataError
from mmtok.modalities.motion.clips import (
    ClipError,
    FeatureDimError,
    bvh_positions,
    check_feature_shape,
    find_clips,
    layout_of,
    read_clip,
)

DEMO_TRAIN = (
    "humanoid3d_backflip", "humanoid3d_cartwheel", "humanoid3d_crawl", "humanoid3d_dance_a",
    "humanoid3d_getup_facedown", "humanoid3d_jump", "humanoid3d_punch", "humanoid3d_roll",
    "humanoid3d_run", "humanoid3d_spin", "humanoid3d_walk", "walker/0walk_forward", "walker/turn_left0",
    "walker/turn_left1", "walker/turn_right0",
)
DEMO_VAL = ("humanoid3d_dance_b", "humanoid3d_getup_faceup", "humanoid3d_spinkick", "walker/turn_right1")


def demo_dir() -> Path:
    """pybullet's folder of DeepMimic clips (pybullet_data/data/motions)."""
    import importlib.util

    spec = importlib.util.find_spec("pybullet_data")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the motion demo data are the DeepMimic clips inside PyPI pybullet, which is not installed",
                        hint='pip install "mmtok[motion]" (or pybullet), or give --data a folder of clips')
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "motions"


def demo_files(split: str) -> list[str]:
    """The demo clip files of `split` ("train" or "val")."""
    folder = demo_dir()
    files = [folder / f"{name}.txt" for name in (DEMO_TRAIN if split == "train" else DEMO_VAL)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{len(missing)} demo clip(s) missing, e.g. {missing[0]}",
                        hint="reinstall pybullet (pip install --force-reinstall pybullet)")
    return [str(f) for f in files]


class MotionStream(Stream):
    """Windows of features from `files` (see the module docstring); `root` names them (relative paths)."""

    def __init__(self, files: list[str], split: str, spec, *, root: str | None = None, source: str = "",
                 seed: int = 0, max_samples: int | None = None, holdout: float = 0.0):
        super().__init__(split, seed=seed, max_samples=max_samples, holdout=holdout)
        self.spec = spec
        self.root = root
        if self.holdout:
            train_files, val_files = split_files(root, files, self.holdout)
            self.held_counts = (len(val_files), len(files))
            files = val_files if split == "val" else train_files
        self.files = list(files)
        self.source = source or (root or "motion clips")
        self.window = int(spec.window)
        self._cache: dict[tuple[str, bool], tuple] = {}  # (path, mirrored) -> (runs, reason)

    def name(self, path: str) -> str:
        return relative_name(path, self.root) if self.root else Path(path).stem

    def __getstate__(self):  # workers read their own clips
        return {**self.__dict__, "_cache": {}}

    # ------------------------------------------------------------------------------------------- clips

    def runs(self, path: str, skips: SkipCounter, mirror: bool = False) -> list[tuple[int, np.ndarray]]:
        """(first frame, features) of the finite runs of at least one window of the clip at `path` (cached), []
        when it is dropped; a dropped clip, or one with non-finite frames, is passed to `skips` with the reason.
        `mirror`: of the clip mirrored left-right ([] when it cannot be, nothing reported)."""
        key = (path, mirror)
        if key not in self._cache:
            self._cache[key] = self._load(path, mirror)
        runs, reason = self._cache[key]
        if reason and not mirror:
            skips.skip(self.name(path), reason)
        return runs

    def _load(self, path: str, mirror: bool = False) -> tuple[list[tuple[int, np.ndarray]], str | None]:
        try:
            feats = read_clip(path, self.spec, mirror=mirror)
        except FeatureDimError:
            raise
        except DataError as e:
            return [], e.message
        finite = np.isfinite(feats).all(axis=1)
        runs, start = [], None
        for i, ok in enumerate(list(finite) + [False]):
            if ok and start is None:
                start = i
            elif not ok and start is not None:
                if i - start >= self.window:
                    runs.append((start, np.ascontiguousarray(feats[start:i])))
                start = None
        bad = int((~finite).sum())
        if not runs:
            why = (f"{len(feats)} frames at {self.spec.fps:g} fps, shorter than the {self.window}-frame window"
                   if bad == 0 else f"no finite run of {self.window} frames ({bad} of {len(feats)} frames non-finite)")
            return [], why
        return runs, (f"{bad} of {len(feats)} frames non-finite, dropped" if bad else None)

    # ------------------------------------------------------------------------------------------- iteration

    def _items(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator[dict]:
        return self._train_windows(place, rng, skips) if self.train else self._val_windows(place, skips)

    def _to_sample(self, item: dict) -> dict:
        return item

    def _sample(self, path: str, run: tuple[int, np.ndarray], start: int) -> dict:
        """The window at `start` of a run; "start" counts frames from the clip's first."""
        offset, feats = run
        x = torch.from_numpy(feats[start:start + self.window].copy())
        return {"motion": x, "clip": self.name(path), "start": int(offset + start)}

    def _train_windows(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator[dict]:
        mine = self.files[place.index::place.total] or self.files
        while True:
            good = 0
            order = list(mine)
            rng.shuffle(order)
            for path in order:
                runs = self.runs(path, skips)
                if not runs:
                    continue
                if getattr(self.spec, "mirror", False) and rng.random() < 0.5:
                    runs = self.runs(path, skips, mirror=True) or runs
                run = rng.choices(runs, weights=[len(r) - self.window + 1 for _, r in runs])[0]
                good += 1
                yield self._sample(path, run, rng.randint(0, len(run[1]) - self.window))
            if good == 0:
                if len(mine) == len(self.files):
                    raise self._nothing(skips)
                mine = self.files

    def _val_windows(self, place: Place, skips: SkipCounter) -> Iterator[dict]:
        count = 0
        for path in self.files:
            for run in self.runs(path, skips):
                for start in range(0, len(run[1]) - self.window + 1, self.window):
                    if self.max_samples is not None and count >= self.max_samples:
                        return
                    if count % place.total == place.index:
                        yield self._sample(path, run, start)
                    count += 1

    def check_usable(self) -> None:
        """Before any work: at least one clip gives a window (read until one does); DataError naming why not.
        Validation is decided here, not discovered empty after the first training steps."""
        skips = SkipCounter()
        if not any(self.runs(path, skips) for path in self.files):
            raise self._nothing(skips)

    def _nothing(self, skips: SkipCounter) -> DataStreamError:
        short = "shorter than the" in skips.describe() or "no finite run" in skips.describe()
        hint = (f"clips need at least {self.window} finite frames at {self.spec.fps:g} fps; lower model.window or "
                "check the files" if short else
                f"every clip failed to read in the {self.spec.features} layout (reasons above); check the files, "
                "model.features and model.fps")
        theirs = "" if short else self._their_layout()
        if theirs:
            retrain = ("mmtok train motion_quickstart" if self.source.startswith("demo")
                       else f"mmtok train motion_bvh --data {self.root}")
            hint = (f"these clips are {theirs}; the model's layout is {self.spec.features}: use a model or recipe of "
                    f"their layout (model.features), e.g. train one on them with {retrain}")
        if self.holdout and not self.train and not short:
            hint = (f"{hint}; the clips held out for validation must share the training clips' skeleton and layout "
                    "(or give data.val a folder of such clips)")
        return DataStreamError(f"no usable clip among the {len(self.files)} clip(s) of {self.describe()} "
                               f"({skips.total} dropped: {skips.describe()})", hint=hint)

    def _their_layout(self) -> str:
        """What layout the clips are in ("" when that cannot be told, or is the model's own), for error hints."""
        from mmtok.modalities.motion.prepare import resolve_features

        try:
            features, joints, why = resolve_features(self.root or "", getattr(self.spec, "joint_map", None))
        except DataError:
            return ""
        if features == self.spec.features and joints == getattr(self.spec, "num_joints", None):
            return ""
        return f"{features}" + (f" with {joints} joints" if joints else "") + f" ({why})"


# ------------------------------------------------------------------------------------------------ sources

def check_folder(root: str, files: list[str], spec) -> None:
    """Recipe problems that must stop before any work (DataError, one line): feature files of another width,
    joint-position arrays given as features, a BVH skeleton that does not map onto the layout (the first
    BVH file is read; later ones that fail are dropped and named like any bad clip)."""
    layout = layout_of(spec)
    for f in files:
        if f.lower().endswith(".npy"):
            try:
                shape = np.load(f, mmap_mode="r", allow_pickle=False).shape
            except (OSError, ValueError):
                continue  # unreadable: dropped and named by the stream
            check_feature_shape(f, shape, layout.dim)
    first_bvh = next((f for f in files if f.lower().endswith(".bvh")), None)
    if first_bvh is not None and spec.features == "deepmimic":
        raise DataError(f"{first_bvh}: BVH motion converts to the humanml3d or positions layouts; this recipe's "
                        "model.features is deepmimic (the DeepMimic humanoid's own layout)",
                        hint=f"for BVH mocap: mmtok train motion_bvh --data {root} (layout and Mean/Std from your "
                        "clips)")
    if first_bvh is not None and spec.features in ("humanml3d", "positions"):
        try:
            bvh_positions(first_bvh, spec)
        except ClipError:
            pass  # a broken file: dropped and named by the stream
        except DataError as e:
            raise type(e)(f"{first_bvh}: {e.message}", hint=e.hint) from None


def motion_folder(source: str, split: str, spec, *, seed: int = 0, max_samples=None, shuffle_buffer: int = 0,
                  holdout: float = 0.0) -> MotionStream:
    files = find_clips(source)
    if not files:
        raise DataError(f"no motion clips in folder {source}",
                        hint="put .npy feature files, .bvh files or DeepMimic .txt clips in it (searched recursively)")
    check_folder(source, files, spec)
    stream = MotionStream(files, split, spec, root=source, source=source, seed=seed, max_samples=max_samples,
                          holdout=holdout)
    if split == "val":
        stream.check_usable()
    return stream


def motion_demo(source: str, split: str, spec, *, seed: int = 0, max_samples=None, shuffle_buffer: int = 0,
                holdout: float = 0.0) -> MotionStream:
    if holdout:
        raise DataError("holdout does not apply to 'demo': its val split is already separate clips",
                        hint="use split 'val' of 'demo' with holdout=0")
    if spec.features == "humanml3d":
        raise DataError("the demo clips are DeepMimic's humanoid, which has no HumanML3D (SMPL) skeleton",
                        hint="use model.features=deepmimic (the motion_quickstart recipe), or give --data HumanML3D "
                        "feature files")
    stream = MotionStream(demo_files(split), split, spec, root=str(demo_dir()), source=f"demo ({split} clips)",
                          seed=seed, max_samples=max_samples)
    if split == "val":
        stream.check_usable()
    return stream
