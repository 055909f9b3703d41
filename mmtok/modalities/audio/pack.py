"""Pack a folder of audio files into webdataset tar shards (`mmtok data pack FOLDER OUT_PATTERN` on audio).

Each sample is {"__key__": sanitised relative path, "<ext>": audio bytes, "txt": transcript}:
- WAV, FLAC, OGG (Vorbis / Opus), MP3 are stored byte for byte under "wav", "flac", "ogg", "opus", "mp3"; anything
  else libsndfile reads (AIFF, AU, ...) is re-encoded as FLAC (lossless);
- a transcript is a sidecar text file with the clip's name and ".txt" (take1.wav -> take1.txt), UTF-8;
- every file is decoded in full first; unreadable, corrupt, empty and silent files are skipped with the reason.
Order, validation split and shard names as for images (mmtok.data.pack).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable

from mmtok.data.pack import PackReport, check_options, check_source, pack_files
from mmtok.errors import DataError
from mmtok.modalities.audio.decode import decode_audio, find_audio

_KEEP = {".wav": "wav", ".flac": "flac", ".ogg": "ogg", ".oga": "ogg", ".opus": "opus", ".mp3": "mp3"}


def pack_audio_folder(src: str | os.PathLike, out_pattern: str, shard_size: int = 1000, val_fraction: float = 0.0,
                      seed: int = 0, *, progress: Callable[[int, int, str], None] | None = None) -> PackReport:
    """Write the audio files under `src` (recursive) into shards `out_pattern % i` (train) and
    `val_pattern(out_pattern) % i` (val), `shard_size` samples each; the report's `seconds` is the packed
    duration. Raises DataError for a missing folder, a folder without audio files or bad options."""
    src = check_source(src)
    check_options(out_pattern, shard_size, val_fraction)
    files = find_audio(src)
    if not files:
        raise DataError(f"no audio files in {src}", hint="put .wav/.flac/.ogg/.mp3 files in it (searched recursively)")
    report = PackReport(src=str(src), modality="audio", caption_label="transcript", train_recipe="audio_quickstart")

    def encode(path: Path, rel: Path) -> dict:
        data = path.read_bytes()
        wave, sr = decode_audio(data)  # AudioDecodeError (a DataError) names why a file is skipped
        report.seconds += wave.shape[1] / sr
        ext = _KEEP.get(path.suffix.lower())
        if ext is not None:
            return {ext: data}
        import soundfile as sf

        out = io.BytesIO()
        sf.write(out, wave.T, sr, format="FLAC")
        return {"flac": out.getvalue()}

    pack_files(src, files, out_pattern, encode, report, shard_size=shard_size, val_fraction=val_fraction, seed=seed,
               progress=progress)
    report.seconds = round(report.seconds, 3)
    return report
