"""The LLM stage on audio and motion: `mmtok tokenize` with tiny random audio / motion bundles (pieces of the
bundle's input size, keys, transcripts / captions, bad files skipped and named), LM training streamed from several
token shards a group at a time (val/audio_loss, val/motion_loss, exact resume, pure batches), the held-out split
by shard, and `mmtok lm generate` refusing a model without an image bundle in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _audio_helpers import make_audio_folder, tone
from _data_helpers import write_tar
from test_lm_layout import make_bundle, make_llm
from test_lm_train import _recipe as lm_recipe
from test_motion_data import deepmimic_frames, write_deepmimic
from typer.testing import CliRunner

import mmtok
from mmtok.lm.tokens import TokenShards, read_tokens, tokenize

FEATURES = 215  # the deepmimic layout of the test_motion preset


def _bundle(root: Path, name: str, model: dict) -> Path:
    return make_bundle(root, name=name, model=model)


@pytest.fixture(scope="module")
def audio_bundle(tmp_path_factory):
    """test_codec: 8 kHz mono, 320-sample input (0.04 s) -> 40 frames x 3 levels of 16 codes."""
    return _bundle(tmp_path_factory.getbasetemp(), "audio", {"preset": "test_codec"})


@pytest.fixture(scope="module")
def motion_bundle(tmp_path_factory):
    """test_motion: 16-frame window of 215 deepmimic features -> 4 tokens of 16 codes (Mean 0 / Std 1)."""
    root = tmp_path_factory.getbasetemp()
    stats = root / "motion-stats"
    stats.mkdir(exist_ok=True)
    np.save(stats / "Mean.npy", np.zeros(FEATURES, np.float32))
    np.save(stats / "Std.npy", np.ones(FEATURES, np.float32))
    return _bundle(root, "motion", {"preset": "test_motion", "stats": str(stats)})


def _motion_folder(root: Path, n: int = 3) -> Path:
    """n DeepMimic clips (45, 65, ... frames at 30 fps -> 30, 43, ... at 20 fps), a too-short clip, and a .npy
    feature clip with a HumanML3D-style caption file beside it."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_deepmimic(root / f"clip{i}.txt", deepmimic_frames(45 + 20 * i, seed=i, walk=0.4 + 0.2 * i))
    write_deepmimic(root / "short.txt", deepmimic_frames(5))
    np.save(root / "feat.npy", np.random.default_rng(0).normal(size=(40, FEATURES)).astype(np.float32))
    (root / "feat.txt").write_text("a person walks forward#a/DET person/NOUN#0.0#0.0\nsomeone walks\n")
    return root


# --------------------------------------------------------------------------------------------- tokenize


def test_audio_folder_to_token_shards(audio_bundle, tmp_path):
    from mmtok.modalities.audio.decode import AudioSpec, prepare, read_audio

    data = make_audio_folder(tmp_path / "clips", n=4, seconds=0.1, sr=8000)  # + broken.wav, silent.flac
    report = tokenize(audio_bundle, str(data), tmp_path / "tok", shard_size=3, batch_size=2, progress=False)
    ts = read_tokens(tmp_path / "tok")
    # 0.1 s at 8 kHz = 800 samples: two whole 320-sample pieces per clip, the trailing 160 dropped
    assert ts.ids.dtype == np.uint32 and ts.ids.shape == (8, 40, 3) and report["modality"] == "audio"
    assert ts.keys[:2] == ["a/clip1.flac#0", "a/clip1.flac#1"] and ts.keys[4:6] == ["b/clip0.wav#0", "b/clip0.wav#1"]
    assert ts.captions[4:6] == ["hello world"] * 2 and ts.captions[0] == ""
    assert any(b.startswith("broken.wav#0: cannot decode audio") for b in ts.bad)
    assert any(b.startswith("silent.flac#0: silent") for b in ts.bad) and ts.skipped == len(ts.bad) == report["skipped"]
    tok = mmtok.load(audio_bundle)
    wave, sr = read_audio(data / "b" / "clip0.wav")
    wave = prepare(wave, sr, AudioSpec(8000, 1, 320))
    np.testing.assert_array_equal(ts.ids[4:6], tok.encode([wave[:, :320], wave[:, 320:640]]).numpy())


