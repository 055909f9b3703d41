"""Audio data: decoding, mix-down, resampling, loudness, segments, skip counts, the one-line errors, shards made by
`mmtok data pack`, holdout, and the recorded-speech demo."""
from __future__ import annotations

import json
from itertools import islice

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from mmtok.data import make_loader
from mmtok.modalities.audio.decode import AudioDecodeError, AudioSpec, decode_audio, prepare
from mmtok.data.stream import DataStreamError
from mmtok.errors import DataError
from tests._audio_helpers import make_audio_folder, tone

SPEC = AudioSpec(sample_rate=16000, channels=1, segment=1600)  # 0.1 s segments


def _bytes(wave: np.ndarray, sr: int, fmt: str = "WAV") -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt)
    return buf.getvalue()


def test_decode_mixes_down_resamples_and_normalises_loudness():
    stereo = tone(0.5, 22050, channels=2)
    wave, sr = decode_audio(_bytes(stereo, 22050, "FLAC"))
    assert wave.shape == (2, 11025) and sr == 22050
    mono = prepare(wave, sr, SPEC)
    assert mono.shape == (1, 8000) and mono.dtype == np.float32  # 0.5 s at 16 kHz
    np.testing.assert_allclose(mono[0, 4000:4100], prepare(wave.mean(0, keepdims=True), sr, SPEC)[0, 4000:4100],
                               atol=1e-6)
    both = prepare(wave[:1], sr, AudioSpec(16000, 2, 1600))
    assert both.shape == (2, 8000) and np.allclose(both[0], both[1])  # mono repeated to the asked channels
    import pyloudnorm

    loud = prepare(wave, sr, AudioSpec(16000, 1, 1600, loudness=-20.0))
    assert pyloudnorm.Meter(16000).integrated_loudness(loud[0].astype(np.float64)) == pytest.approx(-20.0, abs=0.5)
    for data, reason in ((b"not audio at all", "cannot decode"), (_bytes(np.zeros((800, 1), np.float32), 8000),
                                                                    "silent")):
        with pytest.raises(AudioDecodeError, match=reason):
            decode_audio(data)


def test_folder_streams_count_and_name_bad_files(tmp_path):
    folder = make_audio_folder(tmp_path / "clips", n=6, seconds=0.3)
    train = make_loader(str(folder), "train", SPEC, batch_size=4, modality="audio", shuffle_buffer=0)
    batches = list(islice(iter(train), 4))
    assert batches[0]["audio"].shape == (4, 1, 1600) and batches[0]["audio"].dtype == torch.float32
    assert float(batches[0]["audio"].abs().max()) <= 1.0
    bad = sorted(e.split(":")[0].rsplit("/", 1)[-1] for b in batches for e in b["bad"])
    assert bad == ["broken.wav", "silent.flac"]  # named once each, with reasons
    assert sum(int(b["skipped"].sum()) for b in batches) == 2
    assert "hello world" in [t for b in batches for t in b["text"]]  # sidecar transcript

    val = make_loader(str(folder), "val", SPEC, batch_size=5, modality="audio")
    first = torch.cat([b["audio"] for b in val])
    assert first.shape[0] == 6 * 3  # three whole 0.1 s segments per 0.3 s clip
    assert torch.equal(first, torch.cat([b["audio"] for b in val]))  # deterministic
    capped = make_loader(str(folder), "val", SPEC, batch_size=4, modality="audio", max_samples=7)
    # the first 7 segments of the pass in file order: broken.wav (1) and silent.flac (2, by its header) drop
    assert sum(b["audio"].shape[0] for b in capped) == 4
    assert sum(int(b["skipped"].sum()) for b in val) == 2  # every pass counts its drops


