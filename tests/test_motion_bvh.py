"""BVH mocap in one command: `mmtok train motion_bvh --data FOLDER` settles the layout (model.features=auto) and the
Mean/Std (model.stats=train) from the training clips, validates on held-out clips checked before step 0, and resumes
with the statistics it wrote. BVH files are made in tmp_path; nothing is downloaded."""
from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from mmtok import config
from mmtok.errors import DataError
from mmtok.modalities.motion.layout import HUMANML3D, SMPL_JOINTS
from mmtok.modalities.motion.prepare import resolve_features

pytest.importorskip("pybvh", reason="pybvh (the motion extra) is not installed")

from test_motion_data import MIXAMO, write_bvh  # noqa: E402

SMALL = (["Hips", "Chest", "Arm", "Hand", "Leg"], (-1, 0, 1, 2, 0),
         [(0, 0, 0), (0, 0.3, 0), (0.2, 0.1, 0), (0.3, 0, 0), (0.1, -0.5, 0)])
TINY = ["model.width=16", "model.depth=1", "model.quantizer.codebook_size=16", "model.quantizer.dim=8",
        "model.window=16", "data.batch_size=4", "data.num_workers=0", "data.val_samples=8", "data.holdout_fraction=0.2",
        "trainer.max_steps=3", "trainer.val_every=3", "trainer.ckpt_every=3", "trainer.log_every=1",
        "trainer.max_minutes=null"]


def mixamo_folder(root, n=6, frames=40):
    root.mkdir()
    names = [MIXAMO[j] for j in SMPL_JOINTS]
    for i in range(n):
        write_bvh(root / f"take{i}.bvh", names, HUMANML3D.parents, HUMANML3D.offsets, frames=frames + 3 * i)
    return root


def test_motion_bvh_trains_on_a_bvh_folder_with_one_command_and_resumes(tmp_path, capsys):
    from mmtok.modalities.motion.pack import compute_stats
    from mmtok.train.run import train

    data = mixamo_folder(tmp_path / "mocap")
    run = tmp_path / "run"
    recipe = config.load("motion_bvh", [f"data.train={data}", *TINY])
    assert recipe.model.features == "auto" and recipe.model.stats == "train" and recipe.data.val == "holdout"
    summary = train(recipe, run)
    assert summary["status"] == "finished" and np.isfinite(summary["final"]["val/mpjpe"])
    saved = yaml.safe_load((run / "recipe.yaml").read_text())["model"]
    assert saved["features"] == "humanml3d" and saved["stats"] == str(run / "stats.npz")
    settled = config.load_stored(str(run / "recipe.yaml")).model
    mean, std = compute_stats(str(data), settled, holdout=0.2)  # the training clips only
    with np.load(run / "stats.npz") as z:
        assert np.allclose(z["mean"], mean) and np.allclose(z["std"], std) and z["mean"].shape == (263,)
    err = capsys.readouterr().err
    assert re.search(r"model.features=auto: humanml3d \(take\d.bvh's skeleton maps onto HumanML3D's 22 SMPL", err)
    assert re.search(r"validating on \d of 6 samples", err)

    again = train(config.load("motion_bvh", [f"data.train={data}", *TINY, "trainer.max_steps=5"]), run, resume=True)
    assert again["step"] == 5  # the same command resumes (as a requeued job does): features and stats read back
    (run / "stats.npz").unlink()
    with pytest.raises(Exception, match="stats.npz .* is missing"):
        train(config.load("motion_bvh", [f"data.train={data}", *TINY, "trainer.max_steps=7"]), run, resume=True)


def test_auto_features_take_the_first_training_clips_layout(tmp_path):
    mocap = tmp_path / "other"
    mocap.mkdir()
    write_bvh(mocap / "arm.bvh", *SMALL, frames=40)
    assert resolve_features(str(mocap))[:2] == ("positions", 5)  # a skeleton SMPL's names miss: its own positions
    npy = tmp_path / "npy"
    npy.mkdir()
    np.save(npy / "a.npy", np.zeros((40, 263), np.float32))
    assert resolve_features(str(npy))[:2] == ("humanml3d", None)
    np.save(npy / "a.npy", np.zeros((40, 24), np.float32))
    assert resolve_features(str(npy))[:2] == ("positions", 4)
    np.save(npy / "a.npy", np.zeros((40, 10), np.float32))
    with pytest.raises(DataError, match=r"cannot tell the layout of a.npy \(shape \[40, 10\]\)"):
        resolve_features(str(npy))
    assert resolve_features("demo")[0] == "deepmimic"
    with pytest.raises(DataError, match="is not a folder"):
        resolve_features(str(tmp_path / "missing"))


def test_held_out_clips_of_another_skeleton_stop_before_step_zero(tmp_path):
    from mmtok.train.run import train

    data = tmp_path / "mixed"
    data.mkdir()
    for name in [f"arm{i}.bvh" for i in range(40) if not _held(f"arm{i}.bvh", 0.2)][:4]:
        write_bvh(data / name, *SMALL, frames=40)  # trains: the layout is theirs (positions of 5 joints)
    held = [f"take{i}.bvh" for i in range(40) if _held(f"take{i}.bvh", 0.2)][0]
    write_bvh(data / held, [MIXAMO[j] for j in SMPL_JOINTS], HUMANML3D.parents, HUMANML3D.offsets, frames=40)
    run = tmp_path / "run"
    with pytest.raises(DataError, match=r"no usable clip among .* held-out part .* 22 joints; the recipe's positions "
                                        r"layout has model.num_joints=5.*must share the training clips' skeleton"):
        train(config.load("motion_bvh", [f"data.train={data}", *TINY]), run)
    assert not (run / "checkpoints").exists()


def _held(name: str, fraction: float) -> bool:
    from mmtok.data.holdout import is_held_out

    return is_held_out(name, fraction)


def test_evaluating_on_clips_of_another_layout_names_both_layouts_and_what_to_run(tmp_path):
    from test_motion_data import deepmimic_frames, write_deepmimic

    from mmtok.modalities.motion.sources import motion_folder

    clips = tmp_path / "deepmimic"
    clips.mkdir()
    for i in range(2):
        write_deepmimic(clips / f"walk{i}.txt", deepmimic_frames(60, seed=i))
    model = config.load({"model": {"preset": "test_motion_rvq", "num_joints": 19}}).model  # a BVH model's layout
    with pytest.raises(DataError, match=r"walk0.txt: 18 joints; the model's positions layout has 19") as err:
        motion_folder(str(clips), "val", model)
    assert err.value.hint.startswith("these clips are deepmimic (walk0.txt is a DeepMimic clip); the model's layout "
                                     "is positions") and f"mmtok train motion_bvh --data {clips}" in err.value.hint
