"""The codec family and the audio path through train -> eval -> export -> mmtok.load: presets and bitrates, per-sample
quantizer dropout, silence-safe gradients, spectral distances, the adversary, the tokenizer's LM orders and its
one-line errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import mmtok
from mmtok import config, families
from mmtok.errors import MmtokError
from tests._audio_helpers import make_audio_folder, tone


def test_presets_frame_rates_and_bitrates():
    rates = {}
    for name in ("encodec_24k", "dac_44k", "speech_16k", "audio_small_16k"):
        m = config.load({"model": {"preset": name}}).model
        rates[name] = (round(m.frame_rate, 2), m.quantizer.levels, m.quantizer.codebook_size, round(m.bitrate()))
    assert rates == {"encodec_24k": (75.0, 8, 1024, 6000), "dac_44k": (86.13, 9, 1024, 7752),
                     "speech_16k": (50.0, 8, 1024, 4000), "audio_small_16k": (50.0, 8, 256, 3200)}


def test_rvq_dropout_per_sample_and_zero_rows_have_finite_gradients():
    from mmtok.quantize import build_quantizer
    from mmtok.quantize.config import ResidualVQConfig

    torch.manual_seed(0)
    cfg = ResidualVQConfig(levels=4, codebook_size=16, dim=4, quantizer_dropout=1.0, dropout_per="sample")
    q = build_quantizer(8, cfg).train()
    z = torch.randn(64, 5, 8)
    z[0] = 0.0  # an all-zero sample (digital silence through a bias-free encoder)
    z.requires_grad_(True)
    out = q(z)
    n = q.levels_in_use(64)  # the next draw: a LongTensor, one count per sample
    assert isinstance(n, torch.Tensor) and n.shape == (64,) and 1 <= int(n.min()) and int(n.max()) <= 4
    assert 1 < float(out.stats["levels_used"]) < 4  # samples kept different numbers of levels
    full = torch.stack([q.quantizers[i].lookup(out.ids[..., i]) for i in range(4)]).sum(0)
    per_sample_err = (out.z_q - full).abs().flatten(1).amax(1)
    assert (per_sample_err > 1e-6).any() and (per_sample_err < 1e-6).any()  # some samples dropped levels
    (out.z_q.sum() + sum(out.losses.values())).backward()
    assert torch.isfinite(z.grad).all() and float(z.grad[0].abs().max()) < 1e3
    q.eval()
    with torch.no_grad():  # evaluation uses every level, whatever the dropout
        assert torch.equal(q(z.detach()).z_q, q.lookup(q(z.detach()).ids))


def test_spectral_distances_and_si_sdr():
    from mmtok.losses.audio import MelDistance, STFTDistance, mel_filterbank, si_sdr

    import librosa.filters

    assert torch.allclose(mel_filterbank(16000, 512, 40), torch.from_numpy(librosa.filters.mel(
        sr=16000, n_fft=512, n_mels=40)))
    x = torch.from_numpy(tone(0.5, 16000)).T.unsqueeze(0)  # [1, 1, 8000]
    noisy = x + 0.05 * torch.randn_like(x)
    mel, stft = MelDistance(16000), STFTDistance()
    assert float(mel(x, x)) == 0 and float(stft(x, x)) == 0
    assert 0 < float(mel(noisy, x)) < float(mel(torch.zeros_like(x), x))
    assert float(si_sdr(0.5 * x, x)) > 60  # scale-invariant
    assert 5 < float(si_sdr(noisy, x)) < 30


def test_adversary_terms_and_gradients():
    recipe = config.load({"model": {"preset": "test_codec"}, "loss": {"weights": {"gan": 1.0, "feature": 2.0},
                          "gan": {"channels": 4, "periods": [2, 3], "stft_windows": [64, 32]}}})
    fam = families.get("codec")
    model = fam.build_model(recipe.model, ("gan", "feature"))
    objective = fam.build_objective(recipe)
    adversary = objective.make_adversary()
    x = torch.rand(2, *model.meta["input_size"]) * 0.4 - 0.2
    out = model(x)
    g, _ = adversary.g_terms(x, out.recon, None, model)
    assert set(g) == {"gan", "feature"} and all(torch.isfinite(v) for v in g.values())
    sum(g.values()).backward()
    assert model.decoder.net[-2].parametrizations.weight.original1.grad is not None
    d = adversary.d_terms(x, out.recon)
    adversary.d_loss(d).backward()
    assert all(p.grad is not None for p in adversary.parameters())


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    """A test_codec run on tiny synthetic clips (8 kHz), with the adversary and the codebook entropy term (as the
    quick start) on, trained 4 steps."""
    from mmtok.train.run import train

    root = tmp_path_factory.mktemp("audio")
    folder = make_audio_folder(root / "clips", n=6, seconds=0.3, sr=8000)
    recipe = config.load({
        "model": {"preset": "test_codec"},
        "loss": {"weights": {"gan": 0.5, "feature": 1.0, "l1": 1.0, "entropy": 0.05},
                 "gan": {"channels": 4, "periods": [2], "stft_windows": [64], "start_step": 1}},
        "data": {"train": str(folder), "val": str(folder), "batch_size": 4, "num_workers": 0, "val_samples": 8},
        "trainer": {"max_steps": 4, "val_every": 2, "ckpt_every": 2, "log_every": 1},
    })
    summary = train(recipe, root / "run")
    return root, folder, summary


def test_train_writes_spectrograms_and_clips(audio_run):
    root, _, summary = audio_run
    assert summary["status"] == "finished" and summary["skipped_samples"] == 2
    assert {"val/mel_distance", "val/si_sdr", "val/usage_min"} <= set(summary["final"])
    logged = (root / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/entropy", "train/mel", "train/commitment"} <= set(logged)
    grid = root / "run" / "samples" / "step_000004.png"
    assert summary["grid"] == str(grid) and grid.is_file()
    clip, sr = sf.read(str(grid.with_suffix("") / "clip_0_reconstruction.wav"))
    assert sr == 8000 and clip.shape == (320,)


def test_eval_export_load_round_trip(audio_run):
    from mmtok.evaluation import evaluate
    from mmtok.export.bundle import export_bundle

    root, folder, _ = audio_run
    run = root / "run"
    result = evaluate(run, str(folder), num_samples=8, batch_size=4, num_workers=0, progress=False, levels=[1, 2])
    m = result["metrics"]
    assert set(m["by_levels"]) == {"1", "2", "3"} and m["bitrate_kbps"] == 3 * 4 * 1000 / 1000
    assert m["by_levels"]["1"]["kbps"] == 4.0 and len(m["usage_per_level_pct"]) == 3
    assert m["mel_distance"] == m["by_levels"]["3"]["mel_distance"] > 0
    out = run / "eval" / "001"
    assert result["out"] == str(out)
    for name in ("metrics.json", "report.md", "spectrogram.png", "codebook_usage.png", "clips/clip_0_original.wav"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["metrics"]["by_levels"]["1"]["kbps"] == 4.0
    with pytest.raises(MmtokError, match="below this codec's lowest bitrate"):
        evaluate(run, str(folder), num_samples=4, num_workers=0, progress=False, bitrate=1.0)
    with pytest.raises(MmtokError, match="this codec has 3 RVQ levels"):
        evaluate(run, str(folder), num_samples=4, num_workers=0, progress=False, levels=[4])

    export_bundle(run, root / "bundle", graphs=True)
    meta = json.loads((root / "bundle" / "tokenizer.json").read_text())
    assert meta["modality"] == "audio" and meta["sample_rate"] == 8000 and meta["frame_rate"] == 1000.0
    assert meta["bitrate_per_level"] == [4000.0, 8000.0, 12000.0]
    assert set(meta["flattening_orders"]) == {"interleave", "delay"}
    assert "eval.json" in {p.name for p in (root / "bundle").iterdir()}
    assert "frames per second" in (root / "bundle" / "README.md").read_text()

    tok = mmtok.load(root / "bundle")
    wav = next(folder.rglob("clip*.wav"))
    ids = tok.encode(str(wav))  # a file: decoded, resampled to 8 kHz, padded to a multiple of hop
    assert ids.dtype == torch.long and ids.shape == (1, math.ceil(0.3 * 8000 / 8), 3)
    assert tok.encode(str(wav), levels=2).shape[-1] == 2
    wave = tok.decode(ids)
    assert wave.shape == (1, 1, ids.shape[1] * 8) and float(wave.abs().max()) <= 1
    assert torch.equal(tok.decode(ids[..., :1]), tok.model.decode(ids[..., :1]).clamp(-1, 1))
    seq = tok.interleave(ids)
    assert seq.shape == (1, ids.shape[1] * 3) and int(seq[0, 1]) == int(ids[0, 0, 1]) + 16
    assert torch.equal(tok.deinterleave(seq), ids)
    streams = tok.delay(ids)
    assert streams.shape == (1, 3, ids.shape[1] + 2) and int(streams[0, 2, 0]) == 16
    assert torch.equal(tok.undelay(streams), ids)
    x44 = torch.from_numpy(tone(0.1, 44100)).T  # [1, T] at another rate
    assert tok.encode(x44, sample_rate=44100).shape == (1, 100, 3)
    graph = torch.export.load(str(root / "bundle" / "encoder.pt2")).module()
    x = torch.rand(2, *meta["input_size"]) * 0.4 - 0.2
    assert torch.equal(graph(x), tok.encode(x))


def test_tokenizer_inputs_are_checked_in_one_line(audio_run):
    from mmtok.export.bundle import export_bundle

    root, _, _ = audio_run
    bundle = root / "bundle-checks"
    export_bundle(root / "run", bundle)
    tok = mmtok.load(bundle)
    cases = [
        (lambda: tok.encode(torch.zeros(1, 2, 80)), "expects \\[B, 1, T\\]"),
        (lambda: tok.encode(torch.full((1, 80), 3.0)), "expects waveforms in \\[-1, 1\\]"),
        (lambda: tok.encode(np.zeros(80, dtype=np.int16)), "int16 samples"),
        (lambda: tok.encode(torch.zeros(80), levels=5), "has 3 RVQ levels"),
        (lambda: tok.levels_for_bitrate(1.0), "below this tokenizer's lowest bitrate"),
        (lambda: tok.decode(torch.zeros(1, 4, 5, dtype=torch.long)), "1 <= n <= 3"),
        (lambda: tok.decode(torch.full((1, 4, 3), 16)), "ids lie in \\[0, 16\\)"),
        (lambda: tok.encode(str(root / "missing.wav")), "cannot read"),
    ]
    for call, pattern in cases:
        with pytest.raises(MmtokError, match=pattern):
            call()
    assert tok.levels_for_bitrate(9.0) == 2
    # `mmtok encode` / `decode` are the image commands: with an audio bundle, one line naming what to run
    from typer.testing import CliRunner

    from mmtok.cli.main import app

    for args in (["encode", str(bundle), str(root / "x.wav"), "--out", str(root / "ids.npy")],
                 ["decode", str(bundle), str(root / "ids.npy"), "--out", str(root / "out")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "is a audio tokenizer" not in result.stderr, result.stderr
        assert "is an audio tokenizer" in result.stderr and "mmtok tokenize" in result.stderr


def test_cli_eval_levels_table_and_bad_levels_are_one_line(audio_run, tmp_path):
    from typer.testing import CliRunner

    from mmtok.cli.main import app

    root, folder, _ = audio_run
    runner = CliRunner()
    ok = runner.invoke(app, ["eval", str(root / "run"), "--data", str(folder), "--out", str(tmp_path / "e"),
                             "--levels", "1", "--num-samples", "8", "--batch-size", "4", "--num-workers", "0"],
                       env={"COLUMNS": "200"})
    assert ok.exit_code == 0, ok.stderr + ok.stdout
    assert "per number of RVQ levels" in ok.stdout
    by_levels = json.loads((tmp_path / "e" / "metrics.json").read_text())["metrics"]["by_levels"]
    assert sorted(by_levels, key=int)[0] == "1" and len(by_levels) == 2  # 1 and all levels
    for bad, text in ((["--levels", "1,x"], "not a comma-separated list"), (["--levels", "99"], "RVQ levels"),
                      (["--bitrate", "0.001"], "below this codec's lowest bitrate")):
        result = runner.invoke(app, ["eval", str(root / "run"), "--data", str(folder), "--out",
                                     str(tmp_path / "bad"), "--force", *bad])
        assert result.exit_code == 2 and text in result.stderr and "Traceback" not in result.stderr, result.stderr
    image_only = runner.invoke(app, ["eval", str(root / "run"), "--data", str(folder), "--resolution", "64"])
    assert image_only.exit_code == 2
