"""Reading motion clips: HumanML3D-style feature files, BVH files and DeepMimic clips, as features at one fps.

    feats = read_clip(path, spec)   # float32 [T, D] in the layout of `spec` (a motion model config), at spec.fps

- `.npy` [T, D]: features already in the layout (HumanML3D's new_joint_vecs at 20 fps). They are taken to be at
  `spec.fps` as they are: their velocity rows are per frame, so they cannot be resampled.
- `.bvh`: parsed with pybvh (forward kinematics to joint positions; taken as Y-up, the format's convention), scaled to metres
  (`spec.bvh_scale`, or a standing height of 1.7 m when unset), resampled to `spec.fps`, then made features:
  for "humanml3d" the 22 SMPL joints are picked by name (`spec.joint_map`, else common SMPL / Mixamo / CMU names)
  and retargeted to HumanML3D's skeleton as the dataset does; a skeleton without them raises BVHMappingError
  naming the missing joints (the "positions" layout takes any skeleton with `spec.num_joints` joints).
- `.txt` / `.json` with a "Frames" list: DeepMimic clips (pybullet_data/data/motions/): per frame 44 numbers
  (duration, root position, root quaternion w-x-y-z, then the rotations of chest, neck, right hip, right knee
  (1 angle), right ankle, right shoulder, right elbow (1 angle), left hip, left knee, left ankle, left shoulder,
  left elbow), forward kinematics on DeepMimic's humanoid (mmtok.modalities.motion.layout.DEEPMIMIC). Clips marked
  "Loop": "wrap" are cycles and are repeated (root path and heading carried on) to at least LOOP_SECONDS.

Errors are ClipError (a DataError) with a one-line reason; the stream skips and names such clips.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmtok.errors import DataError
from mmtok.modalities.motion.features import features, forward_kinematics, qmul, qrot
from mmtok.modalities.motion.layout import DEEPMIMIC, SMPL_JOINTS, layout_for

MOTION_SUFFIXES = (".npy", ".bvh", ".txt", ".json")
STATS_FILES = ("mean.npy", "std.npy")  # never clips
LOOP_SECONDS = 4.0
STANDING_HEIGHT = 1.7  # metres: BVH files without `bvh_scale` are scaled to this rest-pose height


class ClipError(DataError):
    """One clip cannot be used (unreadable, malformed, too short after cleaning)."""


class BVHMappingError(DataError):
    """A BVH skeleton lacks joints the feature layout needs."""


def find_clips(root: str | Path) -> list[str]:
    """Motion files under `root` (recursive, sorted), Mean.npy / Std.npy left out."""
    root = Path(root)
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MOTION_SUFFIXES
                  and p.name.lower() not in STATS_FILES and not p.name.startswith("."))


def layout_of(spec):
    return layout_for(spec.features, spec.num_joints)


def read_clip(path: str | Path, spec, *, mirror: bool = False) -> np.ndarray:
    """float32 features [T, D] of the clip at `path` in `spec`'s layout and fps (may hold non-finite rows,
    which the stream drops). `mirror`: of the clip mirrored left-right (positions reflected through a vertical
    plane, left and right joints swapped), for sources with joint positions and a named skeleton only.
    Raises ClipError / BVHMappingError."""
    path = Path(path)
    suffix = path.suffix.lower()
    layout = layout_of(spec)
    if mirror and (suffix == ".npy" or layout.skeleton is None):
        raise ClipError("only clips with joint positions and a named skeleton can be mirrored")
    if suffix == ".npy":
        return read_feature_file(path, layout.dim)
    if suffix == ".bvh":
        positions, fps = bvh_positions(path, spec)
    else:
        positions, fps = deepmimic_positions(path, layout.kind)
    if positions.shape[1] != layout.num_joints:  # e.g. DeepMimic's humanoid read for a positions model of a BVH
        raise ClipError(f"{positions.shape[1]} joints; the model's {layout.kind} layout has {layout.num_joints}")
    positions = resample(positions, fps, float(spec.fps))
    if len(positions) < 2:
        raise ClipError(f"{len(positions)} frame(s) at {spec.fps:g} fps")
    finite = np.isfinite(positions).all(axis=(1, 2))
    if not finite.all():  # features of a span with holes would be wrong: keep the longest finite run
        positions = positions[_longest_run(finite)]
        if len(positions) < 2:
            raise ClipError("no two consecutive finite frames")
    if mirror:
        positions = positions[:, layout.skeleton.mirror] * np.array([-1.0, 1.0, 1.0])
    uniform = layout.kind == "humanml3d" and suffix == ".bvh"
    return features(positions, layout, float(spec.fps), uniform=uniform)


def read_feature_file(path: str | Path, dim: int) -> np.ndarray:
    """A feature file [T, dim] as float32; ClipError for unreadable files, FeatureDimError for another width."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ClipError(f"cannot read: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}") from None
    check_feature_shape(path, arr.shape, dim)
    return np.asarray(arr, dtype=np.float32)


