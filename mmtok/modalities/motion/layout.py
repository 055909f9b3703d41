"""Skeletons and feature layouts of the motion modality (torch-free and numpy-free: family configs import it).

A motion clip is a float32 array [T, D] of per-frame features at the recipe's fps. Three layouts:

- "humanml3d": HumanML3D's 263-d vectors over its 22 SMPL joints (REFERENCE.md section 4; Guo et al. 2022,
  github.com/EricGuo5513/HumanML3D motion_representation.py), Y up, metres:
    root      [0:4]      root rotation velocity about Y (half-angle, radians per frame), root XZ velocity in the
                         body's heading frame (m per frame), root height (m)
    positions [4:67]     the 21 non-root joints relative to the root, in the heading frame (m); what T2M-GPT's
                         loss calls "velocity" is this slice
    rotations [67:193]   6D rotations (first two columns of the matrix) of the 21 non-root joints from
                         HumanML3D's position-only inverse kinematics
    velocities [193:259] per-frame displacement of all 22 joints in the heading frame (m per frame)
    contacts  [259:263]  foot contacts (left ankle, left toe, right ankle, right toe), 0 or 1
- "deepmimic": the same construction over the 18 points of DeepMimic's humanoid (15 URDF joints plus head and
  toe tips): 4 + 17*3 + 17*6 + 18*3 + 4 = 215 dims.
- "positions": the fallback for skeletons that map to neither: root [0:3] (root X and Z displacement per frame in
  the world frame, root height), positions (J-1)*3 (joints minus the root position, world axes), velocities J*3
  (per-frame world displacement of every joint); 6*J dims, no rotations, no contacts.

In every layout the recovered joint positions (mmtok.modalities.motion.recover) of frame t use the root
rows of frames < t, as HumanML3D's recover_from_ric does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

FEATURES = ("humanml3d", "deepmimic", "positions")
SLICE_NAMES = ("root", "positions", "rotations", "velocities", "contacts")


@dataclass(frozen=True)
class Skeleton:
    """A joint tree: names, parents (-1 for the root, parents before children), HumanML3D-style kinematic chains
    (each starts at the root or at a joint of an earlier chain), rest offsets from the parent (metres, Y up),
    the face joints (right hip, left hip, right shoulder, left shoulder: the heading is the horizontal direction
    perpendicular to right-minus-left) and the foot joints whose contacts are features (left ones, then right)."""

    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]
    chains: tuple[tuple[int, ...], ...]
    offsets: tuple[tuple[float, float, float], ...]
    face: tuple[int, int, int, int]
    feet_left: tuple[int, ...]
    feet_right: tuple[int, ...]

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def mirror(self) -> list[int]:
        """Joint permutation of a left-right mirror: each left_* joint swapped with its right_* twin."""
        index = {n: i for i, n in enumerate(self.joints)}
        swap = {"left": "right", "right": "left"}
        return [index.get(swap[n.split("_", 1)[0]] + "_" + n.split("_", 1)[1], i)
                if n.split("_", 1)[0] in swap else i for i, n in enumerate(self.joints)]

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(parent, child) pairs, for stick figures."""
        return [(p, j) for j, p in enumerate(self.parents) if p >= 0]


def _parents(n: int, chains) -> tuple[int, ...]:
    parents = [-1] * n
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            parents[b] = a
    return tuple(parents)


# HumanML3D's 22 SMPL joints (its paramUtil.t2m_kinematic_chain and t2m_raw_offsets). The offsets are the unit
# rest directions times the bone lengths of HumanML3D's target skeleton, measured on its sample clip
# HumanML3D/new_joints/012314.npy (every clip of the dataset is retargeted to these lengths).
_T2M_CHAINS = ((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20))
_T2M_DIRS = ((0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0),
             (0, 1, 0), (0, 0, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, -1, 0), (0, -1, 0),
             (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0))
_T2M_LENGTHS = (0.0, 0.1031, 0.1099, 0.1316, 0.3936, 0.3902, 0.1432, 0.4324, 0.4256, 0.0574, 0.1434, 0.1494, 0.2194,
                0.1375, 0.1434, 0.1030, 0.1316, 0.1230, 0.2568, 0.2631, 0.2660, 0.2699)
SMPL_JOINTS = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
               "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
               "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
HUMANML3D = Skeleton(
    name="humanml3d", joints=SMPL_JOINTS, parents=_parents(22, _T2M_CHAINS), chains=_T2M_CHAINS,
    offsets=tuple(tuple(float(c) * length for c in d) for d, length in zip(_T2M_DIRS, _T2M_LENGTHS)),
    face=(2, 1, 17, 16), feet_left=(7, 10), feet_right=(8, 11))

