"""Motion data: feature layouts, HumanML3D-style features and their recovery, DeepMimic and BVH readers,
the windows stream (short clips, non-finite frames, holdout), Mean/Std and packing, the motion metrics.
Clips are made in tmp_path; nothing is downloaded."""
from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtok.modalities.motion.clips import BVHMappingError, read_clip
from mmtok.modalities.motion.features import features, forward_kinematics, mean_std, qmul
from mmtok.modalities.motion.layout import DEEPMIMIC, HUMANML3D, SMPL_JOINTS, layout_for
from mmtok.errors import DataError
from mmtok.modalities.motion.recover import recover_joints


def spec(features="deepmimic", **kw):
    return types.SimpleNamespace(features=features, num_joints=kw.pop("num_joints", None), fps=kw.pop("fps", 20.0),
                                 joint_map=kw.pop("joint_map", {}), bvh_scale=kw.pop("bvh_scale", None),
                                 window=kw.pop("window", 8), **kw)


def _yaw(a):
    return np.array([math.cos(a / 2), 0.0, math.sin(a / 2), 0.0])


def deepmimic_frames(n: int, dt: float = 1 / 30, seed: int = 0, walk: float = 1.0) -> np.ndarray:
    """A smooth DeepMimic humanoid clip [n, 44]: root walking along +X at `walk` m/s, swinging limbs."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * dt
    frames = np.zeros((n, 44))
    frames[:, 0] = dt
    frames[:, 1] = walk * t
    frames[:, 2] = 0.85 + 0.02 * np.sin(4 * t)
    frames[:, 4] = 1.0
    phase = rng.uniform(0, 2 * np.pi, 13)
    for k, col in enumerate((8, 12, 16, 21, 25, 30, 35, 39)):  # spherical joints: swing about local Z
        a = 0.4 * np.sin(3 * t + phase[k])
        frames[:, col:col + 4] = np.stack([np.cos(a / 2), 0 * a, 0 * a, np.sin(a / 2)], -1)
    for k, col in enumerate((20, 29, 34, 43)):  # knees and elbows
        frames[:, col] = -0.6 + 0.5 * np.sin(3 * t + phase[8 + k])
    return frames


def write_deepmimic(path: Path, frames: np.ndarray, loop: str = "none") -> Path:
    path.write_text(json.dumps({"Loop": loop, "Frames": frames.tolist()}))
    return path


MIXAMO = {"pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "spine1": "Spine",
          "left_knee": "LeftLeg", "right_knee": "RightLeg", "spine2": "Spine1", "left_ankle": "LeftFoot",
          "right_ankle": "RightFoot", "spine3": "Spine2", "left_foot": "LeftToeBase", "right_foot": "RightToeBase",
          "neck": "Neck", "left_collar": "LeftShoulder", "right_collar": "RightShoulder", "head": "Head",
          "left_shoulder": "LeftArm", "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
          "right_elbow": "RightForeArm", "left_wrist": "LeftHand", "right_wrist": "RightHand"}


def write_bvh(path: Path, names, parents, offsets, frames: int = 12, cm: float = 100.0) -> Path:
    """A BVH (Y up, centimetres) whose joints swing about Z; root walks along Z."""
    children = {i: [j for j, p in enumerate(parents) if p == i] for i in range(len(names))}
    lines = ["HIERARCHY"]

    def joint(i, depth):
        pad = "  " * depth
        kind = "ROOT" if parents[i] < 0 else "JOINT"
        lines.append(f"{pad}{kind} {names[i]}")
        lines.append(pad + "{")
        o = np.asarray(offsets[i]) * cm
        lines.append(f"{pad}  OFFSET {o[0]:.4f} {o[1]:.4f} {o[2]:.4f}")
        ch = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if parents[i] < 0 else \
            "3 Zrotation Xrotation Yrotation"
        lines.append(f"{pad}  CHANNELS {ch}")
        if children[i]:
            for c in children[i]:
                joint(c, depth + 1)
        else:
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET 0.0 {-5.0:.1f} 0.0", pad + "  }"])
        lines.append(pad + "}")

    joint(0, 0)
    lines.extend(["MOTION", f"Frames: {frames}", "Frame Time: 0.0333333"])
    for f in range(frames):
        vals = [0.0, 90.0, 3.0 * f]
        vals += [0.0, 0.0, 0.0]
        for i in range(1, len(names)):
            vals += [10.0 * math.sin(0.3 * f + i), 0.0, 0.0]
        lines.append(" ".join(f"{v:.4f}" for v in vals))
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------------------------- layouts, features


def test_layouts_have_the_documented_dims_and_slices():
    h = layout_for("humanml3d")
    assert h.dim == 263 and h.slices == {"root": (0, 4), "positions": (4, 67), "rotations": (67, 193),
                                         "velocities": (193, 259), "contacts": (259, 263)}
    assert layout_for("deepmimic").dim == 215 and layout_for("positions", 5).dim == 30
    assert layout_for("positions", 5).slices["rotations"] == (15, 15)
    assert len(SMPL_JOINTS) == HUMANML3D.num_joints == 22 and DEEPMIMIC.num_joints == 18


def _clip_positions(n=40, seed=0):
    frames = deepmimic_frames(n, seed=seed)
    from mmtok.modalities.motion.clips import deepmimic_local_rotations

    return forward_kinematics(DEEPMIMIC, deepmimic_local_rotations(frames), frames[:, 1:4])


def test_features_are_heading_and_position_invariant_and_recover_the_pose():
    layout = layout_for("deepmimic")
    pos = _clip_positions()
    feats = features(pos, layout, fps=30.0)
    assert feats.shape == (39, 215) and feats.dtype == np.float32
    for angle in (math.pi / 2, 2.0):  # pi / 2 turns the character (facing +X) to face -Z exactly
        c, s = math.cos(angle), math.sin(angle)
        turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        turned = np.einsum("ij,tkj->tki", turn, pos) + np.array([3.0, 0.2, -1.0])
        np.testing.assert_allclose(features(turned, layout, fps=30.0), feats, atol=2e-5)
    rec = recover_joints(torch.from_numpy(feats), layout).numpy()
    # the recovered motion is the original moved (on the floor, first root at the XZ origin facing +Z): the same
    # rigid shape in every frame, the same heights above the floor
    d_rec = np.linalg.norm(rec[:, :, None] - rec[:, None], axis=-1)
    d_pos = np.linalg.norm(pos[:-1, :, None] - pos[:-1, None], axis=-1)
    np.testing.assert_allclose(d_rec, d_pos, atol=1e-4)
    np.testing.assert_allclose(rec[..., 1], pos[:-1, :, 1] - pos[..., 1].min(), atol=1e-4)
    assert np.abs(rec[0, 0, [0, 2]]).max() < 1e-6


def test_positions_layout_recovers_positions_exactly():
    layout = layout_for("positions", 18)
    pos = _clip_positions(20)
    rec = recover_joints(torch.from_numpy(features(pos, layout, fps=30.0)), layout).numpy()
    shifted = pos[:-1] - pos[0, 0] * np.array([1.0, 0, 1.0])
    np.testing.assert_allclose(rec, shifted, atol=1e-5)


def test_foot_contacts_follow_foot_speed_at_any_fps():
    layout = layout_for("deepmimic")
    pos = np.repeat(_clip_positions(2)[:1], 10, axis=0)  # standing still: every foot in contact
    c = layout.slices["contacts"]
    assert features(pos, layout, fps=20.0)[:, c[0]:c[1]].min() == 1.0
    moving = pos + np.arange(10)[:, None, None] * np.array([0.2, 0.0, 0.0])  # 4 m/s at 20 fps
    assert features(moving, layout, fps=20.0)[:, c[0]:c[1]].max() == 0.0


# ----------------------------------------------------------------------------------------------- readers


def test_deepmimic_rest_pose_is_the_urdf_skeleton_in_metres(tmp_path):
    frames = deepmimic_frames(3)
    frames[:, 8:44] = 0.0
    for col in (8, 12, 16, 21, 25, 30, 35, 39):
        frames[:, col] = 1.0  # identity quaternions, straight knees and elbows
    frames[:, 1:4] = [0.0, 0.9, 0.0]
    from mmtok.modalities.motion.clips import deepmimic_positions

    pos, fps = deepmimic_positions(write_deepmimic(tmp_path / "rest.txt", frames), "deepmimic")
    j = {n: i for i, n in enumerate(DEEPMIMIC.joints)}
    assert fps == pytest.approx(30.0)
    assert pos[0, j["head"], 1] == pytest.approx(0.9 + 0.25 * (0.944604 + 0.895576 + 0.7))
    assert pos[0, j["right_ankle"], 1] == pytest.approx(0.9 - 0.25 * (1.686184 + 1.63948))
    assert pos[0, j["right_hip"], 2] > 0 > pos[0, j["left_hip"], 2]  # right is +Z, the character faces +X


def test_the_deepmimic_offsets_are_pybullets_urdf():
    pybullet_data = pytest.importorskip("pybullet_data", reason="pybullet (the motion extra) is not installed")
    import re

    text = (Path(pybullet_data.getDataPath()) / "humanoid" / "humanoid.urdf").read_text(errors="replace")
    joints = re.findall(r'<joint name="(\w+)".*?<origin [^>]*xyz = "([^"]+)"', text, flags=re.S)
    urdf = {name: [float(v) for v in xyz.split()] for name, xyz in joints}
    assert len(urdf) == 15
    for i, name in enumerate(DEEPMIMIC.joints):
        if name in urdf and name != "root":
            np.testing.assert_allclose(DEEPMIMIC.offsets[i], 0.25 * np.array(urdf[name]), atol=1e-9, err_msg=name)


def test_a_wrap_clip_loops_with_its_root_path_carried_on(tmp_path):
    frames = deepmimic_frames(31, walk=1.0)  # 1 s cycle
    frames[-1, 0] = 0.0
    feats = read_clip(write_deepmimic(tmp_path / "walk.txt", frames, loop="wrap"), spec(fps=20.0))
    assert len(feats) >= 4 * 20 - 1  # looped to at least LOOP_SECONDS
    root = recover_joints(torch.from_numpy(feats), layout_for("deepmimic"))[:, 0].numpy()
    step = np.linalg.norm(np.diff(root[:, [0, 2]], axis=0), axis=-1)
    assert step.max() < 0.1 and np.linalg.norm(root[-1, [0, 2]]) > 3.0  # keeps walking, no jump back


def test_bvh_maps_to_the_humanml3d_layout_or_names_the_missing_joints(tmp_path):
    names = [MIXAMO[j] for j in SMPL_JOINTS]
    path = write_bvh(tmp_path / "mixamo.bvh", names, HUMANML3D.parents, HUMANML3D.offsets)
    feats = read_clip(path, spec("humanml3d", fps=20.0))
    assert feats.shape[1] == 263 and np.isfinite(feats).all() and 6 <= len(feats) <= 8  # 12 frames at 30 -> 20 fps
    rec = recover_joints(torch.from_numpy(feats), layout_for("humanml3d")).numpy()
    thigh = np.linalg.norm(rec[:, 4] - rec[:, 1], axis=-1)
    assert thigh == pytest.approx(np.full_like(thigh, np.linalg.norm(HUMANML3D.offsets[4])), abs=1e-3)  # retargeted

    small = write_bvh(tmp_path / "arm.bvh", ["Hips", "Chest", "Arm", "Hand", "Leg"], (-1, 0, 1, 2, 0),
                      [(0, 0, 0), (0, 0.3, 0), (0.2, 0.1, 0), (0.3, 0, 0), (0.1, -0.5, 0)])
    with pytest.raises(BVHMappingError, match=r"no joint for 20 of HumanML3D's 22 SMPL joints: left_hip, right_hip.*"
                                              r"model.features=positions with model.num_joints=5"):
        read_clip(small, spec("humanml3d"))
    assert read_clip(small, spec("positions", num_joints=5)).shape[1] == 30  # the fallback, when the recipe allows it
    renamed = read_clip(path, spec("humanml3d", joint_map={"Hips": "pelvis"}))
    assert renamed.shape == feats.shape


def test_a_mirrored_clip_is_the_original_reflected_with_left_and_right_swapped(tmp_path):
    path = write_deepmimic(tmp_path / "walk.txt", deepmimic_frames(40, seed=2))
    layout = layout_for("deepmimic")
    plain = recover_joints(torch.from_numpy(read_clip(path, spec())), layout).numpy()
    mirrored = recover_joints(torch.from_numpy(read_clip(path, spec(), mirror=True)), layout).numpy()
    expected = plain[:, DEEPMIMIC.mirror] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirrored, expected, atol=1e-4)
    np.save(tmp_path / "f.npy", np.zeros((20, 215), np.float32))
    with pytest.raises(DataError, match="can be mirrored"):
        read_clip(tmp_path / "f.npy", spec(), mirror=True)


# ----------------------------------------------------------------------------------------------- the stream


def _stream(source, split, s, **kw):
    from mmtok.data.sources import build_dataset

    return build_dataset(source, split, s, modality="motion", **kw)


def test_folder_stream_skips_short_and_non_finite_clips_and_cuts_val_windows(tmp_path):
    d = tmp_path / "clips"
    d.mkdir()
    rng = np.random.default_rng(0)
    np.save(d / "long.npy", rng.normal(size=(40, 30)).astype(np.float32))
    np.save(d / "short.npy", rng.normal(size=(5, 30)).astype(np.float32))
    holes = rng.normal(size=(30, 30)).astype(np.float32)
    holes[12] = np.nan
    np.save(d / "holes.npy", holes)
    (d / "Mean.npy").write_bytes(b"")  # statistics files are never clips
    s = spec("positions", num_joints=5, window=8)
    val = list(_stream(str(d), "val", s))
    assert [(v["clip"], v["start"]) for v in val] == [("holes.npy", 0), ("holes.npy", 13), ("holes.npy", 21),
                                                       ("long.npy", 0), ("long.npy", 8), ("long.npy", 16),
                                                       ("long.npy", 24), ("long.npy", 32)]
    assert val[1]["motion"].shape == (8, 30) and torch.isfinite(torch.stack([v["motion"] for v in val])).all()
    bad = [b for v in val for b in v["bad"]]
    assert sum(v["skipped"] for v in val) == 2 and any("holes.npy: 1 of 30 frames non-finite" in b for b in bad)
    assert any(b.startswith("short.npy: 5 frames at 20 fps, shorter than the 8-frame window") for b in bad)
    train = iter(_stream(str(d), "train", s, seed=3))
    first = [next(train) for _ in range(6)]
    assert {f["clip"] for f in first} == {"holes.npy", "long.npy"} and all(f["motion"].shape == (8, 30) for f in first)


def test_wrong_feature_width_and_position_arrays_stop_before_any_work(tmp_path):
    d = tmp_path / "kit"
    d.mkdir()
    np.save(d / "a.npy", np.zeros((20, 251), np.float32))
    with pytest.raises(DataError, match=r"a.npy holds 251-d features; this recipe's layout expects 263"):
        _stream(str(d), "train", spec("humanml3d"))
    np.save(d / "a.npy", np.zeros((20, 22, 3), np.float32))
    with pytest.raises(DataError, match="holds joint positions .* not features"):
        _stream(str(d), "train", spec("humanml3d"))


def test_bvh_with_a_deepmimic_recipe_says_what_to_run_before_any_work(tmp_path):
    names = [MIXAMO[j] for j in SMPL_JOINTS]
    d = tmp_path / "mocap"
    d.mkdir()
    write_bvh(d / "walk.bvh", names, HUMANML3D.parents, HUMANML3D.offsets)
    with pytest.raises(DataError, match="BVH motion converts to the humanml3d or positions layouts") as err:
        _stream(str(d), "train", spec("deepmimic"))
    assert err.value.hint.startswith(f"for BVH mocap: mmtok train motion_bvh --data {d} ")


def test_holdout_splits_clips_by_name(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(12):
        np.save(d / f"c{i:02d}.npy", np.zeros((16, 30), np.float32))
    s = spec("positions", num_joints=5, window=16)
    held = {v["clip"] for v in _stream(str(d), "val", s, holdout=0.25)}
    train = _stream(str(d), "train", s, holdout=0.25)
    assert held and not held & {Path(f).name for f in train.files} and len(held) + len(train.files) == 12


# ----------------------------------------------------------------------------------------------- stats, packing


def test_mean_std_average_std_within_each_slice_like_humanml3d():
    layout = layout_for("positions", 2)
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(50, 12)) * np.arange(1, 13), np.ones((10, 12))]
    mean, std = mean_std(clips, layout)
    data = np.concatenate(clips)
    np.testing.assert_allclose(mean, data.mean(0), rtol=1e-5)
    sl = layout.slices["velocities"]
    assert np.ptp(std[sl[0]:sl[1]]) == 0 and std[sl[0]] == pytest.approx(data.std(0)[sl[0]:sl[1]].mean(), rel=1e-5)


def test_pack_writes_features_and_training_only_statistics(tmp_path):
    from mmtok.modalities.motion.pack import compute_stats, pack_motion

    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        write_deepmimic(src / f"clip{i}.txt", deepmimic_frames(30, seed=i, walk=0.5 + 0.3 * i))
    s = spec("deepmimic")
    report = pack_motion(str(src), str(tmp_path / "packed"), s, holdout=0.3)
    out = tmp_path / "packed"
    assert report.written == 6 and report.held_out >= 1 and (out / "Mean.npy").is_file()
    val = sorted(p.stem for p in (out / "val").glob("*.npy"))
    assert len(val) == report.held_out and len(list((out / "train").glob("*.npy"))) == 6 - len(val)
    mean, std = compute_stats(str(src), s, holdout=0.3)
    np.testing.assert_allclose(np.load(out / "Mean.npy"), mean, rtol=1e-5)
    full_mean, _ = compute_stats(str(src), s)
    assert not np.allclose(full_mean, mean)  # the held-out clips are left out of the statistics
    meta = json.loads((out / "motion.json").read_text())
    assert meta["feature_dim"] == 215 and meta["held_out"] == len(val)
    with pytest.raises(DataError, match="not an empty folder"):
        pack_motion(str(src), str(out), s)


# ----------------------------------------------------------------------------------------------- metrics


def test_mpjpe_pa_mpjpe_and_accel_error():
    from mmtok.metrics.motion import MPJPE, PAMPJPE, AccelError, accel_error, mpjpe, pa_mpjpe

    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.normal(size=(2, 6, 5, 3))).float()
    assert float(mpjpe(target + torch.tensor([1.0, 2.0, 3.0]), target).max()) < 1e-3  # root-aligned
    moved = target.clone()
    moved[..., 1:, 0] += 0.01  # 10 mm on 4 of 5 joints
    assert float(mpjpe(moved, target).mean()) == pytest.approx(8.0, abs=1e-3)
    c, s = math.cos(0.7), math.sin(0.7)
    rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    similar = 1.3 * target @ rot.T + torch.tensor([0.5, -0.2, 0.1])
    assert float(pa_mpjpe(similar, target).max()) < 1e-3 and float(mpjpe(similar, target).min()) > 10
    drift = target + torch.arange(6).float()[:, None, None] * 0.1  # constant velocity: no acceleration error
    assert float(accel_error(drift, target).max()) < 1e-3
    for metric, fn in ((MPJPE(), mpjpe), (PAMPJPE(), pa_mpjpe), (AccelError(), accel_error)):
        metric.update(moved[:1], target[:1])
        metric.update(moved[1:], target[1:])
        assert float(metric.compute()) == pytest.approx(float(fn(moved, target).mean()), rel=1e-4)


def test_data_pack_cli_packs_motion_for_a_recipe_and_prints_the_training_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmtok.cli.data import data_app

    monkeypatch.chdir(tmp_path)
    src = tmp_path / "clips"
    src.mkdir()
    for i in range(5):
        write_deepmimic(src / f"clip{i}.txt", deepmimic_frames(40, seed=i, walk=0.5 + 0.2 * i))
    (src / "broken.txt").write_text("{not json")
    runner = CliRunner()
    auto = runner.invoke(data_app, ["pack", "clips", "shards/m-%06d.tar"])  # not images or audio: says --modality
    assert auto.exit_code == 2 and "--modality motion" in auto.stderr
    result = runner.invoke(data_app, ["pack", "clips", "packed", "--modality", "motion", "--val-fraction", "0.3"])
    assert result.exit_code == 0, result.stderr + result.stdout
    out = tmp_path / "packed"
    assert (out / "Mean.npy").is_file() and (out / "Std.npy").is_file() and list((out / "val").glob("*.npy"))
    assert "dropped broken.txt" in result.stdout
    assert "mmtok train motion_quickstart --data packed/train --set data.val=packed/val --set model.stats=packed" \
        in result.stdout
    from mmtok import config
    from mmtok.families.motion_vq.model import load_stats

    spec = config.load("motion_quickstart", ["model.stats=packed"]).model
    mean, std = load_stats(spec.stats, np.load(out / "Mean.npy").shape[0], spec)
    np.testing.assert_array_equal(mean, np.load(out / "Mean.npy"))
    image = runner.invoke(data_app, ["pack", "clips", "p2", "--modality", "motion", "--recipe", "quickstart"])
    assert image.exit_code == 2 and "not a motion recipe" in image.stderr and "Traceback" not in image.stderr
    # without --val-fraction the clips still go to a subfolder: Mean / Std / motion.json are never read as clips
    whole = runner.invoke(data_app, ["pack", "clips", "whole", "--modality", "motion"])
    assert whole.exit_code == 0, whole.stderr + whole.stdout
    assert "--data whole/train --set data.val=null --set model.stats=whole" in whole.stdout
    from mmtok.modalities.motion.clips import find_clips

    clips = [Path(f).name for f in find_clips(str(tmp_path / "whole" / "train"))]
    assert sorted(clips) == [f"clip{i}.npy" for i in range(5)] and (tmp_path / "whole" / "Mean.npy").is_file()


_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 10 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.033333
0 90 0 0 0 0 0 0 0
0 91 0 0 5 0 10 0 0
0 92 0 0 10 0 20 0 0
"""