def test_audio_shards_with_transcripts_and_a_broken_sample(audio_bundle, tmp_path):
    import io

    import soundfile as sf

    def flac(seconds, seed):
        buf = io.BytesIO()
        sf.write(buf, tone(seconds, 8000, seed=seed), 8000, format="FLAC")
        return buf.getvalue()

    write_tar(tmp_path / "a-0.tar", [("k0", {"flac": flac(0.1, 0), "txt": b"hello there"}),
                                     ("k1", {"wav": b"RIFFbroken"}), ("k2", {"txt": b"no audio"})])
    write_tar(tmp_path / "a-1.tar", [("k3", {"flac": flac(0.05, 3)})])
    report = tokenize(audio_bundle, str(tmp_path / "a-{0..1}.tar"), tmp_path / "tok", progress=False)
    ts = read_tokens(tmp_path / "tok")
    assert [k.split(" in ")[0] for k in ts.keys] == ["k0", "k0", "k3"] and ts.keys[1].endswith(".tar#1")
    assert ts.captions == ["hello there", "hello there", ""] and ts.ids.shape == (3, 40, 3)
    assert report["skipped"] == 2 and any("no audio entry" in b for b in report["bad"])


def test_motion_folder_to_token_shards(motion_bundle, tmp_path):
    data = _motion_folder(tmp_path / "clips")
    report = tokenize(motion_bundle, str(data), tmp_path / "tok", shard_size=4, progress=False)
    ts = read_tokens(tmp_path / "tok")
    # 20 fps: 30, 43, 57 frames -> 1, 2, 3 windows of 16; feat.npy (40 frames) -> 2; feat.txt is its caption
    assert ts.keys == ["clip0.txt#0", "clip1.txt#0", "clip1.txt#1", "clip2.txt#0", "clip2.txt#1", "clip2.txt#2",
                       "feat.npy#0", "feat.npy#1"]
    assert ts.ids.shape == (8, 4) and ts.ids.dtype == np.uint32 and report["modality"] == "motion"
    assert ts.captions[-2:] == ["a person walks forward"] * 2 and set(ts.captions[:-2]) == {""}
    assert ts.skipped == 1 and ts.bad[0].startswith("short.txt: ") and "shorter than the 16-frame window" in ts.bad[0]
    feats = np.load(data / "feat.npy")
    tok = mmtok.load(motion_bundle)
    np.testing.assert_array_equal(ts.ids[-2:], tok.encode([feats[:16], feats[16:32]]).numpy())
    with pytest.raises(mmtok.errors.DataError, match="cannot read"):
        tokenize(motion_bundle, str(tmp_path / "x-{0..1}.tar"), tmp_path / "tok2", progress=False)


# --------------------------------------------------------------------------------------------- LM training


def _extended(root: Path, bundle: Path, name: str) -> Path:
    from mmtok.lm.extend import extend

    ext = root / f"ext-{name}"
    if not (ext / "mmtok_layout.json").is_file():
        extend(make_llm(root), [bundle], ext)
    return ext


@pytest.fixture(scope="module")
def audio_lm(audio_bundle, tmp_path_factory):
    """(extended tiny Llama, audio token shards: 6 shards of 4 pieces)."""
    root = tmp_path_factory.getbasetemp()
    tok = root / "audio-lm-tokens"
    if not (tok / "rank-0.json").is_file():
        data = make_audio_folder(root / "audio-lm-clips", n=6, seconds=0.16, bad=False)
        for i, path in enumerate(sorted(data.rglob("clip*.*"))):
            if path.suffix != ".txt":
                path.with_suffix(".txt").write_text(["a red cat", "the blue dog", "a green bird"][i % 3])
        tokenize(audio_bundle, str(data), tok, shard_size=4, progress=False)
    return _extended(root, audio_bundle, "audio"), tok


@pytest.fixture(scope="module")
def motion_lm(motion_bundle, tmp_path_factory):
    """(extended tiny Llama, motion token shards: 8 windows in 3 shards)."""
    root = tmp_path_factory.getbasetemp()
    tok = root / "motion-lm-tokens"
    if not (tok / "rank-0.json").is_file():
        tokenize(motion_bundle, str(_motion_folder(root / "motion-lm-clips")), tok, shard_size=3, progress=False)
    return _extended(root, motion_bundle, "motion"), tok


