"""eval/gpu_suite.sh: its --dry-run (every step on CPU at tiny sizes) must pass, so the GPU script cannot rot."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "eval" / "gpu_suite.sh"
STEPS = ["tests", "lookup", "train_torch", "train_triton", "smoke"]


def run_suite(*args, env_extra=None, timeout=900):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "TRITON_INTERPRET")}
    env.update(PYTHON=sys.executable, PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}", **(env_extra or {}))
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=ROOT)


@pytest.mark.slow
def test_dry_run_writes_every_result(tmp_path):
    res, out = tmp_path / "res", tmp_path / "out"
    proc = run_suite("--dry-run", "--out", str(res), env_extra={"OUT": str(out)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((res / "summary.json").read_text())
    assert summary["mode"].startswith("dry-run") and summary["failed"] == 0
    assert [s["name"] for s in summary["steps"]] == STEPS and all(s["status"] == "ok" for s in summary["steps"])
    for name in ("bench_lookup_cpu.json", "bench_train_cpu_torch.json", "bench_train_cpu_triton.json",
                 "smoke_runs.json", "smoke/summary.json"):
        json.loads((res / name).read_text())  # valid JSON
    lookup = json.loads((res / "bench_lookup_cpu.json").read_text())
    assert lookup["complete"] and lookup["env"]["mmtok_backend"] == "triton"  # the kernel, interpreted
    assert lookup["cases"][0]["methods"]["mmtok"]["status"] == "ok"
    train = {k: json.loads((res / f"bench_train_cpu_{k}.json").read_text()) for k in ("torch", "triton")}
    assert train["torch"]["lookup"] == "torch" and train["triton"]["lookup_triton"] is True
    assert all(t["rows"][0]["recipe"] == "llamagen_vq16" and t["rows"][0]["images_per_s"] > 0 for t in train.values())
    assert json.loads((res / "smoke" / "summary.json").read_text())["step"] == 4
    assert (res / "pytest_gpu.xml").is_file() and all((res / "logs" / f"{s}.log").is_file() for s in STEPS)
    table = proc.stdout[proc.stdout.index("mmtok GPU suite"):]
    assert all(f"{s:<14}ok" in table for s in STEPS)
    assert json.loads((out / "gpu_suite" / "summary.json").read_text()) == summary  # copied to $OUT


def test_suite_fails_loudly_without_a_gpu_or_on_a_bad_argument(tmp_path):
    bad = run_suite("--bogus", timeout=60)
    assert bad.returncode == 2 and "unknown argument --bogus" in bad.stderr
    proc = run_suite("--out", str(tmp_path / "res"), env_extra={"CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert proc.returncode == 1 and "no CUDA device" in proc.stderr
    assert not (tmp_path / "res" / "summary.json").exists()