def test_bvh_as_exporters_write_it_reads_or_says_why_in_one_line(tmp_path, caplog):
    """A frame count off by one (either way) and six channels on every joint (Blender) read as the clean file does,
    with a note; motion lines that are not numbers are one ClipError naming the line."""
    pytest.importorskip("pybvh", reason="pybvh (the motion extra) is not installed")
    from mmtok.modalities.motion.clips import ClipError, bvh_skeleton

    six = _BVH.replace("    CHANNELS 3 Zrotation Xrotation Yrotation",
                       "    CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
    for old, new in (("0 90 0 0 0 0 0 0 0", "0 90 0 0 0 0 0 10 0 0 0 0"),
                     ("0 91 0 0 5 0 10 0 0", "0 91 0 0 5 0 0 10 0 10 0 0"),
                     ("0 92 0 0 10 0 20 0 0", "0 92 0 0 10 0 0 10 0 20 0 0")):
        six = six.replace(old, new)
    files = {"clean": _BVH, "plus_one": _BVH.replace("Frames: 3", "Frames: 4"),
             "minus_one": _BVH.replace("Frames: 3", "Frames: 2"), "six_channels": six}
    for name, text in files.items():
        (tmp_path / f"{name}.bvh").write_text(text)
    reference = np.asarray(bvh_skeleton(tmp_path / "clean.bvh").joint_positions())
    with caplog.at_level("WARNING", logger="mmtok"):
        for name in ("plus_one", "minus_one", "six_channels"):
            positions = np.asarray(bvh_skeleton(tmp_path / f"{name}.bvh").joint_positions())
            assert positions.shape == reference.shape and np.allclose(positions, reference), name
    assert "'Frames: 4' but 3 motion lines" in caplog.text and "'Frames: 2' but 3 motion lines" in caplog.text
    assert "joint Spine: its position channels are kept as its offset" in caplog.text
    (tmp_path / "garbage.bvh").write_text(_BVH.replace("0 91 0 0 5 0 10 0 0", "0 91 0 x 5 0 10 0 0"))
    with pytest.raises(ClipError, match="line 20 of the motion data holds 'x', not a number"):
        bvh_skeleton(tmp_path / "garbage.bvh")
    (tmp_path / "short.bvh").write_text(_BVH.replace("0 91 0 0 5 0 10 0 0", "0 91 0 0 5"))
    with pytest.raises(ClipError, match="line 20 holds 5 numbers; the hierarchy declares 9 channels"):
        bvh_skeleton(tmp_path / "short.bvh")
