"""Captions and transcripts from manifests as datasets ship them (Common Voice TSVs, LJSpeech's metadata.csv, NeMo
JSON lines, Hugging Face audiofolder metadata) or NAME.txt beside a file, in one place (mmtok.data.captions) used by
`mmtok data pack`, the training streams and `mmtok tokenize`. Files are made in tmp_path."""
from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from _audio_helpers import tone
from test_lm_modalities import audio_bundle  # noqa: F401
from typer.testing import CliRunner

from mmtok.data.captions import FolderCaptions
from mmtok.lm.tokens import read_tokens, tokenize


def wav(path, seconds=0.1, sr=8000, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, sr, seed=seed), sr)
    return path


def test_common_voice_tsvs_name_clips_under_a_subfolder_and_odd_rows_are_counted(tmp_path):
    root = tmp_path / "cv"
    files = [wav(root / "clips" / f"cv_{i}.wav", seed=i) for i in range(3)]
    (root / "train.tsv").write_text("client_id\tpath\tsentence\tup_votes\n" "x\tcv_0.wav\tAhoj světe.\t2\n"
                                    "x\tcv_1.wav\tDobrý den.\t3\nx\tgone.wav\tMissing.\t1\n")
    (root / "dev.tsv").write_text("client_id\tpath\tsentence\nx\tcv_1.wav\tJiný text.\n")
    (root / "stats.csv").write_text("speaker,minutes\na,3\n")  # not a manifest: no file and text columns
    (root / "clips" / "cv_2.txt").write_text("sidecar text\n")
    captions = FolderCaptions(root, files)
    assert [captions.get(f) for f in files] == ["Ahoj světe.", "Jiný text.", "sidecar text"]  # dev.tsv comes first
    assert captions.manifests == ["dev.tsv", "train.tsv"] and captions.rows == 4 and captions.unmatched_count == 1
    line = captions.describe("transcripts")
    assert "transcripts: 2 file(s) named by dev.tsv, train.tsv (4 rows)" in line and "e.g. gone.wav" in line
    assert "1 file(s) named twice with different texts" in line and "stats.csv: no file and text columns" in line
    assert [p.name for p in captions.sidecars(files)] == ["cv_2.txt"]


def test_ljspeech_nemo_and_huggingface_manifests(tmp_path):
    lj = tmp_path / "lj"
    files = [wav(lj / "wavs" / f"LJ001-000{i}.wav", seed=i) for i in range(1, 3)]
    (lj / "metadata.csv").write_text("LJ001-0001|Printing, in 1869.|Printing, in eighteen sixty-nine.\n"
                                     "LJ001-0002|In being comparatively modern.|In being comparatively modern.\n")
    assert [FolderCaptions(lj, files).get(f) for f in files] == ["Printing, in 1869.", "In being comparatively modern."]

    nemo = tmp_path / "nemo"
    files = [wav(nemo / "a" / "x.wav"), wav(nemo / "b" / "x.wav", seed=1), wav(nemo / "b" / "y.wav", seed=2)]
    rows = [{"audio_filepath": str(files[0]), "duration": 0.1, "text": "absolute path"},
            {"audio_filepath": "x.wav", "text": "ambiguous: two files are x.wav"},
            {"audio_filepath": "./b/y.wav", "text": "relative path"}]
    (nemo / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    captions = FolderCaptions(nemo, files)
    assert [captions.get(f) for f in files] == ["absolute path", "", "relative path"]
    assert captions.unmatched == ["x.wav"]

    hf = tmp_path / "hf"
    files = [wav(hf / "data" / "0.wav")]
    (hf / "metadata.csv").write_text('file_name,transcription\ndata/0.wav,"Hello, world"\n')
    assert FolderCaptions(hf, files).get(files[0]) == "Hello, world"


def test_data_pack_training_streams_and_tokenize_read_the_manifest(audio_bundle, tmp_path, monkeypatch):  # noqa: F811
    from mmtok.cli.data import data_app
    from mmtok.data import make_loader
    from mmtok.modalities.audio.decode import AudioSpec

    root = tmp_path / "speech"
    files = [wav(root / "clips" / f"u{i}.wav", seconds=0.1, seed=i) for i in range(4)]
    (root / "train.tsv").write_text("path\tsentence\n" + "".join(f"u{i}.wav\tutterance {i}\n" for i in range(4)))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(data_app, ["pack", "speech", "shards/sp-%06d.tar"])
    assert result.exit_code == 0, result.stderr
    assert "transcripts: 4 file(s) named by train.tsv (4 rows)" in result.stdout
    report = json.loads((tmp_path / "shards" / "sp-pack.json").read_text())
    assert report["captions"] == 4 and report["ignored"] == 0  # the manifest is used, not an ignored file
    spec = AudioSpec(8000, 1, 320)
    shard_texts = {t for b in make_loader("shards/sp-000000.tar", "val", spec, batch_size=8, modality="audio")
                   for t in b["text"]}
    folder_texts = {t for b in make_loader(str(root), "val", spec, batch_size=8, modality="audio") for t in b["text"]}
    assert shard_texts == folder_texts == {f"utterance {i}" for i in range(4)}

    tokenize(audio_bundle, str(root), tmp_path / "tok", shard_size=8, batch_size=4, progress=False)
    ts = read_tokens(tmp_path / "tok")
    assert ts.keys[:2] == ["clips/u0.wav#0", "clips/u0.wav#1"] and ts.captions[:2] == ["utterance 0"] * 2
    assert np.all(ts.ids < 16) and len(files) == 4
