"""`mmtok runs`: hand-made run directories listed with step, PSNR, usage, time and status, newest first."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from typer.testing import CliRunner

from mmtok.cli.main import app


def make_run(root, name, *, recipe="quickstart", max_steps=100, summary=None, metrics=None, age=0.0):
    """A run directory; `metrics`: rows (step, psnr, usage) of logs/version_0/metrics.csv; `age`: seconds
    since its files were written."""
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.yaml").write_text(f"name: {recipe}\ntrainer:\n  max_steps: {max_steps}\n")
    files = [run / "recipe.yaml"]
    if metrics is not None:
        csv = run / "logs" / "version_0" / "metrics.csv"
        csv.parent.mkdir(parents=True)
        rows = ["epoch,step,train/loss,val/psnr,val/usage"]
        rows += [f"0,{s},0.5,," for s, _, _ in metrics] + [f"0,{s},,{p},{u}" for s, p, u in metrics]
        csv.write_text("\n".join(rows) + "\n")
        files.append(csv)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    files.append(run / "checkpoints" / "last.ckpt")
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
        files.append(run / "summary.json")
    t = time.time() - age
    for i, f in enumerate(files):  # in writing order, the summary last
        os.utime(f, (t + i * 0.01, t + i * 0.01))
    return run


def test_runs_table_and_json(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "done", summary={"recipe": "quickstart", "status": "finished", "step": 100, "max_steps": 100,
                                    "seconds": 264.3, "final": {"val/psnr": 17.82, "val/usage": 0.948}},
             metrics=[(49, 15.0, 0.5), (99, 17.5, 0.9)], age=7200)
    make_run(runs, "sub/old", recipe="test_tiny", max_steps=8,  # a summary without "status" (older mmtok)
             summary={"recipe": "test_tiny", "step": 8, "seconds": 12, "final": {"val/psnr": 9.5, "val/usage": 0.25}},
             age=86400 * 3)
    make_run(runs, "killed", metrics=[(49, 14.25, 0.75)], age=3600)  # no summary, logs stale
    make_run(runs, "live", recipe="llamagen_vq16", max_steps=400000, metrics=[(4999, 20.5, 0.6)], age=5)
    make_run(runs, "sigterm", summary={"recipe": "quickstart", "status": "interrupted", "step": 37,
                                       "max_steps": 600, "seconds": 40.0, "final": {}},
             metrics=[(19, 11.0, 0.4)], age=600)
    (runs / "done" / "eval" / "x").mkdir(parents=True)
    (runs / "done" / "eval" / "x" / "recipe.yaml").write_text("name: nested\n")  # inside a run: not a run
    (runs / "notes").mkdir()

    result = CliRunner().invoke(app, ["runs", str(runs), "--json"])
    assert result.exit_code == 0, result.output
    got = {os.path.relpath(r["path"], runs): r for r in json.loads(result.stdout)}
    assert list(got) == ["live", "sigterm", "killed", "done", "sub/old"]  # newest first
    assert (got["done"]["status"], got["done"]["step"], got["done"]["psnr"], got["done"]["usage"]) == \
        ("finished", 100, 17.82, 0.948)
    assert (got["sub/old"]["status"], got["sub/old"]["max_steps"]) == ("finished", 8)
    assert (got["killed"]["status"], got["killed"]["step"], got["killed"]["psnr"]) == ("interrupted", 49, 14.25)
    assert (got["live"]["status"], got["live"]["step"], got["live"]["usage"]) == ("running?", 4999, 0.6)
    assert (got["sigterm"]["status"], got["sigterm"]["step"], got["sigterm"]["psnr"]) == ("interrupted", 37, 11.0)

    table = CliRunner().invoke(app, ["runs", str(runs)], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    done = next(ln for ln in lines if " done " in ln)
    assert "quickstart" in done and "100/100" in done and "17.82" in done and "94.8%" in done
    assert "4.4 min" in done and "finished" in done and "2 h ago" in done
    assert "running?" in next(ln for ln in lines if " live " in ln)
    row = {name: next(i for i, ln in enumerate(lines) if f" {name} " in ln) for name in ("live", "done")}
    assert row["live"] < row["done"]


def test_runs_default_folder_empty_and_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = CliRunner().invoke(app, ["runs"])
    assert missing.exit_code == 2 and "no runs folder at runs" in missing.stderr
    (tmp_path / "runs").mkdir()
    empty = CliRunner().invoke(app, ["runs"])
    assert empty.exit_code == 0 and "no runs in runs" in empty.stdout
    make_run(tmp_path / "runs", "a", summary={"recipe": "quickstart", "status": "finished", "step": 3, "final": {}})
    one = CliRunner().invoke(app, ["runs", "runs/a"])  # a run directory itself
    assert one.exit_code == 0 and " a " in one.stdout and "3/100" in one.stdout


def test_runs_command_loads_no_torch():
    code = "import sys, mmtok.cli.runs, mmtok.train.inventory; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