def test_one_line_errors_for_no_audio_and_a_segment_longer_than_every_file(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no audio")
    with pytest.raises(DataError, match="no audio files in folder"):
        make_loader(str(tmp_path / "empty"), "train", SPEC, batch_size=2, modality="audio")
    folder = make_audio_folder(tmp_path / "short", n=3, seconds=0.2, bad=False)
    long = AudioSpec(16000, 1, 16000)  # 1 s segments, files of 0.2 s
    for split in ("val", "train"):
        loader = make_loader(str(folder), split, long, batch_size=2, modality="audio", shuffle_buffer=0)
        with pytest.raises(DataStreamError, match=r"the 1 s segment is longer than every audio file .*longest 0.20 s"):
            list(islice(iter(loader), 10))


def test_pack_audio_folder_into_shards_keeps_transcripts(tmp_path, monkeypatch):
    from mmtok.cli.data import data_app

    monkeypatch.chdir(tmp_path)
    make_audio_folder(tmp_path / "clips", n=6, seconds=0.3)
    result = CliRunner().invoke(data_app, ["pack", "clips", "shards/sp-%06d.tar", "--shard-size", "3",
                                           "--val-fraction", "0.3"])
    assert result.exit_code == 0, result.stderr
    assert "with transcript" in result.stdout and "mmtok train audio_quickstart --data" in result.stdout
    report = json.loads((tmp_path / "shards" / "sp-pack.json").read_text())
    assert report["modality"] == "audio" and report["train_written"] + report["val_written"] == 6
    assert sorted(s["file"] for s in report["skipped"]) == ["broken.wav", "silent.flac"]
    assert report["captions"] == 1 and report["seconds"] == pytest.approx(1.8, abs=0.01)
    train = make_loader(report["train_pattern"], "train", SPEC, batch_size=3, modality="audio", shuffle_buffer=0)
    batch = next(iter(train))
    assert batch["audio"].shape == (3, 1, 1600)
    val = list(make_loader(report["val_pattern"], "val", SPEC, batch_size=4, modality="audio"))
    assert sum(b["audio"].shape[0] for b in val) == 3 * report["val_written"]
    texts = [t for b in make_loader("shards/*.tar", "val", SPEC, batch_size=8, modality="audio") for t in b["text"]]
    assert "hello world" in texts

    mixed = tmp_path / "mixed"
    make_audio_folder(mixed, n=2, bad=False)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(mixed / "x.png")
    both = CliRunner().invoke(data_app, ["pack", "mixed", "o/x-%06d.tar"])
    assert both.exit_code == 2 and "--modality image" in both.stderr and "--modality audio" in both.stderr


def test_holdout_splits_a_folder_by_name(tmp_path):
    folder = make_audio_folder(tmp_path / "clips", n=8, seconds=0.1, bad=False, transcripts=False)
    from mmtok.data.sources import build_dataset

    val = build_dataset(str(folder), "val", SPEC, modality="audio", holdout=0.3)
    train = build_dataset(str(folder), "train", SPEC, modality="audio", holdout=0.3)
    assert val.files and train.files and not set(val.files) & set(train.files)
    assert sorted(val.files + train.files) == sorted(str(p) for p in folder.rglob("*.*") if p.suffix != ".txt")


def test_demo_is_recorded_speech_with_languages_apart():
    from mmtok.modalities.audio.demo import DEMO_PACKAGE, demo_files, language

    try:
        train, val, reserved = demo_files("train"), demo_files("val"), demo_files("reserved")
    except DataError as e:  # the Debian package is not installed: the error says how to get it
        assert DEMO_PACKAGE in e.message and f"apt-get install {DEMO_PACKAGE}" in e.hint
        return
    langs = [{language(f) for f in files} for files in (train, val, reserved)]
    assert langs[1] == {"en", "nl"} and langs[2] == {"fr"} and not langs[0] & (langs[1] | langs[2])
    batch = next(iter(make_loader("demo", "val", SPEC, batch_size=2, modality="audio", max_samples=2)))
    assert batch["audio"].shape == (2, 1, 1600) and float(batch["audio"].abs().max()) > 0.01


def test_spectrogram_picture_shows_audible_segments_with_axes_names_and_a_db_bar(tmp_path):
    from PIL import Image

    from mmtok.modalities.audio.samples import audible, spectrogram_picture

    x = torch.from_numpy(np.stack([tone(0.5, 16000, seed=i).T for i in range(4)]))  # [4, 1, 8000]
    x[0] *= 1e-4  # -80 dB: a near-silent segment is shown only when nothing louder is left
    assert audible(x, 2) == [1, 2] and audible(x, 4) == [1, 2, 3, 0]
    plain = Image.open(spectrogram_picture(x[:2], x[:2], 16000, tmp_path / "plain.png"))
    named = Image.open(spectrogram_picture(x[:2], x[:2], 16000, tmp_path / "named.png", names=["a.wav#0", "b.wav#3"]))
    assert named.size[1] == plain.size[1] + 16  # a band of clip names above the columns
    pixels = np.asarray(plain)
    assert (pixels[:, :40] < 100).any()  # frequency labels left of the tiles
    bar = pixels[30:180, -58:-44]  # the colour bar: bright at 0 dB (top), dark at -80 dB (bottom)
    assert bar[:10].mean() > bar[-10:].mean() + 100
