"""Joint positions -> per-frame features (numpy), and the normalisation statistics of a set of clips.

`features(positions, layout)` follows HumanML3D's `process_file` (github.com/EricGuo5513/HumanML3D,
motion_representation.py): put on the floor, first frame at the XZ origin facing +Z, heading (root rotation)
from the hips and shoulders smoothed over time, joint rotations from position-only inverse kinematics along
the skeleton's chains, foot contacts from foot speed. A clip of T frames gives T - 1 rows (the last frame has
no velocity). On HumanML3D's own sample clip (new_joints/012314.npy -> new_joint_vecs/012314.npy) this
reproduces the published vectors to 1.5e-4 mean absolute difference (eval/motion_humanml3d_check.py).

HumanML3D's IK takes the across-body direction as (left hip - right hip) + (right shoulder - left shoulder),
which points the right way only because shoulders are wider than hips. The "humanml3d" skeleton keeps that
convention, so features made here from BVH files match the dataset's; other skeletons use right-minus-left for
both terms.

Quaternions are (w, x, y, z) arrays [..., 4]. Positions are metres, Y up.
"""
from __future__ import annotations

import numpy as np

from mmtok.modalities.motion.layout import FeatureLayout, Skeleton

FOOT_THRESHOLD = 0.002  # HumanML3D's contact threshold on squared per-frame foot displacement (m^2) at 20 fps
HEADING_SIGMA_SECONDS = 1.0  # HumanML3D smooths the heading with a Gaussian of sigma 20 frames at 20 fps


# ------------------------------------------------------------------------------------------------ quaternions