class FeatureDimError(DataError):
    """Feature files of another layout: a recipe problem, not a bad clip."""


def check_feature_shape(path, shape: tuple, dim: int) -> None:
    if len(shape) == 3 and shape[-1] == 3:
        raise FeatureDimError(f"{path} holds joint positions {list(shape)}, not features",
                              hint="point --data at the feature files (HumanML3D: new_joint_vecs/, not new_joints/)")
    if len(shape) != 2 or shape[1] != dim:
        got = f"{shape[1]}-d features" if len(shape) == 2 else f"an array of shape {list(shape)}"
        raise FeatureDimError(f"{path} holds {got}; this recipe's layout expects {dim} per frame",
                              hint="set model.features to the files' layout (humanml3d: 263; KIT-ML's 251 is not "
                              "supported), or convert the clips with `mmtok data pack`")


def _longest_run(mask: np.ndarray) -> slice:
    best, start, best_len = slice(0, 0), None, 0
    for i, ok in enumerate(list(mask) + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if i - start > best_len:
                best, best_len = slice(start, i), i - start
            start = None
    return best


def resample(positions: np.ndarray, fps: float, target: float) -> np.ndarray:
    """Joint positions [T, J, 3] at `fps` linearly interpolated at `target` fps over the same time span."""
    if abs(fps - target) < 1e-6 or len(positions) < 2:
        return positions
    duration = (len(positions) - 1) / fps
    t = np.arange(int(np.floor(duration * target + 1e-6)) + 1) / target
    src = t * fps
    i = np.clip(np.floor(src).astype(int), 0, len(positions) - 2)
    w = (src - i)[:, None, None]
    return (1 - w) * positions[i] + w * positions[i + 1]


# ------------------------------------------------------------------------------------------------ DeepMimic

_DM_SPHERICAL = {"chest": 8, "neck": 12, "right_hip": 16, "right_ankle": 21, "right_shoulder": 25, "left_hip": 30,
                 "left_ankle": 35, "left_shoulder": 39}  # first column of each w-x-y-z quaternion in a frame
_DM_REVOLUTE = {"right_knee": 20, "right_elbow": 29, "left_knee": 34, "left_elbow": 43}  # angle about local +Z


def read_deepmimic(path: str | Path) -> tuple[np.ndarray, bool]:
    """(frames [N, 44] float64, loops): the frames of a DeepMimic clip and whether it is a cycle ("wrap")."""
    try:
        data = json.loads(Path(path).read_text())
        frames = np.asarray(data["Frames"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClipError(f"not a DeepMimic clip ({type(e).__name__}: {str(e)[:120]})") from None
    if frames.ndim != 2 or frames.shape[1] != 44:
        raise ClipError(f"DeepMimic humanoid clips have 44 numbers per frame, this one {list(frames.shape)[1:]}"
                        if frames.ndim == 2 else "malformed Frames list")
    if len(frames) < 2:
        raise ClipError(f"{len(frames)} frame(s)")
    return frames, str(data.get("Loop", "none")).lower() == "wrap"


def _yaw(q: np.ndarray) -> np.ndarray:
    """Heading angles about +Y of root quaternions [..., 4] (the character faces +X)."""
    f = qrot(q, np.broadcast_to(np.array([1.0, 0.0, 0.0]), q.shape[:-1] + (3,)))
    return np.arctan2(-f[..., 2], f[..., 0])


def _yaw_quat(angle: np.ndarray) -> np.ndarray:
    angle = np.asarray(angle, dtype=np.float64)
    return np.stack([np.cos(angle / 2), np.zeros_like(angle), np.sin(angle / 2), np.zeros_like(angle)], -1)


def loop_frames(frames: np.ndarray, seconds: float) -> np.ndarray:
    """A cyclic clip repeated to at least `seconds`: each cycle starts where the last ended (its first frame is
    the previous cycle's last), its root path turned by the heading the previous cycles gained, as DeepMimic
    plays them."""
    if frames[:-1, 0].sum() <= 0:
        return frames
    xz, y = np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])
    rel = frames[1:, 1:4] - frames[0, 1:4]
    out, last = [frames], frames
    while sum(f[:-1, 0].sum() for f in out) < seconds:
        turn = _yaw_quat(_yaw(last[-1, 4:8]) - _yaw(frames[0, 4:8]))
        nxt = frames[1:].copy()
        nxt[:, 1:4] = qrot(turn, rel * xz) + last[-1, 1:4] * xz + frames[1:, 1:4] * y
        nxt[:, 4:8] = qmul(np.broadcast_to(turn, (len(nxt), 4)), frames[1:, 4:8])
        out[-1] = out[-1].copy()
        out[-1][-1, 0] = frames[0, 0]  # the cycle's last frame is the next one's first: it lasts as long
        out.append(nxt)
        last = nxt
    return np.concatenate(out, axis=0)


def deepmimic_local_rotations(frames: np.ndarray) -> np.ndarray:
    """Local joint quaternions [N, 18, 4] of DeepMimic frames (fixed points: identity)."""
    n = len(frames)
    local = np.zeros((n, DEEPMIMIC.num_joints, 4))
    local[..., 0] = 1.0
    index = {name: i for i, name in enumerate(DEEPMIMIC.joints)}
    local[:, 0] = frames[:, 4:8]
    for name, col in _DM_SPHERICAL.items():
        local[:, index[name]] = frames[:, col:col + 4]
    for name, col in _DM_REVOLUTE.items():
        local[:, index[name]] = _axis_angle_z(frames[:, col])
    return local / np.linalg.norm(local, axis=-1, keepdims=True).clip(1e-12)


def _axis_angle_z(angle: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(angle / 2), np.zeros_like(angle), np.zeros_like(angle), np.sin(angle / 2)], -1)


