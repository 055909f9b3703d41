"""End-to-end training on CPU with the tiny recipe: every loss term, checkpoints, grids, exact resume."""
import copy
import csv

import lightning as L
import torch

from mmtok import config
from mmtok.files import last_checkpoint
from mmtok.train.run import train

FAST = ["data.val_samples=8", "data.batch_size=4", "data.num_workers=0"]


class Snapshot(L.Callback):
    """Records the module and optimizer state at the start of training (after any resume)."""

    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.optim = [copy.deepcopy(o.state_dict()) for o in trainer.optimizers]
        self.lr = [s.scheduler.get_last_lr() for s in trainer.lr_scheduler_configs]


def test_tiny_recipe_trains_every_term_and_writes_the_run_dir(tmp_path):
    recipe = config.load("test_tiny", FAST)
    summary = train(recipe, tmp_path / "run")
    assert summary["step"] == recipe.trainer.max_steps
    assert last_checkpoint(tmp_path / "run").is_file()
    assert (tmp_path / "run" / "recipe.yaml").is_file() and (tmp_path / "run" / "summary.json").is_file()
    assert sorted((tmp_path / "run" / "samples").glob("step_*.png"))
    with open(next((tmp_path / "run" / "logs").glob("version_*/metrics.csv"))) as f:
        columns = set(next(csv.reader(f)))
    for term in ["l1", "l2", "perceptual", "commitment", "entropy", "gan", "gan_weight", "disc", "lecam", "usage"]:
        assert f"train/{term}" in columns, term
    assert "val/psnr" in columns and "val/usage" in columns
    ckpt = torch.load(last_checkpoint(tmp_path / "run"), map_location="cpu", weights_only=True)
    assert config.load(ckpt["mmtok"]["recipe"]) == recipe


def test_resume_restores_step_weights_optimizers_and_codebook(tmp_path):
    run = tmp_path / "run"
    train(config.load("test_tiny", FAST + ["trainer.max_steps=4"]), run)
    saved = torch.load(last_checkpoint(run), map_location="cpu", weights_only=True)
    snap = Snapshot()
    summary = train(config.load("test_tiny", FAST + ["trainer.max_steps=6"]), run, resume=True, callbacks=[snap])
    assert snap.step == 4 and summary["step"] == 6 and summary["steps_this_run"] == 2
    for k, v in saved["state_dict"].items():
        assert torch.equal(snap.state[k], v), k
    assert any("quantizer" in k and "steps_unused" in k for k in saved["state_dict"])
    assert any(k.startswith("ema.") for k in saved["state_dict"])
    for got, want in zip(snap.optim, saved["optimizer_states"]):
        for pid, st in want["state"].items():
            assert torch.equal(got["state"][pid]["exp_avg"], st["exp_avg"])
    assert snap.lr[0] == saved["lr_schedulers"][0]["_last_lr"]
    # the first run's logs survive the resume
    assert len(list((run / "logs").glob("version_*/metrics.csv"))) == 2


def test_bad_files_are_named_once_in_the_summary(tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(folder / f"ok_{i}.png")
    (folder / "bad_a.png").write_bytes(b"not a png")
    (folder / "bad_b.jpg").write_bytes(b"\xff\xd8\xff broken")
    recipe = config.load("test_tiny", FAST + ["data.val=null", "trainer.max_steps=6", f"data.train={folder}"])
    summary = train(recipe, tmp_path / "run")  # 6 steps of 4 images: several passes over 4 good files
    names = sorted(entry.split(":")[0] for entry in summary["bad_samples"])
    assert names == [str(folder / "bad_a.png"), str(folder / "bad_b.jpg")], summary["bad_samples"]
    assert summary["skipped_samples"] == 2


def test_a_redirected_run_logs_plain_progress_lines_as_it_trains(tmp_path):
    """With stderr a file (nohup, SLURM, `> log`), progress is a plain line every few steps, not one cut bar line
    at the end."""
    import subprocess
    import sys

    log = tmp_path / "train.log"
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", "mmtok.cli.main", "train", "test_tiny", "--out",
                               str(tmp_path / "run"), "--set", "trainer.max_steps=6", "--set", "trainer.log_every=2",
                               "--set", "data.val_samples=4", "--set", "trainer.val_every=6"],
                              stdout=f, stderr=subprocess.STDOUT, timeout=600)
    text = log.read_text()
    assert done.returncode == 0, text
    lines = [line for line in text.splitlines() if line.startswith("train step ")]
    assert [line.split()[2] for line in lines] == ["2/6", "4/6", "6/6"], text
    assert all("step/s" in line and "eta " in line and "loss " in line for line in lines)
    assert "━" not in text  # no progress bar drawn into the file
