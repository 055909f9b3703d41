"""`mmtok encode` / `decode` on real folders: an unreadable image is named with its reason and skipped (listed at
the end and in OUT.skipped.txt), --strict stops at it, and --device speaks the same names as train and eval."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _fixtures import copy_run, tiny_images, tiny_run  # noqa: F401  (fixtures)
from mmtok.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("codec")
    run = copy_run(tiny_run, root / "run")
    out = root / "bundle"
    result = runner.invoke(app, ["export", str(run), str(out)])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return out


@pytest.fixture
def messy(tiny_images, tmp_path):  # noqa: F811
    """A folder: 4 good PNGs, a file that is not an image, a truncated PNG (good files sort first and last)."""
    folder = tmp_path / "messy"
    folder.mkdir()
    good = sorted(tiny_images.glob("*.png"))[:4]
    for i, f in enumerate(good):
        shutil.copy(f, folder / f"{'a' if i < 2 else 'z'}_{i}.png")
    (folder / "m_notes.png").write_bytes(b"these are notes, not pixels")
    (folder / "n_cut.png").write_bytes(good[0].read_bytes()[:60])
    return folder


def test_encode_skips_unreadable_images_names_them_and_encodes_the_rest(bundle, messy, tmp_path):
    import mmtok

    out = tmp_path / "ids.npy"
    result = runner.invoke(app, ["encode", str(bundle), str(messy), "--out", str(out), "--batch-size", "3"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    good = [messy / n for n in ("a_0.png", "a_1.png", "z_2.png", "z_3.png")]
    ids = np.load(out)
    assert ids.shape == (4, 4, 4)
    assert (tmp_path / "ids.files.txt").read_text().splitlines() == [str(f) for f in good]
    assert (ids == mmtok.load(bundle).encode(good).numpy()).all()  # rows still line up with files.txt
    listed = dict(line.split("\t") for line in (tmp_path / "ids.skipped.txt").read_text().splitlines())
    assert set(listed) == {str(messy / "m_notes.png"), str(messy / "n_cut.png")}
    assert listed[str(messy / "m_notes.png")] == "not a recognised image format"
    assert all(reason for reason in listed.values())
    for name in ("m_notes.png", "n_cut.png"):
        assert f"skipped {messy / name}: " in result.stderr
    assert "skipped 2 image(s) that could not be read" in result.stdout and "4 image(s) ->" in result.stdout

    # a clean run to the same --out removes the stale list
    for name in ("m_notes.png", "n_cut.png"):
        (messy / name).unlink()
    result = runner.invoke(app, ["encode", str(bundle), str(messy), "--out", str(out)])
    assert result.exit_code == 0 and not (tmp_path / "ids.skipped.txt").exists()


def test_encode_strict_stops_at_the_first_unreadable_image_naming_it(bundle, messy, tmp_path):
    out = tmp_path / "ids.npy"
    result = runner.invoke(app, ["encode", str(bundle), str(messy), "--out", str(out), "--strict"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"error: cannot read {messy / 'm_notes.png'}: not a recognised image format")
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_encode_with_nothing_readable_is_an_error(bundle, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = runner.invoke(app, ["encode", str(bundle), str(tmp_path / "bad.jpg"), "--out", str(tmp_path / "i.npy")])
    assert result.exit_code == 2 and "none of the 1 image(s) could be read" in result.stderr
    assert f"skipped {tmp_path / 'bad.jpg'}: " in result.stderr and not (tmp_path / "i.npy").exists()


@pytest.mark.parametrize("device", ["gpu", "cuda", "cuda:0", "gpu:1"])
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_gpu_device_without_cuda_is_one_line_exit_2(bundle, tiny_images, tmp_path, monkeypatch,  # noqa: F811
                                                    command, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    np.save(tmp_path / "ids.npy", np.zeros((1, 4, 4), dtype=np.int64))
    source = str(tiny_images) if command == "encode" else str(tmp_path / "ids.npy")
    result = runner.invoke(app, [command, str(bundle), source, "--out", str(tmp_path / "o"), "--device", device])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stderr.startswith("error: ") and "no CUDA GPU" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_encode_decode_accept_the_train_eval_device_names(bundle, tiny_images, tmp_path):  # noqa: F811
    files = sorted(Path(tiny_images).glob("*.png"))[:2]
    result = runner.invoke(app, ["encode", str(bundle), *map(str, files), "--out", str(tmp_path / "i.npy"),
                                 "--device", "auto" if not torch.cuda.is_available() else "cpu"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    result = runner.invoke(app, ["decode", str(bundle), str(tmp_path / "i.npy"), "--out", str(tmp_path / "png"),
                                 "--device", "CPU"])
    assert result.exit_code == 0 and len(list((tmp_path / "png").glob("*.png"))) == 2
    result = runner.invoke(app, ["decode", str(bundle), str(tmp_path / "i.npy"), "--out", str(tmp_path / "png"),
                                 "--device", "tpu"])
    assert result.exit_code == 2 and "unknown device 'tpu'" in result.stderr
