"""What a motion recipe settles from its training data when `mmtok train` starts (the motion_vq family's `prepare`,
see mmtok.families.Family): `model.features: auto` and `model.stats: train`, so that a folder of BVH files trains
with one command (`mmtok train motion_bvh --data MY_BVH_FOLDER`).

- features "auto": the layout of the first readable training clip of data.train (held-out clips not looked at): a BVH file whose skeleton maps onto
  HumanML3D's 22 SMPL joints -> "humanml3d"; any other BVH skeleton -> "positions" with its joint count; a DeepMimic
  clip (or "demo") -> "deepmimic"; a .npy feature file by its width (263 humanml3d, 215 deepmimic, 6 J positions).
- stats "train": Mean/Std over the clips the run trains on (mmtok.modalities.motion.pack.compute_stats, with
  data.val=holdout's clips left out), written to RUN/stats.npz by a fresh run and read back by a resumed one.

The recipe returned (and recorded in the run's recipe.yaml) names what was settled: features, num_joints and the
stats file, so evaluation, export and resumption never guess again.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmtok.data.holdout import relative_name, split_files
from mmtok.errors import CheckpointError, DataError
from mmtok.modalities.motion.clips import BVHMappingError, ClipError, bvh_skeleton, find_clips, map_smpl_joints
from mmtok.modalities.motion.layout import layout_for

STATS_FILE = "stats.npz"
WIDTHS = {layout_for("humanml3d").dim: "humanml3d", layout_for("deepmimic").dim: "deepmimic"}


def prepare_motion(recipe, run_dir, fresh: bool):
    """The motion_vq family's `prepare`: the recipe with features "auto" and stats "train" settled (see the module
    docstring); any other recipe unchanged. One line on stderr says what was settled and why."""
    from rich.console import Console
    from rich.markup import escape

    say = Console(stderr=True, soft_wrap=True).print
    spec, source = recipe.model, recipe.data.train
    d = recipe.data
    holdout = d.holdout_fraction if d.val == "holdout" else 0.0
    if spec.features == "auto":
        features, num_joints, why = resolve_features(source, spec.joint_map, holdout)
        spec = type(spec).model_validate({**spec.model_dump(), "features": features, "num_joints": num_joints})
        say(f"model.features=auto: {features}" + (f" with model.num_joints={num_joints}" if num_joints else "")
            + f" ({escape(why)})")
    if spec.stats == "train":
        path = Path(run_dir) / STATS_FILE
        if fresh:
            from mmtok.files import atomic_write
            from mmtok.modalities.motion.pack import compute_stats, demo_stats

            if source != "demo":
                from mmtok.modalities.motion.sources import check_folder

                check_folder(source, _clips(source), spec)  # a wrong layout stops here in one line, before any work
            mean, std = demo_stats(spec) if source == "demo" else compute_stats(source, spec, holdout)
            atomic_write(path, lambda tmp: np.savez(tmp, mean=mean, std=std))
            say(f"model.stats=train: Mean/Std of the training clips of {escape(source)}"
                + (" (held-out clips left out)" if holdout else "") + f" -> {escape(str(path))}")
        elif not path.is_file():
            raise CheckpointError(f"cannot resume: {path} (the statistics this run computed from its training clips) "
                                  "is missing", hint="start a new run in another --out")
        spec = spec.model_copy(update={"stats": str(path)})
    return recipe if spec is recipe.model else recipe.model_copy(update={"model": spec})


def resolve_features(source: str, joint_map: dict | None = None, holdout: float = 0.0) -> tuple[str, int | None, str]:
    """(features, num_joints or None, why) from the first readable training clip of `source` (`holdout`: the
    clips a run with data.val=holdout holds out are not looked at); DataError, one line, when no clip tells."""
    if source == "demo":
        return "deepmimic", None, "the demo clips are DeepMimic's humanoid"
    files = _clips(source)
    if holdout:
        files = split_files(source, files, holdout)[0]
    unreadable = []
    for kind in (".bvh", ".txt", ".json", ".npy"):
        for f in (f for f in files if f.lower().endswith(kind)):
            name = relative_name(f, source)
            if kind == ".bvh":
                try:
                    names = list(bvh_skeleton(f).joint_names)
                except ClipError as e:
                    unreadable.append(f"{name}: {e.message}")
                    continue
                try:
                    map_smpl_joints(names, joint_map)
                    return "humanml3d", None, f"{name}'s skeleton maps onto HumanML3D's 22 SMPL joints"
                except BVHMappingError as e:
                    lacking = e.message.split(": ", 1)[1].split(" (its joints")[0]
                    return "positions", len(names), (f"{name}'s skeleton of {len(names)} joints lacks {lacking} of "
                                                     "HumanML3D's SMPL joints: root-relative joint positions instead")
            if kind in (".txt", ".json"):
                return "deepmimic", None, f"{name} is a DeepMimic clip"
            if kind == ".npy":
                try:
                    shape = np.load(f, mmap_mode="r", allow_pickle=False).shape
                except (OSError, ValueError) as e:
                    unreadable.append(f"{name}: {str(e).splitlines()[0][:80]}")
                    continue
                width = shape[-1] if len(shape) == 2 else None
                if width in WIDTHS:
                    return WIDTHS[width], None, f"{name} holds {width} features per frame"
                if width and width % 6 == 0:
                    return "positions", width // 6, f"{name} holds {width} = 6 x {width // 6} features per frame"
                raise DataError(f"model.features=auto cannot tell the layout of {name} (shape {list(shape)})",
                                hint="feature files are [T, 263] (humanml3d), [T, 215] (deepmimic) or [T, 6 J] "
                                "(positions); or set model.features")
    raise DataError(f"model.features=auto found no readable clip in {source}"
                    + (f" ({len(unreadable)} unreadable, e.g. {unreadable[0]})" if unreadable else ""),
                    hint="check the files, or set model.features (humanml3d, deepmimic or positions)")


def _clips(source: str) -> list[str]:
    if not Path(source).is_dir():
        raise DataError(f"motion data must be a folder of clips or 'demo'; {source} is not a folder",
                        hint="give --data a folder of .bvh files, DeepMimic .txt clips or .npy feature files")
    files = find_clips(source)
    if not files:
        raise DataError(f"no motion clips in folder {source}",
                        hint="put .npy feature files, .bvh files or DeepMimic .txt clips in it (searched recursively)")
    return files