def deepmimic_positions(path: str | Path, kind: str) -> tuple[np.ndarray, float]:
    """(joint positions [T, 18, 3] at a uniform rate, that rate in fps) of a DeepMimic clip; ClipError for a
    layout that cannot take DeepMimic's skeleton."""
    if kind == "humanml3d":
        raise ClipError("DeepMimic clips have DeepMimic's 18-point skeleton, not HumanML3D's 22 SMPL joints: "
                        "use model.features=deepmimic (or positions with num_joints=18)")
    frames, loops = read_deepmimic(path)
    if loops:
        frames = loop_frames(frames, LOOP_SECONDS)
    times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
    if not np.all(np.diff(times) > 0):
        raise ClipError("frame durations must be positive")
    pos = forward_kinematics(DEEPMIMIC, deepmimic_local_rotations(frames), frames[:, 1:4])
    fps = 1.0 / float(np.median(np.diff(times)))
    uniform_t = np.arange(int(np.floor(times[-1] * fps + 1e-6)) + 1) / fps  # the clip's own rate, evenly spaced
    idx = np.clip(np.searchsorted(times, uniform_t, side="right") - 1, 0, len(times) - 2)
    w = ((uniform_t - times[idx]) / (times[idx + 1] - times[idx]))[:, None, None]
    return (1 - w) * pos[idx] + w * pos[idx + 1], fps


# ------------------------------------------------------------------------------------------------ BVH