def _recipe(ext, tokens, **over):
    """test_lm_train's recipe with longer blocks, smaller batches, two shards a group and fewer steps."""
    return lm_recipe(ext, tokens, **{"data__block_size": 256, "data__batch_size": 2, "data__group_shards": 2,
                                     "trainer__max_steps": 6, "trainer__log_every": 2, **over})


@pytest.mark.parametrize("which", ["audio", "motion"])
def test_training_streams_shard_groups_and_reports_the_modality_loss(which, audio_lm, motion_lm, tmp_path):
    from mmtok.lm.train import train

    ext, tokens = audio_lm if which == "audio" else motion_lm
    assert len(TokenShards(tokens)) >= 3  # more shards than a group holds (group_shards 2)
    summary = train(_recipe(ext, tokens), tmp_path / "run", save_model=False)
    assert summary["status"] == "finished" and summary["step"] == 6 and summary["modality"] == which
    for name in (f"val/{which}_loss", "val/caption_loss"):
        assert np.isfinite(summary["final"][name]) and np.isfinite(summary["before"][name])
    assert "val/image_loss" not in summary["final"]
    assert summary["train_pairs"] + summary["val_pairs"] == len(read_tokens(tokens))


def test_resume_re_creates_the_same_batches_across_shard_groups(audio_lm, tmp_path):
    from mmtok.lm.llm import load_extended
    from mmtok.lm.train import build_data, check_inputs, train

    ext, tokens = audio_lm
    recipe = _recipe(ext, tokens)
    layout, _ = check_inputs(recipe)
    _, tokenizer, _ = load_extended(ext)
    stream, _, _ = build_data(recipe, tokenizer, layout)
    other, _, _ = build_data(recipe, tokenizer, layout)
    assert stream.batches_per_group * 2 <= 6  # six steps cross at least one group boundary
    walked = [stream.batch(b) for b in range(8)]
    for b in (7, 0, 5, 3):  # any order, a fresh object: the same batch
        for k, v in other.batch(b).items():
            assert torch.equal(v, walked[b][k]), (b, k)
    assert not torch.equal(walked[0]["input_ids"], walked[stream.batches_per_group]["input_ids"])
    other.rank = 1  # set after the first batches (as LMTask.setup does): another rank draws its own batches
    assert not torch.equal(other.batch(0)["input_ids"], walked[0]["input_ids"])
    other.rank = 0
    assert torch.equal(other.batch(0)["input_ids"], walked[0]["input_ids"])

    straight = train(recipe, tmp_path / "a", save_model=False)
    train(_recipe(ext, tokens, trainer__max_steps=3), tmp_path / "b", save_model=False)
    resumed = train(recipe, tmp_path / "b", resume=True, save_model=False)
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert straight["step"] == resumed["step"] == 6 and straight["final"] == resumed["final"]


def test_split_shards_holds_out_what_split_holdout_does_and_keeps_clips_together():
    from mmtok.lm.train import split_holdout, split_shards

    keys = [f"clip{i}.wav#{k}" for i in range(30) for k in range(3)] + [f"img{i}.png" for i in range(30)]
    train_idx, held_idx = split_holdout(keys, 0.2)
    shards = [keys[i:i + 7] for i in range(0, len(keys), 7)]
    masks, held = split_shards(iter(shards), 0.2)
    assert [shards[n][i] for n, i in held] == [keys[i] for i in held_idx]
    assert [k for n, s in enumerate(shards) for i, k in enumerate(s) if masks[n][i]] == [keys[i] for i in train_idx]
    held_clips = {keys[i].split("#")[0] for i in held_idx if "#" in keys[i]}
    assert held_clips and all(keys[i].split("#")[0] not in held_clips for i in train_idx)
    assert split_holdout(["a", "b"], 0.01)[1] and split_holdout(["a", "b"], 0.99)[0]  # both sides never empty


def test_data_modality_must_match_the_shards_bundle(audio_lm, tmp_path):
    from mmtok.errors import CheckpointError, DataError
    from mmtok.lm.train import train

    ext, tokens = audio_lm
    with pytest.raises(CheckpointError, match="has no modality 'image'"):
        train(_recipe(ext, tokens, data__modality="image"), tmp_path / "r")
    assert not (tmp_path / "r").exists()
    other = tmp_path / "other"
    import shutil

    shutil.copytree(tokens, other)
    header = json.loads((other / "tokens.json").read_text())
    (other / "tokens.json").write_text(json.dumps({**header, "bundle_checksum": "0" * 64}))
    with pytest.raises(DataError, match="made with bundle"):
        train(_recipe(ext, other), tmp_path / "r2")