# DeepMimic's humanoid3d as pybullet ships it (pybullet_data/humanoid/humanoid.urdf, the character of the clips in
# pybullet_data/data/motions/), loaded at globalScaling=0.25 as pybullet's DeepMimic environment does, so units are
# metres. Y up, the character faces +X, right is +Z. The URDF's joint origins are the offsets of the 15 joints; the
# head (the neck link's sphere centre) and the toe tips (front-bottom edge of each ankle link's foot box, centre
# (0.18, -0.09, 0), size 0.708 x 0.22) are added as fixed points so that neck and ankle rotations show in positions.
_S = 0.25
DEEPMIMIC_JOINTS = ("root", "chest", "neck", "head", "right_hip", "right_knee", "right_ankle", "right_toe",
                    "right_shoulder", "right_elbow", "right_wrist", "left_hip", "left_knee", "left_ankle", "left_toe",
                    "left_shoulder", "left_elbow", "left_wrist")
_DM_CHAINS = ((0, 4, 5, 6, 7), (0, 11, 12, 13, 14), (0, 1, 2, 3), (1, 8, 9, 10), (1, 15, 16, 17))
_DM_URDF = {  # joint -> offset from its parent in URDF units (before the 0.25 scaling)
    "root": (0.0, 0.0, 0.0), "chest": (0.0, 0.944604, 0.0), "neck": (0.0, 0.895576, 0.0), "head": (0.0, 0.7, 0.0),
    "right_hip": (0.0, 0.0, 0.339548), "right_knee": (0.0, -1.686184, 0.0), "right_ankle": (0.0, -1.63948, 0.0),
    "right_toe": (0.18 + 0.354, -0.09 - 0.11, 0.0), "right_shoulder": (-0.0962, 0.974, 0.73244),
    "right_elbow": (0.0, -1.099152, 0.0), "right_wrist": (0.0, -1.035788, 0.0),
    "left_hip": (0.0, 0.0, -0.339548), "left_knee": (0.0, -1.686184, 0.0), "left_ankle": (0.0, -1.63948, 0.0),
    "left_toe": (0.18 + 0.354, -0.09 - 0.11, 0.0), "left_shoulder": (-0.0962, 0.974, -0.73244),
    "left_elbow": (0.0, -1.099152, 0.0), "left_wrist": (0.0, -1.035788, 0.0),
}
DEEPMIMIC = Skeleton(
    name="deepmimic", joints=DEEPMIMIC_JOINTS, parents=_parents(18, _DM_CHAINS), chains=_DM_CHAINS,
    offsets=tuple(tuple(_S * c for c in _DM_URDF[j]) for j in DEEPMIMIC_JOINTS),
    face=(4, 11, 8, 15), feet_left=(13, 14), feet_right=(6, 7))

SKELETONS = {"humanml3d": HUMANML3D, "deepmimic": DEEPMIMIC}


@dataclass(frozen=True)
class FeatureLayout:
    """The per-frame feature vector of one layout: its dimension and named slices [start, end)."""

    kind: str  # one of FEATURES
    num_joints: int
    num_contacts: int

    @property
    def dim(self) -> int:
        j = self.num_joints
        if self.kind == "positions":
            return 6 * j
        return 4 + 9 * (j - 1) + 3 * j + self.num_contacts

    @property
    def slices(self) -> dict[str, tuple[int, int]]:
        """{"root", "positions", "rotations", "velocities", "contacts"} -> (start, end); empty slices have start == end."""
        j = self.num_joints
        if self.kind == "positions":
            bounds = (0, 3, 3 + 3 * (j - 1), 3 + 3 * (j - 1), 6 * j, 6 * j)
        else:
            pos = 4 + 3 * (j - 1)
            rot = pos + 6 * (j - 1)
            vel = rot + 3 * j
            bounds = (0, 4, pos, rot, vel, vel + self.num_contacts)
        return {name: (bounds[i], bounds[i + 1]) for i, name in enumerate(SLICE_NAMES)}

    @property
    def skeleton(self) -> Optional[Skeleton]:
        """The named skeleton of this layout (None for "positions", whose joints are the source's own)."""
        return SKELETONS.get(self.kind)


def layout_for(kind: str, num_joints: Optional[int] = None) -> FeatureLayout:
    """The layout of `kind` ("humanml3d", "deepmimic", or "positions" with `num_joints` joints)."""
    if kind == "positions":
        if not num_joints or num_joints < 2:
            raise ValueError("the 'positions' layout needs num_joints >= 2")
        return FeatureLayout("positions", int(num_joints), 0)
    sk = SKELETONS[kind]
    return FeatureLayout(kind, sk.num_joints, len(sk.feet_left) + len(sk.feet_right))
