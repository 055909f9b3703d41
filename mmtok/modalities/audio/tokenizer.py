"""What `mmtok.load` returns for an audio bundle, and the audio keys of tokenizer.json.

    tok = mmtok.load("bundles/speech")
    ids = tok.encode("speech.wav")               # LongTensor [B, F, levels], F = frames (sample_rate / hop per s)
    ids = tok.encode(wave, levels=2, sample_rate=44100)   # a float waveform at any rate, the first 2 levels only
    wave = tok.decode(ids)                       # float32 [B, C, F * hop] in [-1, 1] at tok.sample_rate
    seq = tok.interleave(ids)                    # [B, F * n] frame-major, level l offset by l * K (one LM vocabulary)
    streams = tok.delay(ids)                     # [B, n, F + n - 1] MusicGen's delay pattern, padded with K

Inputs are waveforms float [B, C, T] (or [C, T], or [T] for mono) in [-1, 1], arrays or tensors, at the bundle's
sample rate unless `sample_rate=` says otherwise (then resampled with soxr), or audio file paths (decoded with
soundfile, mixed down and resampled as in training). Every clip is zero-padded at the end to a multiple of hop,
and a batch of clips to its longest.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from mmtok.errors import MmtokError
from mmtok.export.tokenizer import RANGE_TOLERANCE, BaseTokenizer


class AudioTokenizer(BaseTokenizer):
    """An audio bundle: `encode(audio, levels=n)` -> ids [B, F, n], `decode(ids)` -> waveforms [B, C, T]."""

    def __init__(self, model, meta: dict, config: dict, path=None):
        super().__init__(model, meta, config, path)
        self.sample_rate = int(meta["sample_rate"])
        self.channels = int(meta["channels"])
        self.hop = int(meta["hop"])
        self.frame_rate = float(meta["frame_rate"])

    def bitrate(self, levels: int | None = None) -> float:
        """Bits per second with the first `levels` levels (all when None)."""
        return float(self.meta["bitrate_per_level"][(levels or self.levels) - 1])

    # ------------------------------------------------------------------------------------------- encode

    def preprocess(self, audio: Any, *, sample_rate: int | None = None) -> torch.Tensor:
        """float32 [B, C, T] on this device, T a multiple of hop (zero-padded), from the forms in the module
        docstring; MmtokError for another channel count, integer samples, NaN / infinite values or values outside
        [-1, 1]."""
        items = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        if not items:
            raise MmtokError("encode got an empty list", hint="pass at least one waveform or audio file")
        waves = [w for item in items for w in self._waves(item, sample_rate)]
        longest = max(w.shape[-1] for w in waves)
        target = max(self.hop, -(-longest // self.hop) * self.hop)
        batch = torch.stack([torch.nn.functional.pad(w, (0, target - w.shape[-1])) for w in waves])
        return batch.to(self.device)

    def _waves(self, item: Any, sample_rate: int | None) -> list[torch.Tensor]:
        """One input as a list of [C, T] float32 CPU tensors at this tokenizer's sample rate."""
        from mmtok.modalities.audio.decode import AudioDecodeError, AudioSpec, prepare, read_audio, resample

        if isinstance(item, (str, os.PathLike)):
            try:
                wave, sr = read_audio(item)
            except AudioDecodeError as e:
                raise MmtokError(f"{item}: {e.message}", hint=e.hint) from None
            spec = AudioSpec(self.sample_rate, self.channels, self.hop, self.config["model"].get("loudness_lufs"))
            return [torch.from_numpy(prepare(wave, sr, spec))]
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(item)
        if not isinstance(item, torch.Tensor):
            raise MmtokError(f"encode cannot take a {type(item).__name__}",
                             hint="pass float waveforms [B, C, T] in [-1, 1], audio file paths, or a list of these")
        if not item.is_floating_point():
            raise MmtokError(f"encode got {str(item.dtype).replace('torch.', '')} samples; it expects float waveforms "
                             "in [-1, 1]", hint="convert 16-bit PCM with x.float() / 32768")
        x = item.detach().float().cpu()
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[-1] == 0:
            raise MmtokError(f"encode got a waveform of shape {tuple(item.shape)}; it expects [B, {self.channels}, T]"
                             + (", [T]" if self.channels == 1 else "") + f" at {self.sample_rate} Hz",
                             hint="channels first" + ("; mix down to mono with x.mean(dim=-2)" if self.channels == 1
                                                      else ""))
        if not bool(torch.isfinite(x).all()):
            raise MmtokError("encode got a waveform with NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise MmtokError(f"encode got samples in [{lo:.4g}, {hi:.4g}]; it expects waveforms in [-1, 1]",
                             hint="scale 16-bit PCM by 1 / 32768, or normalise by the peak")
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            x = torch.from_numpy(np.stack([resample(w.numpy(), int(sample_rate), self.sample_rate) for w in x]))
        return list(x.clamp(-1, 1))

    @torch.no_grad()
    def encode(self, audio: Any, *, levels: int | None = None, sample_rate: int | None = None) -> torch.Tensor:
        """Token ids int64 [B, F, n] (frame-major; n = `levels`, default all) for audio in any form `preprocess`
        takes; F = ceil(T / hop)."""
        n = self._levels(levels)
        return self.model.encode(self.preprocess(audio, sample_rate=sample_rate), levels=n)

    def _levels(self, levels: int | None) -> int:
        if levels is None:
            return self.levels
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= self.levels:
            rates = ", ".join(f"{i + 1}: {r / 1000:g} kbps" for i, r in enumerate(self.meta["bitrate_per_level"]))
            raise MmtokError(f"levels={levels!r}: this tokenizer has {self.levels} RVQ levels",
                             hint=f"give 1..{self.levels} ({rates})")
        return levels

    def levels_for_bitrate(self, kbps: float) -> int:
        """The most levels whose bitrate is at most `kbps`; MmtokError when even one level needs more."""
        rates = self.meta["bitrate_per_level"]
        fits = [i + 1 for i, r in enumerate(rates) if r <= kbps * 1000 + 1e-6]
        if not fits:
            raise MmtokError(f"{kbps:g} kbps is below this tokenizer's lowest bitrate ({rates[0] / 1000:g} kbps, "
                             "one level)", hint=f"its bitrates: {', '.join(f'{r / 1000:g}' for r in rates)} kbps")
        return fits[-1]

    # ------------------------------------------------------------------------------------------- decode

    def check_ids(self, ids: Any) -> torch.Tensor:
        """ids as int64 [B, F, n] (1 <= n <= levels) from [B, F, n] or one clip [F, n]; MmtokError for floats,
        another shape or values outside [0, K). Flat LM sequences go through `deinterleave` first."""
        ids = self.as_id_tensor(ids)
        L = self.levels
        if ids.dim() == 2:
            ids = ids.unsqueeze(0)
        if ids.dim() != 3 or not 1 <= ids.shape[2] <= L or ids.shape[1] < 1:
            raise MmtokError(f"decode got ids of shape {tuple(ids.shape)}; it expects [B, F, n] with 1 <= n <= {L}",
                             hint="flat LM sequences: tok.deinterleave(seq, levels=n); delayed streams: tok.undelay")
        return self.check_range(ids)

    def postprocess(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().clamp(-1, 1)

    # ------------------------------------------------------------------------------------------- LM orders

    def interleave(self, ids: Any) -> torch.Tensor:
        """[B, F, n] -> [B, F * n]: frame by frame, the n levels of a frame in order, level l's ids offset by
        l * K (so one vocabulary of n * K tokens holds every level)."""
        ids = self.check_ids(ids)
        offsets = torch.arange(ids.shape[2], device=ids.device) * self.codebook_size
        return (ids + offsets).reshape(ids.shape[0], -1)

    def deinterleave(self, seq: Any, levels: int | None = None) -> torch.Tensor:
        """The inverse of `interleave`: [B, F * n] (or [F * n]) -> [B, F, n]; n = `levels` (default all)."""
        n = self._levels(levels)
        seq = self.as_id_tensor(seq)
        seq = seq.unsqueeze(0) if seq.dim() == 1 else seq
        if seq.dim() != 2 or seq.shape[1] % n or seq.shape[1] == 0:
            raise MmtokError(f"deinterleave got a sequence of shape {tuple(seq.shape)}, not [B, F * {n}]",
                             hint="give levels= the number of levels the sequence was made with")
        ids = seq.reshape(seq.shape[0], -1, n) - torch.arange(n, device=seq.device) * self.codebook_size
        return self.check_ids(ids)

    def delay(self, ids: Any) -> torch.Tensor:
        """MusicGen's delay pattern: [B, F, n] -> [B, n, F + n - 1], level l shifted right by l frames; the cells
        before and after a level's codes hold the pad id K (one past the codebook)."""
        ids = self.check_ids(ids)
        b, f, n = ids.shape
        out = torch.full((b, n, f + n - 1), self.codebook_size, dtype=torch.long, device=ids.device)
        for level in range(n):
            out[:, level, level : level + f] = ids[:, :, level]
        return out

    def undelay(self, streams: Any) -> torch.Tensor:
        """The inverse of `delay`: [B, n, F + n - 1] -> [B, F, n]."""
        streams = self.as_id_tensor(streams)
        if streams.dim() != 3 or streams.shape[2] < streams.shape[1]:
            raise MmtokError(f"undelay got streams of shape {tuple(streams.shape)}, not [B, n, F + n - 1]")
        n = streams.shape[1]
        f = streams.shape[2] - n + 1
        return self.check_ids(torch.stack([streams[:, level, level : level + f] for level in range(n)], dim=-1))


def bundle_meta(meta: dict) -> dict:
    """The audio modality's tokenizer.json keys: input preparation, id layout, the LM flattening orders (frame-major
    interleave with per-level offsets, MusicGen's delay pattern) and special tokens."""
    k, n = int(meta["codebook_size"]), int(meta["num_codebooks"])
    sr, hop, rate = int(meta["sample_rate"]), int(meta["hop"]), float(meta["frame_rate"])
    c, t = meta["input_size"]
    width = max(4, len(str(k - 1)))
    return {
        "input": {
            "shape": ["B", c, "T"], "layout": f"[B, C, T]: channels first, {c} channel(s), T samples at {sr} Hz "
            f"(a multiple of {hop}; mmtok.load pads)", "dtype": "float32", "value_range": [-1.0, 1.0],
            "sample_rate": sr, "normalisation": "full scale: 16-bit PCM / 32768; other rates resampled (soxr HQ), "
            "channels " + ("mixed down to mono (mean)" if c == 1 else "kept"),
            "loudness_lufs": meta.get("loudness_lufs"),
            "graphs": f"encoder.pt2 / decoder.pt2 take exactly T = {t} samples ({t / sr:g} s)",
        },
        "ids": {
            "dtype": "int64", "shape": ["B", f"T/{hop}", n], "range": [0, k],
            "layout": f"frame-major: one frame per {hop} samples ({rate:g} frames/s), the {n} residual levels of a "
                      "frame innermost (coarse to fine); the first n levels alone decode at a lower bitrate",
            "per_sample": f"T/{hop} * {n}", "offset": 0,
            "offsets_note": f"ids are codebook indices starting at 0 per level; the interleave order adds l * {k} to "
                            f"level l so the levels do not share tokens",
            "bitrate_per_level": meta["bitrate_per_level"],
        },
        "vocab_size": k,
        "flattening_orders": {
            "interleave": {"shape": ["B", f"F * n"], "vocab_size": n * k,
                           "rule": f"seq[f * n + l] = ids[f, l] + l * {k} (frame by frame, levels inner)",
                           "python": "tok.interleave(ids) / tok.deinterleave(seq, levels=n)"},
            "delay": {"shape": ["B", "n", "F + n - 1"], "pad_id": k, "vocab_size_per_stream": k + 1,
                      "rule": "streams[l, f + l] = ids[f, l]; other cells hold pad_id (MusicGen)",
                      "python": "tok.delay(ids) / tok.undelay(streams)"},
        },
        "special_tokens": {
            "begin": "<audio>", "end": "</audio>", "code_format": f"<a{{level}}_{{:0{width}d}}>",
            "note": f"suggested with the interleave order: begin, then per frame the codes of levels 0..n-1 as "
                    f"code_format.format(id, level=l), then end; {n * k} + 2 new tokens in all",
        },
    }