def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def qinv(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """v [..., 3] rotated by unit quaternions q [..., 4] (broadcast)."""
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def qbetween(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The shortest-arc unit quaternion taking direction u [..., 3] to direction v [..., 3]; for opposite
    directions, the half turn about an axis perpendicular to u (the vertical one when u is horizontal)."""
    w = np.sqrt((u * u).sum(-1, keepdims=True) * (v * v).sum(-1, keepdims=True)) + (u * v).sum(-1, keepdims=True)
    q = np.concatenate([w, np.cross(u, v)], axis=-1)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    opposite = norm[..., 0] < 1e-9 * np.maximum(1.0, np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
    if np.any(opposite):
        axis = np.cross(u, np.array([1.0, 0.0, 0.0]))
        small = np.linalg.norm(axis, axis=-1, keepdims=True) < 1e-6 * np.linalg.norm(u, axis=-1, keepdims=True)
        axis = np.where(small, np.cross(u, np.array([0.0, 1.0, 0.0])), axis)
        axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True).clip(1e-12)
        q = np.where(opposite[..., None], np.concatenate([np.zeros_like(w), axis], axis=-1), q)
        norm = np.linalg.norm(q, axis=-1, keepdims=True)
    return q / norm.clip(1e-12)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def quat_to_6d(q: np.ndarray) -> np.ndarray:
    """[..., 4] -> [..., 6]: the first two columns of the rotation matrix (HumanML3D's continuous 6D)."""
    m = quat_to_matrix(q)
    return np.concatenate([m[..., 0], m[..., 1]], axis=-1)


# ------------------------------------------------------------------------------------------------ kinematics

def forward_kinematics(skeleton: Skeleton, local: np.ndarray, root_pos: np.ndarray) -> np.ndarray:
    """Joint positions [T, J, 3] from local joint rotations [T, J, 4] (each relative to its parent's frame; the
    root's is global) and root positions [T, 3], with the skeleton's rest offsets."""
    T, J = local.shape[:2]
    offsets = np.asarray(skeleton.offsets, dtype=np.float64)
    glob = np.zeros((T, J, 4))
    pos = np.zeros((T, J, 3))
    for j, p in enumerate(skeleton.parents):
        if p < 0:
            glob[:, j], pos[:, j] = local[:, j], root_pos
        else:
            glob[:, j] = qmul(glob[:, p], local[:, j])
            pos[:, j] = pos[:, p] + qrot(glob[:, p], np.broadcast_to(offsets[j], (T, 3)))
    return pos


def _heading(positions: np.ndarray, skeleton: Skeleton, sigma: float | None, ik: bool) -> np.ndarray:
    """Unit horizontal forward directions [T, 3]: up x (right - left) over hips and shoulders, optionally
    Gaussian-smoothed over time (sigma in frames); `ik`: as HumanML3D's IK computes it (module docstring)."""
    r_hip, l_hip, r_sh, l_sh = skeleton.face
    hips = positions[:, r_hip] - positions[:, l_hip]
    if ik and skeleton.name == "humanml3d":
        hips = -hips
    across = hips + (positions[:, r_sh] - positions[:, l_sh])
    across = across / np.linalg.norm(across, axis=-1, keepdims=True).clip(1e-12)
    forward = np.cross(np.array([[0.0, 1.0, 0.0]]), across)
    if sigma:
        from scipy.ndimage import gaussian_filter1d

        forward = gaussian_filter1d(forward, sigma, axis=0, mode="nearest")
    return forward / np.linalg.norm(forward, axis=-1, keepdims=True).clip(1e-12)


def inverse_kinematics(positions: np.ndarray, skeleton: Skeleton, sigma: float | None) -> np.ndarray:
    """HumanML3D's position-only IK: quaternions [T, J, 4]; joint 0 holds the heading rotation (taking the
    forward direction to +Z; identity on frame 0), every other joint the rotation, relative to the running
    rotation of its chain, that takes its rest offset direction to its bone's direction (swing only, no twist)."""
    T, J = positions.shape[:2]
    root = qbetween(_heading(positions, skeleton, sigma, ik=True), np.array([[0.0, 0.0, 1.0]]).repeat(T, 0))
    root[0] = (1.0, 0.0, 0.0, 0.0)
    quats = np.zeros((T, J, 4))
    quats[..., 0] = 1.0
    quats[:, 0] = root
    offsets = np.asarray(skeleton.offsets, dtype=np.float64)
    dirs = offsets / np.linalg.norm(offsets, axis=-1, keepdims=True).clip(1e-12)
    for chain in skeleton.chains:
        R = root
        for a, b in zip(chain, chain[1:]):
            bone = positions[:, b] - positions[:, a]
            bone = bone / np.linalg.norm(bone, axis=-1, keepdims=True).clip(1e-12)
            local = qmul(qinv(R), qbetween(np.broadcast_to(dirs[b], bone.shape), bone))
            quats[:, b] = local
            R = qmul(R, local)
    return quats


def chain_forward_kinematics(skeleton: Skeleton, quats: np.ndarray, root_pos: np.ndarray,
                             offsets: np.ndarray) -> np.ndarray:
    """The inverse of `inverse_kinematics` with other bone `offsets` [J, 3]: positions [T, J, 3]."""
    T, J = quats.shape[:2]
    pos = np.zeros((T, J, 3))
    pos[:, 0] = root_pos
    for chain in skeleton.chains:
        R = quats[:, 0]
        for a, b in zip(chain, chain[1:]):
            R = qmul(R, quats[:, b])
            pos[:, b] = qrot(R, np.broadcast_to(offsets[b], (T, 3))) + pos[:, a]
    return pos


def retarget(positions: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """HumanML3D's `uniform_skeleton`: the motion on the skeleton's own bone lengths (IK, then FK with its offsets),
    the root path scaled by the ratio of leg lengths (thigh + shin of the right leg)."""
    knee, ankle = skeleton.chains[0][2], skeleton.chains[0][3]
    src = [np.linalg.norm(positions[0, j] - positions[0, skeleton.parents[j]]) for j in (knee, ankle)]
    tgt = [np.linalg.norm(skeleton.offsets[j]) for j in (knee, ankle)]
    scale = sum(tgt) / max(sum(src), 1e-9)
    quats = inverse_kinematics(positions, skeleton, sigma=None)
    return chain_forward_kinematics(skeleton, quats, positions[:, 0] * scale, np.asarray(skeleton.offsets))


# ------------------------------------------------------------------------------------------------ features

def features(positions: np.ndarray, layout: FeatureLayout, fps: float, *, uniform: bool = False) -> np.ndarray:
    """float32 [T - 1, layout.dim] features of joint positions [T, J, 3] (metres, Y up) at `fps` (see the module
    docstring; "positions" layouts: mmtok.modalities.motion.layout). `uniform` first retargets to the skeleton's bone
    lengths (HumanML3D does, for sources of other proportions). Raises ValueError for T < 2 or the wrong J."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1] != layout.num_joints or positions.shape[2] != 3:
        raise ValueError(f"expected positions [T, {layout.num_joints}, 3], got {list(positions.shape)}")
    if positions.shape[0] < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {positions.shape[0]}")
    if layout.kind == "positions":
        return _position_features(positions)
    skeleton = layout.skeleton
    if uniform:
        positions = retarget(positions, skeleton)
    positions = positions.copy()
    positions[..., 1] -= positions[..., 1].min()  # on the floor
    positions -= positions[0, 0] * np.array([1.0, 0.0, 1.0])  # first root at the XZ origin
    first = qbetween(_heading(positions[:1], skeleton, None, ik=False), np.array([[0.0, 0.0, 1.0]]))
    positions = qrot(first[:, None], positions)  # first frame faces +Z
    glob = positions.copy()

    thres = FOOT_THRESHOLD * (20.0 / fps) ** 2  # the same speed threshold at any frame rate
    feet = []
    for idx in (skeleton.feet_left, skeleton.feet_right):
        step = ((positions[1:, list(idx)] - positions[:-1, list(idx)]) ** 2).sum(-1)
        feet.append((step < thres).astype(np.float64))

    quats = inverse_kinematics(positions, skeleton, sigma=HEADING_SIGMA_SECONDS * fps)
    r_rot = quats[:, 0]
    root_vel = qrot(r_rot[1:], positions[1:, 0] - positions[:-1, 0])
    r_vel = qmul(r_rot[1:], qinv(r_rot[:-1]))
    rot_vel = np.arcsin(np.clip(r_vel[:, 2:3], -1.0, 1.0))

    local = positions.copy()
    local[..., 0] -= local[:, :1, 0]
    local[..., 2] -= local[:, :1, 2]
    local = qrot(r_rot[:, None], local)  # heading frame
    ric = local[:, 1:].reshape(len(local), -1)
    rot6 = quat_to_6d(quats[:, 1:]).reshape(len(quats), -1)
    vel = qrot(r_rot[:-1, None], glob[1:] - glob[:-1]).reshape(len(glob) - 1, -1)
    root = np.concatenate([rot_vel, root_vel[:, [0, 2]], local[:-1, 0, 1:2]], axis=-1)
    out = np.concatenate([root, ric[:-1], rot6[:-1], vel, *feet], axis=-1)
    return out.astype(np.float32)


def _position_features(positions: np.ndarray) -> np.ndarray:
    positions = positions - positions[0, 0] * np.array([1.0, 0.0, 1.0])
    root = positions[:, 0]
    rel = positions[:, 1:] - root[:, None]
    step = positions[1:] - positions[:-1]
    head = np.concatenate([step[:, 0, [0, 2]], root[:-1, 1:2]], axis=-1)
    out = np.concatenate([head, rel[:-1].reshape(len(rel) - 1, -1), step.reshape(len(step), -1)], axis=-1)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------------ statistics

def mean_std(clips: list[np.ndarray], layout: FeatureLayout) -> tuple[np.ndarray, np.ndarray]:
    """(Mean, Std) float32 [D] over every frame of `clips` ([T, D] arrays), with HumanML3D's convention
    (cal_mean_variance): within each slice (root rotation velocity, root XZ velocity, root height, positions,
    rotations, velocities, contacts) the std is that slice's average std, so no single dim is blown up by a
    near-constant value. A std that is still 0 (a constant slice) becomes 1."""
    data = np.concatenate([np.asarray(c, dtype=np.float64) for c in clips], axis=0)
    mean, std = data.mean(0), data.std(0)
    groups = [(0, 1), (1, 3), (3, 4)] if layout.kind != "positions" else [(0, 2), (2, 3)]
    sl = layout.slices
    groups += [sl[n] for n in ("positions", "rotations", "velocities", "contacts")]
    for a, b in groups:
        if b > a:
            std[a:b] = std[a:b].mean()
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)
