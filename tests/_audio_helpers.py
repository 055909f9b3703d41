"""Tiny audio test material made on the fly: tones with noise in WAV / FLAC / OGG at various rates and channel counts,
plus broken, silent and short files."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def tone(seconds: float, sr: int, channels: int = 1, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """[N, channels] float32: a harmonic tone with a little noise, peak ~0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 2.5 * freq * t)
    wave = wave + 0.02 * rng.standard_normal(t.size)
    return np.stack([wave * (1 - 0.2 * c) for c in range(channels)], 1).astype(np.float32)


def make_audio_folder(root: Path, *, n: int = 6, seconds: float = 0.3, sr: int = 16000, bad: bool = True,
                      transcripts: bool = True) -> Path:
    """n good clips (wav 16 kHz mono, flac 22.05 kHz stereo, ogg 8 kHz), optionally a corrupt .wav and a silent .flac."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    kinds = [("wav", sr, 1), ("flac", 22050, 2), ("ogg", 8000, 1)]
    for i in range(n):
        ext, rate, ch = kinds[i % len(kinds)]
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        sf.write(str(sub / f"clip{i}.{ext}"), tone(seconds, rate, ch, freq=200 + 60 * i, seed=i), rate)
        if transcripts and i == 0:
            (sub / f"clip{i}.txt").write_text("hello world\n")
    if bad:
        (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
        sf.write(str(root / "silent.flac"), np.zeros((sr // 4, 1), np.float32), sr)
    return root
