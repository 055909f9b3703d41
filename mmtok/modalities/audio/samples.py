"""Pictures and clips of audio reconstructions: a log-mel spectrogram picture (originals above, reconstructions
below, one column per clip; drawn with PIL) and WAV files (16-bit PCM) of both."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mmtok.files import save_image

# a perceptually ordered dark-to-bright colour ramp (anchors of matplotlib's "magma"), interpolated to 256 levels
_ANCHORS = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]],
                    dtype=np.float64)
_RAMP = np.stack([np.interp(np.linspace(0, len(_ANCHORS) - 1, 256), np.arange(len(_ANCHORS)), _ANCHORS[:, c])
                  for c in range(3)], 1).astype(np.uint8)
DYNAMIC_RANGE_DB = 80.0


def log_mel(wave: torch.Tensor, sample_rate: int, n_mels: int = 80) -> np.ndarray:
    """dB mel spectrogram [n_mels, frames] of a mono waveform [T] (channels are averaged by the caller): window
    ~64 ms (a power of two), hop a quarter of it, 0 dB = full-scale peak."""
    from mmtok.losses.audio import magnitude, mel_filterbank

    window = 1 << max(6, round(np.log2(sample_rate * 0.064)))
    mag = magnitude(wave.float().reshape(1, 1, -1), window)[0]
    mel = mel_filterbank(sample_rate, window, n_mels) @ mag
    return (20 * torch.log10(mel.clamp_min(1e-5))).numpy()


def spectrogram_picture(originals: torch.Tensor, recons: torch.Tensor, sample_rate: int, path: str | os.PathLike,
                        *, height: int = 160) -> Path:
    """Write a PNG of log-mel spectrograms of clips [N, C, T] (channels averaged): originals in the top row,
    reconstructions in the bottom row (see spectrogram_rows). Returns the path."""
    return spectrogram_rows([("original", originals), ("reconstruction", recons)], sample_rate, path, height=height)


def spectrogram_rows(rows: list[tuple[str, torch.Tensor]], sample_rate: int, path: str | os.PathLike, *,
                     height: int = 160) -> Path:
    """Write a PNG with one titled row of log-mel spectrograms per (title, clips [N, C, T]) pair, one column per
    clip, low frequencies at the bottom, colours over an 80 dB range below the loudest value in the picture.
    Written atomically; returns the path."""
    from PIL import Image, ImageDraw

    from mmtok.evaluation.plots import _font

    mels = [[log_mel(c.detach().float().cpu().mean(0), sample_rate) for c in clips] for _, clips in rows]
    top = max(float(m.max()) for row in mels for m in row)
    pad, label = 6, 18
    widths = [m.shape[1] for m in mels[0]]
    scale = max(1, round(240 / max(widths)))  # at least ~240 px per clip
    w = sum(x * scale for x in widths) + pad * (len(widths) + 1)
    h = len(rows) * (height + label + pad) + pad
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    for r, (row, (title, _)) in enumerate(zip(mels, rows)):
        y = pad + r * (height + label + pad)
        draw.text((pad, y), title, fill=(30, 30, 30), font=_font(13))
        x = pad
        for m in row:
            level = np.clip((m - (top - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0, 1)
            pixels = _RAMP[(level[::-1] * 255).round().astype(np.int64)]  # high frequencies at the top
            tile = Image.fromarray(pixels).resize((m.shape[1] * scale, height), Image.NEAREST)
            img.paste(tile, (x, y + label))
            x += tile.width + pad
    return save_image(img, path)


def write_clips(originals: torch.Tensor, recons: torch.Tensor, sample_rate: int, folder: str | os.PathLike,
                ) -> list[Path]:
    """Write clips [N, C, T] in [-1, 1] as FOLDER/clip_K_original.wav and clip_K_reconstruction.wav (16-bit PCM);
    returns the paths."""
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (a, b) in enumerate(zip(originals.detach().float().cpu(), recons.detach().float().cpu())):
        for wave, kind in ((a, "original"), (b, "reconstruction")):
            p = folder / f"clip_{k}_{kind}.wav"
            sf.write(str(p), wave.clamp(-1, 1).T.numpy(), sample_rate, subtype="PCM_16")
            paths.append(p)
    return paths
