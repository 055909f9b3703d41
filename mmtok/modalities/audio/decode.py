"""Audio in, tensors out: bytes or files decoded with soundfile, channels mixed down (or kept), resampled with
soxr, optionally loudness-normalised (ITU-R BS.1770 with pyloudnorm), cut into fixed-length segments.

The tensor contract of the audio modality: float32 [C, T], channels first, samples in [-1, 1] (full scale),
at the model's sample rate. Decoding keeps what libsndfile reads (WAV, FLAC, OGG/Vorbis, Opus, MP3 with
libsndfile >= 1.1, AIFF, AU, ...).
"""
from __future__ import annotations

import io
import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmtok.errors import DataError

# file suffixes read as audio (folders, packing) and sample keys read as audio (shards), in priority order
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")
AUDIO_KEYS = ("flac", "wav", "ogg", "oga", "opus", "mp3", "aiff", "aif", "au")
SILENCE_DB = -60.0  # a file whose peak is below this (dBFS) is silent: skipped and counted


class AudioDecodeError(DataError):
    """Bytes that are not decodable audio (truncated, corrupt, empty, silent or not audio at all)."""


@dataclass(frozen=True)
class AudioSpec:
    """What one audio sample is: `channels` x `segment` samples at `sample_rate` Hz; `loudness` (LUFS) or None."""

    sample_rate: int
    channels: int
    segment: int
    loudness: float | None = None

    @property
    def seconds(self) -> float:
        return self.segment / self.sample_rate


def audio_spec(spec) -> AudioSpec:
    """An AudioSpec from an AudioSpec or a model config with sample_rate, channels, segment_samples and
    loudness_lufs (the codec family's model section)."""
    if isinstance(spec, AudioSpec):
        return spec
    return AudioSpec(int(spec.sample_rate), int(spec.channels), int(spec.segment_samples),
                     getattr(spec, "loudness_lufs", None))


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """(float32 [C, N] in [-1, 1], sample rate) of encoded audio bytes; AudioDecodeError when they do not decode,
    hold no samples, hold non-finite values or are silent (peak below SILENCE_DB dBFS)."""
    import soundfile as sf

    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises LibsndfileError / RuntimeError / TypeError for bad bytes
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        text = re.sub(r"^Error opening <[^>]*>: ", "", text)  # libsndfile names the in-memory buffer
        raise AudioDecodeError(f"cannot decode audio: {text[:200]}",
                               hint="the file is truncated, corrupt or not audio") from None
    wave = np.ascontiguousarray(wave.T)
    if wave.shape[1] == 0:
        raise AudioDecodeError("no audio samples in the file")
    if not np.isfinite(wave).all():
        raise AudioDecodeError("the audio holds NaN or infinite samples")
    peak = float(np.abs(wave).max())
    if peak <= 10 ** (SILENCE_DB / 20):
        raise AudioDecodeError(f"silent (peak {20 * math.log10(peak) if peak > 0 else -math.inf:.0f} dBFS)")
    return wave, int(sr)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The audio file at `path` decoded (see decode_audio); AudioDecodeError when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AudioDecodeError(f"cannot read: {e.strerror or e}") from None
    return decode_audio(data)


def to_channels(wave: np.ndarray, channels: int) -> np.ndarray:
    """[C, N] -> [channels, N]: mono is the mean of all channels; more channels than the file has repeat its
    mix (mono to stereo); fewer (but more than one) keep the first ones."""
    c = wave.shape[0]
    if c == channels:
        return wave
    if channels == 1:
        return wave.mean(0, keepdims=True)
    if c < channels:
        return np.repeat(wave.mean(0, keepdims=True), channels, axis=0)
    return wave[:channels]


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """[C, N] at `sr_in` -> [C, round(N * sr_out / sr_in)] at `sr_out` with soxr (high quality)."""
    if sr_in == sr_out:
        return wave
    import soxr

    out = soxr.resample(wave.T, sr_in, sr_out, quality="HQ")
    return np.ascontiguousarray(out.reshape(out.shape[0], -1).T, dtype=np.float32)


def normalise_loudness(wave: np.ndarray, sr: int, target_lufs: float) -> np.ndarray:
    """`wave` [C, N] scaled to `target_lufs` integrated loudness (ITU-R BS.1770-4, pyloudnorm), then scaled down
    if needed so the peak stays <= 1. Audio shorter than one 400 ms gating block, or whose loudness cannot be
    measured (all blocks gated), is returned unchanged."""
    import pyloudnorm

    if wave.shape[1] < int(0.4 * sr) + 1:
        return wave
    loudness = pyloudnorm.Meter(sr).integrated_loudness(wave.T.astype(np.float64))
    if not math.isfinite(loudness):
        return wave
    out = wave * np.float32(10 ** ((target_lufs - loudness) / 20))
    peak = float(np.abs(out).max())
    return out / np.float32(peak) if peak > 1 else out


def prepare(wave: np.ndarray, sr: int, spec: AudioSpec) -> np.ndarray:
    """A decoded file [C, N] at `sr` as the model takes it: channels mixed, resampled to spec.sample_rate,
    loudness-normalised when spec.loudness is set, clipped to [-1, 1]; float32 [spec.channels, N']."""
    wave = resample(to_channels(wave, spec.channels), sr, spec.sample_rate)
    if spec.loudness is not None:
        wave = normalise_loudness(wave, spec.sample_rate, spec.loudness)
    return np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)


def random_segment(wave: np.ndarray, length: int, rng: random.Random) -> np.ndarray:
    """A segment [C, length] at a uniformly random offset; a shorter wave is zero-padded at the end."""
    n = wave.shape[1]
    if n <= length:
        return _pad(wave, length)
    start = rng.randint(0, n - length)
    return wave[:, start : start + length]


def segment_count(num_samples: int, length: int) -> int:
    """How many fixed segments a wave of `num_samples` gives: its whole segments, or one (padded) if shorter."""
    return max(1, num_samples // length)


def fixed_segment(wave: np.ndarray, length: int, index: int) -> np.ndarray:
    """Segment `index` [C, length] of consecutive, non-overlapping segments from the start (zero-padded when the
    wave is shorter than one segment)."""
    return _pad(wave[:, index * length : (index + 1) * length], length)


def _pad(wave: np.ndarray, length: int) -> np.ndarray:
    n = wave.shape[1]
    return wave if n >= length else np.pad(wave, ((0, 0), (0, length - n)))


def find_audio(root: str | os.PathLike) -> list[Path]:
    """Audio files under `root`, recursively, sorted; hidden files and folders (".name") are left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(AUDIO_SUFFIXES):
                found.append(Path(dirpath) / name)
    return found


def audio_frames(path: str | os.PathLike) -> tuple[int, int] | None:
    """(frames, sample rate) from the file's header without decoding it, or None when the header is unreadable."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - any unreadable header means "unknown"; decoding will name the problem
        return None
    return int(info.frames), int(info.samplerate)
