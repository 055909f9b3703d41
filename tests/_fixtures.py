"""Shared, cached test material for the evaluation and export tests: one tiny trained run and a folder of
images, each made once per test session (cached under pytest's base temp dir, so every module that imports
these fixtures reuses the same files)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FAST = ["data.val_samples=8", "data.batch_size=4", "data.num_workers=0", "trainer.max_steps=4"]
NUM_IMAGES = 12


def make_tiny_run(root: Path) -> Path:
    """A test_tiny run (4 steps, EMA on) at root/tiny-run, trained once and reused."""
    run = root / "tiny-run"
    if not (run / "checkpoints" / "last.ckpt").is_file():
        from mmtok import config
        from mmtok.train.run import train

        if run.exists():
            shutil.rmtree(run)
        train(config.load("test_tiny", FAST), run)
    return run


def make_images(root: Path) -> Path:
    """NUM_IMAGES PNGs of varied, non-square sizes (so the val crop matters): smooth gradients plus noise."""
    folder = root / "tiny-images"
    if folder.is_dir() and len(list(folder.glob("*.png"))) == NUM_IMAGES:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(NUM_IMAGES):
        h, w = int(rng.integers(18, 40)), int(rng.integers(18, 40))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * 200
        img = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img_{i:02d}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.getbasetemp())


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run directory (so one test's eval/ or export does not leak into another's)."""
    shutil.copytree(run, dest)
    return dest
