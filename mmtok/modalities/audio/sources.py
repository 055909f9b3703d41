"""The audio modality's data sources, declared by kind in mmtok.modalities.audio's Modality.sources ("demo",
"folder", "shards"): builder(source, split, spec, *, seed, max_samples, shuffle_buffer, holdout) -> an AudioStream
(mmtok.modalities.audio.stream) of {"audio": float32 [C, S] in [-1, 1], "text": str, "skipped": int, "bad": list[str]},
`spec` being the codec's model section (sample rate, channels, segment length, loudness) or an AudioSpec."""
from __future__ import annotations

from pathlib import Path

from mmtok.errors import DataError
from mmtok.modalities.audio.decode import audio_spec, find_audio


def audio_demo(source, split, spec, *, holdout, **kwargs):
    if holdout:
        raise DataError("holdout does not apply to 'demo': its val split is already separate speakers and languages",
                        hint="use split 'val' of 'demo' with holdout=0")
    from mmtok.modalities.audio.demo import demo_files, demo_root
    from mmtok.modalities.audio.stream import AudioFileStream

    return AudioFileStream(str(demo_root()), demo_files(split), split, audio_spec(spec), source="demo", **kwargs)


def audio_folder(source, split, spec, **kwargs):
    from mmtok.modalities.audio.stream import AudioFileStream

    files = find_audio(source)
    if not files:
        tars = list(Path(source).glob("*.tar"))
        hint = (f"it holds .tar shards: pass them as a pattern, e.g. '{Path(source) / '*.tar'}'" if tars
                else "put .wav/.flac/.ogg/.mp3 files in it (searched recursively)")
        raise DataError(f"no audio files in folder {source}", hint=hint)
    return AudioFileStream(source, files, split, audio_spec(spec), **kwargs)


def audio_shards(source, split, spec, **kwargs):
    from mmtok.data.sources import expand_shards
    from mmtok.modalities.audio.stream import AudioShardStream

    return AudioShardStream(source, expand_shards(source), split, audio_spec(spec), **kwargs)