# SMPL joint -> names it goes by in common BVH skeletons (SMPL exports, Mixamo, CMU / cgspeed, Bandai-Namco,
# LAFAN1), compared case-insensitively after dropping a "namespace:" prefix. Joints are matched in SMPL order and
# the first present, unused name wins (so a skeleton with LeftCollar and LeftShoulder maps both, and Mixamo's
# LeftShoulder, which is a collar, goes to left_collar when no LeftCollar exists).
SMPL_ALIASES = {
    "pelvis": ("pelvis", "hips", "hip", "root"),
    "left_hip": ("left_hip", "l_hip", "leftupleg", "lefthip", "leftthigh", "upperleg_l", "lhip"),
    "right_hip": ("right_hip", "r_hip", "rightupleg", "righthip", "rightthigh", "upperleg_r", "rhip"),
    "spine1": ("spine_01", "spine0"),
    "left_knee": ("left_knee", "l_knee", "leftleg", "leftknee", "leftshin", "lowerleg_l", "lknee"),
    "right_knee": ("right_knee", "r_knee", "rightleg", "rightknee", "rightshin", "lowerleg_r", "rknee"),
    "spine2": ("spine_02", "chest"),
    "left_ankle": ("left_ankle", "l_ankle", "leftfoot", "leftankle", "foot_l", "lankle"),
    "right_ankle": ("right_ankle", "r_ankle", "rightfoot", "rightankle", "foot_r", "rankle"),
    "spine3": ("spine_03", "chest2", "upperchest"),
    "left_foot": ("left_foot", "l_foot", "lefttoebase", "lefttoe", "toe_l", "ltoe"),
    "right_foot": ("right_foot", "r_foot", "righttoebase", "righttoe", "toe_r", "rtoe"),
    "neck": ("neck", "neck1", "neck_01"),
    "left_collar": ("left_collar", "l_collar", "leftcollar", "lcollar", "leftshoulder", "shoulder_l"),
    "right_collar": ("right_collar", "r_collar", "rightcollar", "rcollar", "rightshoulder", "shoulder_r"),
    "head": ("head",),
    "left_shoulder": ("left_shoulder", "l_shoulder", "leftarm", "leftupperarm", "upperarm_l", "lshoulder",
                      "leftshoulder"),
    "right_shoulder": ("right_shoulder", "r_shoulder", "rightarm", "rightupperarm", "upperarm_r", "rshoulder",
                       "rightshoulder"),
    "left_elbow": ("left_elbow", "l_elbow", "leftforearm", "leftelbow", "lowerarm_l", "lelbow"),
    "right_elbow": ("right_elbow", "r_elbow", "rightforearm", "rightelbow", "lowerarm_r", "relbow"),
    "left_wrist": ("left_wrist", "l_wrist", "lefthand", "leftwrist", "hand_l", "lwrist"),
    "right_wrist": ("right_wrist", "r_wrist", "righthand", "rightwrist", "hand_r", "rwrist"),
}


# The spine's three joints go by overlapping names, so they are matched as a whole first: SMPL's own names,
# Mixamo's (Spine, Spine1, Spine2), then CMU's (LowerBack, Spine, Spine1).
SPINE_CONVENTIONS = (("spine1", "spine2", "spine3"), ("spine", "spine1", "spine2"), ("lowerback", "spine", "spine1"))


def _plain(name: str) -> str:
    return name.rsplit(":", 1)[-1].strip().lower()


