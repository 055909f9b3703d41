"""A built wheel, installed into a separate venv outside the checkout, runs `mmtok` on its own."""
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("mmtok-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "mmtok/cli/main.py" in names and "mmtok/recipes/quickstart.yaml" in names
    assert not any(n.startswith(("cli/", "recipes/", "tests/", "eval/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # Dependencies come from this environment (a plain path, so its editable mmtok finder is not loaded).
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)

    mmtok = str(venv / "bin" / "mmtok")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import mmtok; print(mmtok.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    assert str(venv) in where.stdout, where.stdout
    helped = subprocess.run([mmtok, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "train" in helped.stdout
    listed = subprocess.run([mmtok, "recipes"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "quickstart" in listed.stdout, listed.stderr
    run = subprocess.run([mmtok, "train", "quickstart", "--out", str(tmp_path / "run"), "--max-steps", "2",
                          "--set", "data.val_samples=8", "--set", "data.num_workers=0", "--set", "data.batch_size=4"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
