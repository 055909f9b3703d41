"""Audio reconstruction metrics as torchmetrics.Metric subclasses (sums and counts, summed across ranks).

`AudioDistances`: mean over signals of DAC's mel distance and STFT distance (lower is better) and of SI-SDR in dB
(higher is better), see mmtok.losses.audio. `LevelUsage`: codebook usage, perplexity and entropy of each RVQ level
over a pass (ids [B, F, levels]). PESQ (wide-band, 16 kHz) and STOI come from torchmetrics when the `pesq` /
`pystoi` packages are installed (`optional_metrics`).
"""
from __future__ import annotations

import importlib.util
import math

import torch
from torchmetrics import Metric

from mmtok.metrics.codebook import count_codes


class AudioDistances(Metric):
    """update(x, recon): waveforms [B, C, T] in [-1, 1]; compute() -> {"mel_distance", "stft_distance",
    "si_sdr"} (means over every signal = channel of every clip)."""

    full_state_update = False

    def __init__(self, sample_rate: int, mel=None, stft=None, **kwargs):
        super().__init__(**kwargs)
        from mmtok.losses.audio import MelDistance, STFTDistance

        self.mel = MelDistance(sample_rate, **(mel or {}))
        self.stft = STFTDistance(**(stft or {}))
        for name in ("mel_sum", "stft_sum", "sisdr_sum", "count"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, x: torch.Tensor, recon: torch.Tensor) -> None:
        from mmtok.losses.audio import si_sdr

        x, recon = x.float(), recon.float()
        self.mel_sum += self.mel.per_signal(recon, x).double().sum()
        self.stft_sum += self.stft.per_signal(recon, x).double().sum()
        self.sisdr_sum += si_sdr(recon, x).double().sum()
        self.count += x.shape[0] * x.shape[1]

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp_min(1)
        return {"mel_distance": self.mel_sum / n, "stft_distance": self.stft_sum / n, "si_sdr": self.sisdr_sum / n}


class LevelUsage(Metric):
    """Code counts of each of `levels` codebooks of `codebook_size` codes over a pass. update(ids [B, F, levels]);
    compute() -> {"usage" [levels] in [0, 1], "perplexity" [levels], "entropy_bits" [levels]}."""

    full_state_update = False

    def __init__(self, codebook_size: int, levels: int, **kwargs):
        super().__init__(**kwargs)
        self.codebook_size, self.levels = int(codebook_size), int(levels)
        self.add_state("counts", torch.zeros(self.levels, self.codebook_size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ids: torch.Tensor) -> None:
        n = ids.shape[-1]  # the first n levels (an encode with fewer levels counts only those)
        self.counts[:n] += count_codes(ids.movedim(-1, 1), self.codebook_size, n).to(self.counts.device)

    def compute(self) -> dict[str, torch.Tensor]:
        c = self.counts.double()
        p = c / c.sum(1, keepdim=True).clamp_min(1)
        entropy = -(p * torch.log2(torch.where(p > 0, p, torch.ones_like(p)))).sum(1)
        return {"usage": (c > 0).double().mean(1), "perplexity": torch.pow(2.0, entropy), "entropy_bits": entropy}


def optional_metrics(sample_rate: int) -> tuple[dict[str, Metric], dict[str, str]]:
    """({"pesq": ..., "stoi": ...} for what is installed, {name: why unavailable}). Both take
    update(recon [N, T], target [N, T]) at `sample_rate`; PESQ resamples to 16 kHz (wide band) itself
    (mmtok.metrics.audio.PESQ16k), STOI works at any rate (pystoi resamples to 10 kHz)."""
    metrics, unavailable = {}, {}
    if importlib.util.find_spec("pesq") is None:
        unavailable["pesq"] = "the `pesq` package is not installed (pip install pesq)"
    else:
        metrics["pesq"] = PESQ16k(sample_rate)
    if importlib.util.find_spec("pystoi") is None:
        unavailable["stoi"] = "the `pystoi` package is not installed (pip install pystoi)"
    else:
        from torchmetrics.audio import ShortTimeObjectiveIntelligibility

        metrics["stoi"] = ShortTimeObjectiveIntelligibility(sample_rate)
    return metrics, unavailable


class PESQ16k(Metric):
    """Wide-band PESQ (ITU-T P.862.2, the `pesq` package through torchmetrics) after resampling both signals to
    16 kHz with soxr; signals PESQ cannot score (e.g. no speech found) are counted in `failed` and left out."""

    full_state_update = False

    def __init__(self, sample_rate: int, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = int(sample_rate)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("failed", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, recon: torch.Tensor, target: torch.Tensor) -> None:
        import numpy as np
        from pesq import pesq

        from mmtok.modalities.audio.decode import resample

        r = resample(recon.detach().float().cpu().numpy(), self.sample_rate, 16000)
        t = resample(target.detach().float().cpu().numpy(), self.sample_rate, 16000)
        for a, b in zip(r, t):
            try:
                score = pesq(16000, np.asarray(b, np.float64), np.asarray(a, np.float64), "wb")
            except Exception:  # noqa: BLE001 - pesq raises NoUtterancesError and others for unscorable signals
                self.failed += 1
                continue
            if math.isfinite(score):
                self.total += score
                self.count += 1

    def compute(self) -> torch.Tensor:
        return self.total / self.count if int(self.count) else torch.tensor(math.nan, dtype=torch.float64)
