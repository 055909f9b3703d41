"""The audio families' loss section (torch-free): waveform L1, multi-scale log-mel, multi-resolution STFT, the
adversary (multi-period and multi-scale STFT discriminators with feature matching) and the quantizer's terms.

Default weights are DAC's (mel 15, feature matching 2, adversarial 1, codebook 1, commitment 0.25); the EnCodec
recipe sets EnCodec's (adversarial 4, feature matching 4, L1 0.1, mel 2, EMA codebooks with commitment 1).
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from mmtok.losses.config import QUANTIZER_DEFAULTS, QUANTIZER_TERMS, LossConfig
from mmtok.recipe_errors import FieldProblem
from mmtok.schema import Strict


class MelLossConfig(Strict):
    """Multi-scale log-mel distance (DAC's MelSpectrogramLoss): for each window w (hop w/4, Hann) with its number
    of mel bands, L1 between log10(max(mel, clamp_eps) ** pow) of input and reconstruction, summed over scales.
    The same definition is the `mel_distance` metric."""

    windows: list[int] = Field([32, 64, 128, 256, 512, 1024, 2048], min_length=1)
    n_mels: list[int] = Field([5, 10, 20, 40, 80, 160, 320], min_length=1)
    clamp_eps: float = Field(1e-5, gt=0)
    pow: float = Field(1.0, gt=0, description="the log is taken of mel ** pow (log10 of the power spectrum: 2)")
    mag_weight: float = Field(0.0, ge=0, description="weight of an extra L1 on the (linear) mel magnitudes")

    @model_validator(mode="after")
    def _same_lengths(self):
        if len(self.windows) != len(self.n_mels):
            raise FieldProblem("n_mels", f"one number of mel bands per window: {len(self.windows)} windows, "
                               f"{len(self.n_mels)} entries")
        return self


class STFTLossConfig(Strict):
    """Multi-resolution STFT distance (DAC's MultiScaleSTFTLoss): per window (hop w/4), L1 between log10 of the
    clamped power spectra plus L1 between magnitudes. The same definition is the `stft_distance` metric."""

    windows: list[int] = Field([2048, 512], min_length=1)


class AudioGANConfig(Strict):
    """The adversary: HiFi-GAN's multi-period discriminator and EnCodec's multi-scale STFT discriminator (each
    optional), hinge or least-squares losses, and L1 feature matching on their intermediate layers (each layer's
    distance divided by the mean magnitude of the real features, as EnCodec)."""

    loss: Literal["hinge", "ls"] = Field("ls", description="ls: least squares (DAC, HiFi-GAN); hinge: EnCodec")
    periods: list[int] = Field([2, 3, 5, 7, 11], description="multi-period discriminator periods ([] for none)")
    stft_windows: list[int] = Field([2048, 1024, 512, 256, 128], description="multi-scale STFT discriminator "
                                    "windows ([] for none)")
    channels: int = Field(32, ge=4, description="base width of every discriminator")
    start_step: int = Field(0, ge=0, description="step at which the discriminators start training")
    warmup_steps: int = Field(0, ge=0, description="steps the discriminators train alone before G sees them")
    lr: Optional[float] = Field(None, gt=0, description="discriminator learning rate (default: optim.lr)")

    @model_validator(mode="after")
    def _some_discriminator(self):
        if not self.periods and not self.stft_windows:
            raise FieldProblem("periods", "no discriminator: give periods or stft_windows (or set "
                               "loss.weights.gan and loss.weights.feature to 0)")
        return self


class AudioLossConfig(LossConfig):
    """Loss terms of audio codecs; a family adds its own to TERMS."""

    AUDIO_TERMS: ClassVar[tuple[str, ...]] = ("l1", "mel", "stft", "gan", "feature")
    TERMS: ClassVar[tuple[str, ...]] = AUDIO_TERMS + QUANTIZER_TERMS
    DEFAULTS: ClassVar[dict[str, float]] = {"mel": 15.0, "feature": 2.0, "gan": 1.0, **QUANTIZER_DEFAULTS}

    mel: MelLossConfig = Field(default_factory=MelLossConfig)
    stft: STFTLossConfig = Field(default_factory=STFTLossConfig)
    gan: AudioGANConfig = Field(default_factory=AudioGANConfig)
