"""Resume from the run: its own recipe plus overrides, loss modules switched on or off, frozen networks not saved,
max_minutes per invocation, kept and best checkpoints."""
import pytest
import torch

from mmtok import config
from mmtok.errors import RecipeError
from mmtok.files import last_checkpoint
from mmtok.train.run import resume_recipe, train

FAST = ["data.val_samples=4", "data.batch_size=2", "data.num_workers=0", "trainer.max_steps=2",
        "trainer.val_every=2", "trainer.log_every=1"]
PLAIN = FAST + ["loss.weights.gan=0", "loss.weights.perceptual=0", "loss.weights.lecam=0"]


class Report:
    """Collects the task's restore report at train start."""

    def __init__(self):
        import lightning as L

        outer = self

        class CB(L.Callback):
            def on_train_start(self, trainer, pl_module):
                outer.report = pl_module.restore_report
                outer.step = trainer.global_step

        self.callback = CB()


def test_resume_recipe_applies_overrides_on_the_runs_recipe_and_refuses_model_changes(tmp_path):
    run = tmp_path / "run"
    train(config.load("test_tiny", PLAIN), run)
    recipe, diff = resume_recipe(run, ["trainer.max_steps=5", "optim.lr=2e-3"])
    assert recipe.trainer.max_steps == 5 and recipe.data.batch_size == 2  # the run's own values survive
    assert ("trainer.max_steps", 2, 5) in diff and ("optim.lr", 0.001, 0.002) in diff and len(diff) == 2
    with pytest.raises(RecipeError, match=r"different model or frozen set \(model.quantizer.codebook_size\)"):
        resume_recipe(run, ["model.quantizer.codebook_size=64"])


def test_loss_modules_switched_on_and_off_across_resumes(tmp_path):
    run = tmp_path / "run"
    first = train(config.load("test_tiny", PLAIN), run)
    assert first["seconds_total"] == first["seconds"]
    saved = torch.load(last_checkpoint(run), map_location="cpu", weights_only=True)
    assert not any(k.startswith("adversary.") for k in saved["state_dict"])

    on = Report()
    gan_on, _ = resume_recipe(run, ["trainer.max_steps=6", "loss.weights.gan=0.1", "loss.gan.start_step=0",
                                    "loss.gan.warmup_steps=0", "loss.weights.perceptual=0.1"])
    summary = train(gan_on, run, resume=True, callbacks=[on.callback])
    assert summary["step"] == 6 and on.step == 2
    assert on.report["fresh"] == ["adversary"] and "tokenizer" in on.report["restored"]
    ckpt = torch.load(last_checkpoint(run), map_location="cpu", weights_only=True)
    assert any(k.startswith("adversary.") for k in ckpt["state_dict"])
    assert not any(k.startswith("objective.") for k in ckpt["state_dict"])  # frozen LPIPS is never saved
    assert len(ckpt["optimizer_states"]) == 2

    off = Report()
    gan_off, _ = resume_recipe(run, ["trainer.max_steps=7", "loss.weights.gan=0", "loss.weights.perceptual=0"])
    last = train(gan_off, run, resume=True, callbacks=[off.callback])
    assert off.report["dropped"] == ["adversary"] and off.step == 6
    # the run's time is every invocation's (`mmtok runs` shows it), not only the last one's
    assert last["seconds_total"] == pytest.approx(first["seconds"] + summary["seconds"] + last["seconds"], abs=0.2)
    from mmtok.train.inventory import list_runs

    assert list_runs(tmp_path)[0].seconds == last["seconds_total"]
    ckpt = torch.load(last_checkpoint(run), map_location="cpu", weights_only=True)
    assert not any(k.startswith("adversary.") for k in ckpt["state_dict"]) and ckpt["global_step"] == 7


def test_max_minutes_limits_each_invocation_not_the_whole_run(tmp_path):
    run = tmp_path / "run"
    limited = config.load("test_tiny", PLAIN + ["trainer.max_steps=50", "trainer.max_minutes=0.0001"])
    first = train(limited, run)
    assert first["status"] == "stopped on time" and first["exit_code"] == 0 and first["step"] == 1
    assert "val/psnr" in first["final"]  # a stop on time still validates
    second = train(resume_recipe(run)[0], run, resume=True)  # a new allowance: it makes progress again
    assert second["status"] == "stopped on time" and second["step"] == 2


def test_kept_and_best_checkpoints(tmp_path):
    run = tmp_path / "run"
    recipe = config.load("test_tiny", PLAIN + ["trainer.max_steps=4", "trainer.val_every=1",
                                               "trainer.keep_every=2", "trainer.keep_best=val/psnr"])
    train(recipe, run)
    kept = sorted(p.name for p in (run / "checkpoints").glob("step_*.ckpt"))
    assert kept == ["step_0000002.ckpt", "step_0000004.ckpt"]
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    psnrs = {}
    import csv

    with open(next((run / "logs").glob("version_*/metrics.csv"))) as f:
        for row in csv.DictReader(f):
            if row.get("val/psnr"):
                psnrs[int(row["step"])] = float(row["val/psnr"])
    assert len(psnrs) >= 4  # every validation during fit (the final one repeats the last weights)
    assert best["callbacks"]["Checkpointer"]["best"] == pytest.approx(max(psnrs.values()), abs=1e-4)


def test_keep_best_must_name_a_validation_metric(tmp_path):
    with pytest.raises(RecipeError, match="keep_best"):
        train(config.load("test_tiny", PLAIN + ["trainer.keep_best=val/psnrr"]), tmp_path / "run")


def test_a_slurm_requeue_checkpoint_resumes_without_the_flag(tmp_path):
    import os
    import shutil
    import time

    from mmtok.train.run import prepare_run_dir

    run = tmp_path / "run"
    recipe = config.load("test_tiny", PLAIN)
    train(recipe, run)
    assert prepare_run_dir(recipe, run, resume=True) == last_checkpoint(run)
    hpc = run / "hpc_ckpt_3.ckpt"  # what Lightning's SIGUSR1 handler writes before `scontrol requeue`
    shutil.copy(last_checkpoint(run), hpc)
    later = time.time() + 5
    os.utime(hpc, (later, later))
    assert prepare_run_dir(recipe, run, resume=False) == hpc  # the requeued job runs the same command
    assert train(recipe, run)["status"] == "finished"


def test_a_resume_that_keeps_the_lr_says_so_and_one_that_changes_it_shows_both():
    from mmtok.train.callbacks import lr_schedule_line

    before = config.load("test_tiny", ["trainer.max_steps=2", "optim.warmup_steps=2"])
    after = config.load("test_tiny", ["trainer.max_steps=5", "optim.warmup_steps=2"])
    assert "the lr at step 2 is unchanged (0.001)" in lr_schedule_line(before, after, 2)  # the decay starts here
    later = config.load("test_tiny", ["trainer.max_steps=8", "optim.warmup_steps=2"])
    line = lr_schedule_line(after, later, 4)
    assert "->" in line and "unchanged" not in line
