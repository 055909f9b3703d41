"""Pictures and clips of audio reconstructions: a log-mel spectrogram picture (originals above, reconstructions
below, one column per clip, with frequency and time axes, clip names and a dB colour bar; drawn with PIL), the choice
of audible segments to show, and WAV files (16-bit PCM) of both."""
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


SILENCE_DBFS = -50.0  # segments quieter than this (RMS, dB re full scale) are not chosen for pictures
FREQ_TICKS_HZ = (100, 500, 1000, 2000, 4000, 8000, 16000)
DB_TICKS = (0, 20, 40, 60, 80)


def loud(clips: torch.Tensor) -> list[bool]:
    """Per clip [N, C, T]: is its RMS at least SILENCE_DBFS (worth a picture)?"""
    rms = clips.detach().float().pow(2).mean(dim=(1, 2)).sqrt()
    return (20 * torch.log10(rms.clamp_min(1e-10)) >= SILENCE_DBFS).tolist()


def audible(clips: torch.Tensor, n: int) -> list[int]:
    """Indices of `n` clips [N, C, T] to show: the loud ones first (see `loud`), then the quiet ones, in order."""
    flags = loud(clips)
    return ([i for i, ok in enumerate(flags) if ok] + [i for i, ok in enumerate(flags) if not ok])[:n]


def spectrogram_picture(originals: torch.Tensor, recons: torch.Tensor, sample_rate: int, path: str | os.PathLike,
                        *, names: list[str] | None = None, height: int = 160) -> Path:
    """Write a PNG of log-mel spectrograms of clips [N, C, T] (channels averaged): originals in the top row,
    reconstructions in the bottom row (see spectrogram_rows). Returns the path."""
    return spectrogram_rows([("original", originals), ("reconstruction", recons)], sample_rate, path, names=names,
                            height=height)


def spectrogram_rows(rows: list[tuple[str, torch.Tensor]], sample_rate: int, path: str | os.PathLike, *,
                     names: list[str] | None = None, height: int = 160) -> Path:
    """Write a PNG with one titled row of log-mel spectrograms per (title, clips [N, C, T]) pair, one column per
    clip (named by `names` above it), low frequencies at the bottom: a frequency axis in Hz on the left (at the mel
    bands' centres), each clip's time span below it, and a colour bar in dB below the loudest value in the picture
    (an 80 dB range). Written atomically; returns the path."""
    from PIL import Image, ImageDraw

    from mmtok.evaluation.plots import _font
    from mmtok.losses.audio import mel_filterbank

    mels = [[log_mel(c.detach().float().cpu().mean(0), sample_rate) for c in clips] for _, clips in rows]
    seconds = [c.shape[-1] / sample_rate for c in rows[0][1]]
    n_mels = mels[0][0].shape[0]
    window = 1 << max(6, round(np.log2(sample_rate * 0.064)))
    centres = mel_filterbank(sample_rate, window, n_mels).argmax(1).numpy() * sample_rate / window
    top = max(float(m.max()) for row in mels for m in row)
    pad, label, axis, ticks, bar = 6, 18, 46, 14, 64
    widths = [m.shape[1] for m in mels[0]]
    scale = max(1, round(240 / max(widths)))  # at least ~240 px per clip
    names_band = 16 if names else 0
    w = axis + sum(x * scale for x in widths) + pad * len(widths) + bar
    row_h = label + height + ticks + pad
    h = pad + names_band + len(rows) * row_h
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    ink, small = (30, 30, 30), _font(11)

    def hz(f: float) -> str:
        return f"{f / 1000:g}k" if f >= 1000 else f"{f:g}"

    xs = [axis + sum(x * scale + pad for x in widths[:i]) for i in range(len(widths))]
    for x, width, name in zip(xs, widths, names or []):
        chars = max(4, width * scale // 7)
        draw.text((x, pad), name if len(name) <= chars else "..." + name[-(chars - 3):], fill=ink, font=small)
    for r, (row, (title, _)) in enumerate(zip(mels, rows)):
        y = pad + names_band + r * row_h
        draw.text((axis, y), title, fill=ink, font=_font(13))
        y_tile = y + label
        draw.text((2, y_tile - 2), "Hz", fill=ink, font=small)
        for f in FREQ_TICKS_HZ:
            if centres[0] <= f <= centres[-1]:
                k = float(np.interp(f, centres, np.arange(n_mels)))
                yy = y_tile + height - (k + 0.5) / n_mels * height
                draw.line([(axis - 4, yy), (axis - 1, yy)], fill=ink)
                draw.text((4, yy - 6), hz(f), fill=ink, font=small)
        for x, m, dur in zip(xs, row, seconds):
            level = np.clip((m - (top - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0, 1)
            pixels = _RAMP[(level[::-1] * 255).round().astype(np.int64)]  # high frequencies at the top
            tile = Image.fromarray(pixels).resize((m.shape[1] * scale, height), Image.NEAREST)
            img.paste(tile, (x, y_tile))
            draw.text((x, y_tile + height + 1), "0 s", fill=ink, font=small)
            end = f"{dur:.2f} s"
            draw.text((x + tile.width - 7 * len(end), y_tile + height + 1), end, fill=ink, font=small)
    x_bar, y_bar = w - bar + 8, pad + names_band + label  # the colour bar beside the first row
    ramp = Image.fromarray(_RAMP[::-1][:, None, :].repeat(12, 1)).resize((12, height), Image.NEAREST)
    img.paste(ramp, (x_bar, y_bar))
    for db in DB_TICKS:
        yy = y_bar + db / DYNAMIC_RANGE_DB * (height - 1)
        draw.line([(x_bar + 12, yy), (x_bar + 15, yy)], fill=ink)
        draw.text((x_bar + 17, yy - 6), f"-{db} dB" if db else "0 dB", fill=ink, font=small)
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
