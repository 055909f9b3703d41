"""The audio objective: waveform L1, multi-scale log-mel and multi-resolution STFT distances (mmtok.losses.audio),
an adversary of multi-period and multi-scale STFT discriminators with feature matching
(mmtok.losses.audio_adversarial), the validation suite (mel / STFT distance, SI-SDR, usage of every RVQ level)
and sample writers (spectrogram picture and WAV clips). Waveforms are float [B, C, T] in [-1, 1] under "audio".
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmtok.contract import Adversary, MetricSuite, Objective

MODALITY = "audio"
SAMPLE_CLIPS = 4


class AudioMetrics(MetricSuite):
    """mel_distance and stft_distance (DAC's definitions with DAC's settings, lower is better), si_sdr (dB),
    usage (mean over RVQ levels of the share of codes used over the pass), usage_min (the least-used level's) and
    perplexity (mean over levels), all synced across ranks. The same numbers `mmtok eval` reports at all levels."""

    names = ("mel_distance", "stft_distance", "si_sdr", "usage", "usage_min", "perplexity")

    def __init__(self, sample_rate: int, codebook_size: int, levels: int):
        super().__init__()
        from mmtok.metrics.audio import AudioDistances, LevelUsage

        self.distances = AudioDistances(sample_rate)
        self.usage = LevelUsage(codebook_size, levels)

    def update(self, x: torch.Tensor, out) -> None:
        self.distances.update(x.float(), out.recon.float().clamp(-1, 1))
        self.usage.update(out.ids)

    def compute(self) -> dict[str, torch.Tensor]:
        usage = self.usage.compute()
        return {**self.distances.compute(), "usage": usage["usage"].mean(), "usage_min": usage["usage"].min(),
                "perplexity": usage["perplexity"].mean()}


class AudioAdversary(Adversary):
    """Multi-period (loss.gan.periods) and multi-scale STFT (loss.gan.stft_windows) discriminators, least-squares or
    hinge; the generator gets `gan` and, weighted by `feature`, normalised feature matching. D trains from
    gan.start_step; G sees its terms gan.warmup_steps later."""

    def __init__(self, recipe):
        super().__init__()
        from mmtok.losses.audio_adversarial import MultiPeriodDiscriminator, MultiScaleSTFTDiscriminator

        gan, c = recipe.loss.gan, recipe.model.channels
        self.cfg, self.lr = gan, gan.lr
        self.use_features = recipe.loss.weight("feature") > 0
        parts = []
        if gan.periods:
            parts.append(MultiPeriodDiscriminator(gan.periods, c, gan.channels))
        if gan.stft_windows:
            parts.append(MultiScaleSTFTDiscriminator(gan.stft_windows, c, gan.channels))
        self.discriminators = nn.ModuleList(parts)

    def outputs(self, x: torch.Tensor):
        """Every sub-discriminator's (logits, features) for waveforms [B, C, T]."""
        return [o for d in self.discriminators for o in d(x)]

    def phase(self, step: int) -> tuple[bool, bool]:
        return step >= self.cfg.start_step, step >= self.cfg.start_step + self.cfg.warmup_steps

    def g_terms(self, x, recon, rec_loss, model):
        from mmtok.losses.audio_adversarial import feature_matching, g_loss

        fake = self.outputs(recon)
        terms = {"gan": g_loss(fake, self.cfg.loss)}
        if self.use_features:
            with torch.no_grad():
                real = self.outputs(x)
            terms["feature"] = feature_matching(real, fake)
        return terms, {}

    def d_terms(self, x, recon):
        from mmtok.losses.audio_adversarial import d_loss

        return {"disc": d_loss(self.outputs(x.detach()), self.outputs(recon.detach()), self.cfg.loss)}

    def d_loss(self, terms):
        return terms["disc"]


class AudioObjective(Objective):
    """l1, mel and stft on waveforms in [-1, 1]; the adversary when `loss.weights.gan` or `.feature` > 0."""

    def __init__(self, recipe):
        super().__init__(recipe)
        from mmtok.losses.audio import MelDistance, STFTDistance

        model, loss = recipe.model, recipe.loss
        self.mel = MelDistance(model.sample_rate, **loss.mel.model_dump()) if self.active("mel") else None
        self.stft = STFTDistance(loss.stft.windows) if self.active("stft") else None

    def make_adversary(self) -> AudioAdversary | None:
        return AudioAdversary(self.recipe) if self.active("gan") or self.active("feature") else None

    def inputs(self, batch: dict) -> torch.Tensor:
        return batch[MODALITY]

    def terms(self, x, out) -> dict[str, torch.Tensor]:
        recon, xf = out.recon.float(), x.float()
        terms = {}
        if self.active("l1"):
            terms["l1"] = (recon - xf).abs().mean()
        if self.mel is not None:
            terms["mel"] = self.mel(recon, xf)
        if self.stft is not None:
            terms["stft"] = self.stft(recon, xf)
        return terms

    def metrics(self) -> AudioMetrics:
        m = self.recipe.model
        return AudioMetrics(m.sample_rate, m.quantizer.codebook_size, m.quantizer.levels)

    def write_samples(self, x, out, path: Path) -> None:
        """The spectrogram picture at `path` (originals above, reconstructions below) and the clips as WAV files in
        the folder of the same name (samples/step_N.png -> samples/step_N/clip_K_{original,reconstruction}.wav)."""
        from mmtok.modalities.audio.samples import audible, spectrogram_picture, write_clips

        path = Path(path)
        shown = audible(x, SAMPLE_CLIPS)  # near-silent segments only when there are too few others
        x, recon = x[shown], out.recon[shown].float().clamp(-1, 1)
        sr = self.recipe.model.sample_rate
        spectrogram_picture(x, recon, sr, path)
        write_clips(x, recon, sr, path.with_suffix(""))
