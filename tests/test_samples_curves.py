"""Sample grids (enlarged, labelled) and loss-curve pictures of runs (read from hand-written metrics.csv)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmtok.errors import CheckpointError
from mmtok.train.curves import plot_curves, read_metrics
from mmtok.modalities.image.grid import save_grid, upscale_factor


def test_tiny_grids_are_enlarged_nearest_and_labelled(tmp_path):
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    path = save_grid(x, -x, tmp_path / "samples" / "step_000042.png")  # the call the task makes
    img = np.asarray(Image.open(path))
    assert img.shape[1] >= 8 * 256 and img.shape[0] >= 2 * 256  # was 146 x 38
    assert upscale_factor(16, 16) == 16 and upscale_factor(256, 256) == 1 and upscale_factor(17, 40) == 7
    # find the first input cell: a 256 x 256 block of 16 x 16 constant squares equal to the input pixels
    expected = ((x[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    cell = None
    for top in range(img.shape[0] - 256):
        row = img[top]
        for left in range(img.shape[1] - 256):
            if (row[left] == expected[0, 0]).all() and (img[top + 255, left + 255] == expected[15, 15]).all():
                cell = img[top : top + 256, left : left + 256]
                break
        if cell is not None:
            break
    assert cell is not None
    assert np.array_equal(cell, expected.repeat(16, 0).repeat(16, 1))  # nearest neighbour, exact pixels
    left_strip = img[:, : left - 2]
    assert (left_strip < 128).any()  # row labels drawn left of the cells
    assert (img[: top - 2] < 128).any()  # the step written above


def test_grid_labels_and_step_are_optional(tmp_path):
    x = torch.zeros(2, 3, 300, 200)
    plain = np.asarray(Image.open(save_grid(x, x, tmp_path / "r.png", labels=(), min_cell=64)))
    assert plain.shape[:2] == (2 * 300 + 3 * 2, 2 * (200 + 2) + 2)  # no enlargement, no label space
    titled = np.asarray(Image.open(save_grid(x, x, tmp_path / "t.png", step=7, labels=())))
    assert titled.shape[0] > plain.shape[0] and titled.shape[1] == plain.shape[1]


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(",".join(header) + "\n" + "\n".join(",".join("" if v is None else str(v) for v in r)
                                                        for r in rows) + "\n")


def hand_run(root):
    """A run resumed once: version_0 logged steps 0..29, the resume restarted at step 20 and went to 39."""
    header = ["epoch", "step", "train/loss", "train/l1", "train/lr", "data/skipped", "val/psnr", "val/usage"]
    v0 = [[0, s, 1.0 - s / 100, 0.5, 1e-3, 0, None, None] for s in range(30)]
    v0 += [[0, 9, None, None, None, None, 12.5, 0.5], [0, 19, None, None, None, None, 13.5, 0.6],
           [0, 29, None, None, None, None, 99.0, 0.9]]  # step 29 was lost with the crash: replaced
    v1 = [[0, s, 2.0, 0.25, 5e-4, 0, None, None] for s in range(20, 40)]
    v1 += [[0, 29, None, None, None, None, 14.0, 0.7], [0, 39, None, None, None, None, 15.0, 0.8]]
    write_csv(root / "logs" / "version_0" / "metrics.csv", header, v0)
    write_csv(root / "logs" / "version_1" / "metrics.csv", header, v1)
    (root / "logs" / "version_2").mkdir()  # a start that crashed before logging: ignored
    return root


def test_read_metrics_joins_resumed_versions(tmp_path):
    series, resumes = read_metrics(hand_run(tmp_path / "run"))
    assert resumes == [20]
    assert [s for s, _ in series["train/loss"]] == list(range(40))  # no duplicate steps 20..29
    assert series["train/loss"][19][1] == pytest.approx(0.81) and series["train/loss"][20][1] == 2.0
    assert series["val/psnr"] == [(9, 12.5), (19, 13.5), (29, 14.0), (39, 15.0)]
    assert "data/skipped" not in series and "epoch" not in series


def test_plot_curves_draws_every_series(tmp_path):
    run = hand_run(tmp_path / "run")
    path = plot_curves(run)
    assert path == run / "curves.png"
    img = Image.open(path)
    assert img.mode == "RGB" and img.size[0] >= 3 * 400 and img.size[1] >= 2 * 240  # 5 panels: 3 + 2
    arr = np.asarray(img).astype(int)
    val_red = (arr[..., 0] > 150) & (arr[..., 1] < 110) & (arr[..., 2] < 80)
    assert val_red.sum() > 50  # validation points drawn
    with pytest.raises(CheckpointError, match="no metrics to plot"):
        plot_curves(tmp_path / "empty")
