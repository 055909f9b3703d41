"""SIGINT / SIGTERM on real `mmtok train` processes, on one CPU rank and on two (gloo DDP): the checkpoint is saved,
every rank exits within a bounded time with 130 / 143, and the last line says how to continue."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

STARTUP = 180  # seconds for the ranks to start and write a first checkpoint (2 slow CPU cores)
EXIT = 45  # seconds every rank has to exit after the signal


def start(tmp_path: Path, ranks: int) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mmtok.cli.main", "train", "test_tiny", "--out", str(out), "--max-steps", "100000",
           "--set", "trainer.ckpt_every=2", "--set", "data.num_workers=0", "--set", "data.batch_size=2",
           "--set", "data.val=null", "--set", "trainer.accelerator=cpu"]
    if ranks > 1:
        cmd += ["--set", f"trainer.devices={ranks}", "--set", "trainer.strategy=ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=tmp_path)
    ckpt = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + STARTUP
    while not ckpt.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("training did not start:\n" + (tmp_path / "log.txt").read_text()[-3000:])
        time.sleep(0.5)
    return proc, out


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def stop(proc: subprocess.Popen, pids: list[int], sig: int, target: str) -> int:
    if target == "group":
        os.killpg(proc.pid, sig)
    else:
        os.kill(pids[int(target[-1])], sig)
    try:
        code = proc.wait(timeout=EXIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"rank 0 did not exit within {EXIT} s of {signal.Signals(sig).name} to {target}")
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes left running: {left}"
    return code


def check_saved(tmp_path: Path, out: Path, code: int, sig: int) -> None:
    log = (tmp_path / "log.txt").read_text()
    assert code == 128 + sig, log[-3000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    step = ckpt["global_step"]
    assert step >= 2
    last = [ln for ln in log.splitlines() if ln.strip()][-1]
    assert f"{signal.Signals(sig).name} at step {step}" in last and f"mmtok train --resume --out {out}" in last, last
    assert not list(out.glob("checkpoints/*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_rank_saves_and_exits_with_the_signal_code(tmp_path, sig):
    proc, out = start(tmp_path, 1)
    check_saved(tmp_path, out, stop(proc, [proc.pid], sig, "group"), sig)


@pytest.mark.parametrize("sig,target", [(signal.SIGINT, "group"), (signal.SIGTERM, "rank1"),
                                        (signal.SIGTERM, "rank0")])
def test_two_ranks_stop_together_whoever_is_signalled(tmp_path, sig, target):
    proc, out = start(tmp_path, 2)
    ranks = [proc.pid] + children(proc.pid)
    assert len(ranks) == 2, ranks
    check_saved(tmp_path, out, stop(proc, ranks, sig, target), sig)


def test_a_stopped_run_resumes_from_its_own_recipe(tmp_path):
    proc, out = start(tmp_path, 1)
    stop(proc, [proc.pid], signal.SIGTERM, "group")
    saved = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    resumed = subprocess.run([sys.executable, "-m", "mmtok.cli.main", "train", "--resume", "--out", str(out),
                              "--max-steps", str(saved + 2)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"trainer.max_steps: 100000 -> {saved + 2}" in resumed.stderr
    assert f"done: step {saved + 2}" in resumed.stdout