def test_generate_refuses_a_model_without_an_image_bundle_in_one_line(audio_lm, tmp_path):
    from mmtok.cli.main import app

    ext, _ = audio_lm
    result = CliRunner().invoke(app, ["lm", "generate", str(ext), "--prompt", "a cat", "--out", str(tmp_path / "g")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "draws images only" in result.stderr and "audio" in result.stderr


# --------------------------------------------------------------------------------------------- whole clips


def test_whole_utterances_line_up_with_their_transcripts_and_train(audio_bundle, tmp_path):
    import soundfile as sf

    from mmtok.errors import RecipeError
    from mmtok.lm.train import check_inputs, train
    from mmtok.modalities.audio.decode import AudioSpec, prepare, read_audio

    data = tmp_path / "speech"
    data.mkdir()
    seconds = [0.06, 0.1, 0.13, 0.08, 0.11, 0.3]  # the last is longer than --whole 0.2
    for i, s in enumerate(seconds):
        sf.write(str(data / f"u{i}.wav"), tone(s, 8000, seed=i), 8000)
    (data / "metadata.csv").write_text("file_name,text\n" + "".join(f"u{i}.wav,utterance {i}\n" for i in range(6)))
    tokens = tmp_path / "tok"
    tokenize(audio_bundle, str(data), tokens, shard_size=2, progress=False, whole=0.2)
    ts = read_tokens(tokens)
    assert ts.keys == [f"u{i}.wav" for i in range(5)] and ts.captions == [f"utterance {i}" for i in range(5)]
    assert [len(row) for row in ts.ids] == [-(-round(s * 8000) // 8) for s in seconds[:5]]  # frames: hop 8
    assert ts.bad == ["u5.wav: 0.30 s, longer than the 0.2 s that --whole keeps whole"] and ts.skipped == 1
    tok = mmtok.load(audio_bundle)
    wave, sr = read_audio(data / "u2.wav")
    np.testing.assert_array_equal(ts.ids[2], tok.encode([prepare(wave, sr, AudioSpec(8000, 1, 320))])[0].numpy())
    with pytest.raises(mmtok.errors.DataError, match="another --whole"):
        tokenize(audio_bundle, str(data), tokens, progress=False, shard_size=2)

    ext = _extended(tmp_path, audio_bundle, "audio")
    longest = 2 + 8 + 2 + 130 * 3  # caption budget + begin / end + the longest clip's 130 frames x 3 levels
    with pytest.raises(RecipeError, match=rf"(?s)longest sequence \({longest} tokens.*shorter --whole"):
        check_inputs(_recipe(ext, tokens, data__block_size=256))
    summary = train(_recipe(ext, tokens, data__block_size=longest), tmp_path / "run", save_model=False)
    assert summary["status"] == "finished" and np.isfinite(summary["final"]["val/audio_loss"])
    assert summary["train_pairs"] + summary["val_pairs"] == 5


def test_whole_motion_clips_and_images_refusing_whole(motion_bundle, tmp_path):
    ts_dir = tmp_path / "tok"
    tokenize(motion_bundle, str(_motion_folder(tmp_path / "clips")), ts_dir, shard_size=3, progress=False, whole=3.0)
    ts = read_tokens(ts_dir)
    # 20 fps: 30, 43, 57 frames -> 28, 40, 56 (multiples of 4) -> 7, 10, 14 tokens; feat.npy 40 frames -> 10
    assert ts.keys == ["clip0.txt", "clip1.txt", "clip2.txt", "feat.npy"]
    assert [len(r) for r in ts.ids] == [7, 10, 14, 10]
    assert ts.captions[3] == "a person walks forward" and ts.bad[0].startswith("short.txt: ")
    image = _bundle(tmp_path, "image", {"preset": "test_f4"})
    with pytest.raises(mmtok.errors.DataError, match="samples are whole already"):
        tokenize(image, str(tmp_path / "clips"), tmp_path / "tok2", progress=False, whole=3.0)
