"""Check mmtok's HumanML3D feature code against HumanML3D's own files (not part of the wheel, not a test: the
files are the dataset's, fetched by hand from github.com/EricGuo5513/HumanML3D).

    python eval/motion_humanml3d_check.py HumanML3D/new_joints/012314.npy HumanML3D/new_joint_vecs/012314.npy

new_joints holds the joint positions HumanML3D recovered from new_joint_vecs (recover_from_ric), so
1. mmtok.modalities.motion.recover.recover_joints(vecs) must give new_joints (float32 round-off), and
2. mmtok.modalities.motion.features.features(new_joints) must give vecs again (up to the float32 positions it starts from).
Prints the max and mean absolute differences per feature slice; writes nothing.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from mmtok.modalities.motion.features import features
from mmtok.modalities.motion.layout import layout_for
from mmtok.modalities.motion.recover import recover_joints


def main(joints_path: str, vecs_path: str) -> None:
    joints, vecs = np.load(joints_path), np.load(vecs_path)
    layout = layout_for("humanml3d")
    rec = recover_joints(torch.from_numpy(vecs), layout).numpy()
    print(f"recover_joints(vecs) vs new_joints: max {np.abs(rec - joints).max():.2e} m")
    ours = features(joints, layout, fps=20.0)
    for name, (a, b) in layout.slices.items():
        d = np.abs(ours[:, a:b] - vecs[: len(ours), a:b])
        print(f"features(new_joints) vs vecs, {name:10s} [{a}:{b}]: max {d.max():.2e}, mean {d.mean():.2e}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