def map_smpl_joints(names: list[str], joint_map: dict[str, str] | None = None) -> list[int]:
    """Indices into `names` (a BVH's joints) of the 22 SMPL joints in HumanML3D's order. `joint_map` (BVH name ->
    SMPL name) takes precedence over the built-in aliases; each BVH joint is used once. Raises BVHMappingError
    naming every SMPL joint that has no BVH joint."""
    plain = [_plain(n) for n in names]
    chosen: dict[str, int] = {}
    for bvh_name, smpl in (joint_map or {}).items():
        if _plain(bvh_name) in plain:
            chosen[smpl] = plain.index(_plain(bvh_name))
    used = set(chosen.values())
    spine = ("spine1", "spine2", "spine3")
    if not any(j in chosen for j in spine):
        for names3 in SPINE_CONVENTIONS:
            if all(n in plain and plain.index(n) not in used for n in names3):
                chosen.update({j: plain.index(n) for j, n in zip(spine, names3)})
                used.update(chosen[j] for j in spine)
                break
    for smpl in SMPL_JOINTS:
        if smpl in chosen:
            continue
        for alias in SMPL_ALIASES[smpl]:
            if alias in plain and plain.index(alias) not in used:
                chosen[smpl] = plain.index(alias)
                used.add(chosen[smpl])
                break
    missing = [j for j in SMPL_JOINTS if j not in chosen]
    if missing:
        raise BVHMappingError(
            f"BVH skeleton has no joint for {len(missing)} of HumanML3D's 22 SMPL joints: {', '.join(missing)} "
            f"(its joints: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})",
            hint="name them in model.joint_map ({bvh_joint: smpl_joint}), or allow the fallback layout: "
                 f"model.features=positions with model.num_joints={len(names)} (root-relative positions and velocities)")
    return [chosen[j] for j in SMPL_JOINTS]


def bvh_skeleton(path: str | Path):
    """The parsed pybvh.Bvh of `path`, after mmtok.modalities.motion.bvh_text.normalise has made what exporters
    write readable (its notes go to the "mmtok" log); ClipError when it does not parse."""
    import logging
    import os
    import tempfile
    import warnings

    from mmtok.modalities.motion.bvh_text import BVHTextError, normalise

    try:
        import pybvh
    except ImportError:
        raise DataError("reading BVH files needs pybvh", hint='pip install "mmtok[motion]"') from None
    try:
        text, notes = normalise(Path(path).read_text(errors="replace"))
    except OSError as e:
        raise ClipError(f"cannot read: {e.strerror or e}") from None
    except BVHTextError as e:
        raise ClipError(f"not a readable BVH file: {e.message}", hint=e.hint) from None
    for note in notes:
        logging.getLogger("mmtok").warning("%s: %s", path, note)
    fd, tmp = tempfile.mkstemp(suffix=".bvh")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pybvh.read_bvh_file(tmp, world_up="+y")
    except Exception as e:  # pybvh raises ValueError, IndexError, KeyError ... on malformed files
        first = str(e).splitlines()[0][:160].replace(tmp, str(path)) if str(e) else ""
        raise ClipError(f"not a readable BVH file ({type(e).__name__}: {first})") from None
    finally:
        os.unlink(tmp)


def bvh_positions(path: str | Path, spec) -> tuple[np.ndarray, float]:
    """(joint positions [T, J, 3] in metres with Y up, fps) of a BVH file (Y up): the 22 SMPL joints for
    "humanml3d", every joint (end sites excluded) for "positions"."""
    bvh = bvh_skeleton(path)
    names = list(bvh.joint_names)
    if spec.features == "humanml3d":
        keep = map_smpl_joints(names, spec.joint_map)
    elif spec.features == "positions":
        if len(names) != spec.num_joints:
            raise ClipError(f"{len(names)} joints; the recipe's positions layout has model.num_joints={spec.num_joints}")
        keep = list(range(len(names)))
    else:
        raise ClipError("BVH files convert to the humanml3d or positions layouts, not deepmimic")
    if bvh.frame_count < 2 or not bvh.frame_time or bvh.frame_time <= 0:
        raise ClipError(f"{bvh.frame_count} frame(s), frame time {bvh.frame_time}")
    pos = np.asarray(bvh.joint_positions(), dtype=np.float64)
    rest = np.asarray(bvh.rest_pose_positions(), dtype=np.float64)
    if spec.bvh_scale:
        scale = float(spec.bvh_scale)
    else:
        height = float(rest[:, 1].max() - rest[:, 1].min())
        if height <= 0:
            raise ClipError("rest pose has no height; set model.bvh_scale (metres per BVH unit)")
        scale = STANDING_HEIGHT / height
    return pos[:, keep] * scale, 1.0 / float(bvh.frame_time)
