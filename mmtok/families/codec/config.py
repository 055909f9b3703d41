"""The codec family's recipe schemas and presets (torch-free): a SEANet-style conv encoder and decoder (EnCodec /
DAC shape: strided conv blocks with residual units) around a residual VQ, trained on waveforms with the audio
objective (mmtok.modalities.audio). The model is mmtok.families.codec.model.

Frames: one token frame per `hop` = prod(strides) samples, so frame_rate = sample_rate / hop; each frame holds
one id per RVQ level, and `levels` levels of `codebook_size` codes give levels * log2(codebook_size) *
frame_rate bits per second.
"""
from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from mmtok.families import Family, register
from mmtok.losses.audio_config import AudioLossConfig
from mmtok.quantize.config import ResidualVQConfig
from mmtok.recipe_errors import FieldProblem
from mmtok.schema import Strict


class CodecConfig(Strict):
    """A SEANet encoder (channels doubling at every stride) and its mirror decoder around a residual VQ."""

    family: Literal["codec"] = "codec"
    preset: Optional[str] = Field(None, description="named preset the fields start from")
    sample_rate: int = Field(24000, ge=1000, description="Hz; audio at any other rate is resampled (soxr)")
    channels: int = Field(1, ge=1, le=8, description="1: mono (files are mixed down); more: kept (or repeated)")
    segment_seconds: float = Field(1.0, gt=0, description="training / validation segment length, rounded to "
                                   "whole frames; also the fixed input length of the exported graphs")
    loudness_lufs: Optional[float] = Field(None, le=0, description="normalise every file to this integrated "
                                           "loudness (ITU-R BS.1770, LUFS) before cutting; null: as recorded")
    ch: int = Field(32, ge=2, description="channels after the first conv, doubled at every stride")
    strides: list[Annotated[int, Field(ge=1)]] = Field([2, 4, 5, 8], min_length=1,
                                                      description="encoder strides (decoder: reversed)")
    res_units: int = Field(1, ge=1, description="residual units per block, dilations dilation_base ** j")
    dilation_base: int = Field(2, ge=1)
    kernel_size: int = Field(7, ge=1, description="kernel of the first and last convs")
    latent_kernel_size: Optional[int] = Field(None, ge=1, description="kernel of the encoder's last conv, to the "
                                              "latent (DAC: 3); null: kernel_size")
    decoder_ch: Optional[int] = Field(None, ge=2, description="channels of the decoder's first conv, halved at every "
                                      "stride (DAC: 1536); null: the encoder's widest, ch * 2 ** len(strides)")
    residual_kernel_size: int = Field(3, ge=1)
    padding: Literal["zeros", "encodec"] = Field("zeros", description="zeros: every conv zero-padded, split evenly "
                                                 "(DAC); encodec: EnCodec's reflection padding, the odd sample on "
                                                 "the left, transposed convs trimmed to match")
    causal: bool = Field(False, description="with padding encodec: all padding on the left (EnCodec 24 kHz)")
    conv_shortcut: bool = Field(False, description="a weight-normalised 1x1 conv on each residual unit's skip path "
                                "(EnCodec's use_conv_shortcut); false: the identity")
    final_tanh: bool = Field(True, description="the decoder ends in tanh (DAC); EnCodec's does not")
    upsampling: Literal["exact", "dac"] = Field("exact", description="exact: each transposed conv maps L frames to "
                                               "L * stride samples; dac: as DAC's code, one sample short at each odd "
                                               "stride, multiplied by the strides after it (the output is "
                                               "zero-padded at the end to frames * hop)")
    activation: Literal["elu", "snake"] = Field("elu", description="elu (EnCodec) or snake (DAC)")
    latent_dim: int = Field(128, ge=1, description="channels of the latent the quantizer sees")
    bottleneck: Literal["none", "lstm", "transformer"] = Field("lstm", description="sequence model at the bottom "
                                                               "of encoder and decoder (EnCodec: 2-layer LSTM)")
    bottleneck_layers: int = Field(2, ge=1)
    bottleneck_heads: int = Field(4, ge=1, description="attention heads (transformer bottleneck)")
    quantizer: ResidualVQConfig = Field(default_factory=ResidualVQConfig)

    @property
    def hop(self) -> int:
        """Samples per token frame (the downsample factor)."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def frames(self) -> int:
        """Token frames per segment."""
        return max(1, round(self.segment_seconds * self.sample_rate / self.hop))

    @property
    def segment_samples(self) -> int:
        return self.frames * self.hop

    def bitrate(self, levels: int | None = None) -> float:
        """Bits per second with the first `levels` RVQ levels (all when None)."""
        n = self.quantizer.levels if levels is None else levels
        return n * math.log2(self.quantizer.codebook_size) * self.frame_rate

    @model_validator(mode="after")
    def _consistent(self):
        if self.bottleneck == "transformer" and (self.ch * 2 ** len(self.strides)) % self.bottleneck_heads:
            raise FieldProblem("bottleneck_heads", f"the transformer runs on {self.ch * 2 ** len(self.strides)} "
                               f"channels, not divisible by {self.bottleneck_heads} heads")
        if self.decoder_ch is not None and self.decoder_ch % 2 ** len(self.strides):
            raise FieldProblem("decoder_ch", f"decoder_ch {self.decoder_ch} is halved {len(self.strides)} times: use a "
                               f"multiple of {2 ** len(self.strides)}")
        if self.causal and self.padding != "encodec":
            raise FieldProblem("causal", "causal convolutions are EnCodec's padding: set padding: encodec")
        if self.padding == "encodec" and self.upsampling != "exact":
            raise FieldProblem("upsampling", "EnCodec's padding trims transposed convs exactly: upsampling: exact")
        if self.decoder_ch is not None and self.bottleneck != "none":
            raise FieldProblem("decoder_ch", "decoder_ch with a bottleneck sequence model: the encoder's and the "
                               "decoder's sequence models share the widest width; leave decoder_ch null")
        return self

    @property
    def decoder_width(self) -> int:
        """Channels of the decoder's first conv."""
        return self.decoder_ch or self.ch * 2 ** len(self.strides)


class CodecLoss(AudioLossConfig):
    TERMS: ClassVar[tuple[str, ...]] = AudioLossConfig.TERMS


def _rvq(**fields) -> dict:
    return {"kind": "rvq", **fields}


# EnCodec 24 kHz: hop 320 (75 frames/s), 8 x 1024 EMA codebooks on the 128-d latent (no projection), k-means
# init, dead codes replaced (6 kbps at 8 levels; EnCodec trains with n_q from {2, 4, 8, 16, 32} per batch).
# Causal convolutions with EnCodec's reflection padding, 1x1 conv shortcuts, no final tanh: EnCodec's
# architecture exactly (`mmtok import encodec` loads its weights; the released model has 32 levels).
_ENCODEC = dict(sample_rate=24000, segment_seconds=1.0, ch=32, strides=[2, 4, 5, 8], res_units=1, dilation_base=2,
                kernel_size=7, residual_kernel_size=3, activation="elu", latent_dim=128, bottleneck="lstm",
                bottleneck_layers=2, padding="encodec", causal=True, conv_shortcut=True, final_tanh=False,
                quantizer=_rvq(levels=8, codebook_size=1024, dim=128, l2_norm=False, ema=True, ema_decay=0.99,
                               kmeans_init=True, restart_after=25, quantizer_dropout=1.0, dropout_per="batch"))
# DAC 44.1 kHz: hop 512 (86 frames/s), 9 x 1024 codes of dim 8 (factorised: each level projects the 1024-d
# latent to 8 dims and back; searched l2-normalised, the raw row decoded), learned codebooks, quantizer dropout
# 0.5 per sample, Snake, 3 residual units with dilations 1, 3, 9, a kernel-3 conv to the latent, a 1536-wide
# decoder (7.75 kbps): DAC's architecture exactly (`mmtok import dac` loads its weights).
_DAC = dict(sample_rate=44100, segment_seconds=0.38, ch=64, strides=[2, 4, 8, 8], res_units=3, dilation_base=3,
            kernel_size=7, latent_kernel_size=3, decoder_ch=1536, residual_kernel_size=7, upsampling="dac",
            activation="snake",
            latent_dim=1024, bottleneck="none",
            quantizer=_rvq(levels=9, codebook_size=1024, dim=8, l2_norm=True, code_output="raw", ema=False,
                           kmeans_init=False, restart_after=0, quantizer_dropout=0.5, dropout_per="sample"))

PRESETS = {
    "encodec_24k": _ENCODEC,
    "dac_44k": _DAC,
    # 16 kHz speech (SpeechTokenizer / EnCodec-16k shape): hop 320, 50 frames/s, 8 x 1024, 4 kbps.
    "speech_16k": {**_ENCODEC, "sample_rate": 16000,
                   "quantizer": _rvq(levels=8, codebook_size=1024, dim=8, l2_norm=True, ema=True, kmeans_init=True,
                                     restart_after=25, quantizer_dropout=0.5, dropout_per="sample")},
    # Sized for a few CPU minutes on 16 kHz speech: hop 320 (50 frames/s) reached by 4 strided blocks at 16 to
    # 128 channels, no sequence model, 8 x 256 cosine codes of dim 8 with EMA (decay 0.99), k-means init and two
    # restart rules: codes unused for 20 steps, and every step codes whose EMA count falls below half the mean
    # (restart_below, EnCodec's threshold rule); quantizer dropout per sample (one model, 1-8 levels, 0.4-3.2 kbps).
    # restart_below took the least-used level on new-domain speech from 63-79% to 88-97% at the same mel distance
    # (README "Audio"; eval/results/audio_restart_dev.json).
    "audio_small_16k": dict(sample_rate=16000, segment_seconds=0.5, ch=16, strides=[2, 4, 5, 8], res_units=1,
                            dilation_base=2, kernel_size=7, residual_kernel_size=3, activation="elu", latent_dim=64,
                            bottleneck="none",
                            quantizer=_rvq(levels=8, codebook_size=256, dim=8, l2_norm=True, ema=True,
                                           ema_decay=0.99, kmeans_init=True, restart_after=20, restart_below=0.5,
                                           quantizer_dropout=0.5, dropout_per="sample")),
    # Tiny presets for tests: a forward/backward in well under a second on CPU.
    "test_codec": dict(sample_rate=8000, segment_seconds=0.04, ch=4, strides=[2, 4], res_units=1, latent_dim=8,
                       bottleneck="lstm", bottleneck_layers=1,
                       quantizer=_rvq(levels=3, codebook_size=16, dim=4, l2_norm=True, ema=False,
                                      quantizer_dropout=0.5, dropout_per="sample")),
    "test_codec_snake": dict(sample_rate=8000, segment_seconds=0.03, ch=4, strides=[3, 2], res_units=2,
                             dilation_base=3, residual_kernel_size=7, activation="snake", latent_dim=8,
                             bottleneck="transformer", bottleneck_layers=1, bottleneck_heads=2,
                             quantizer=_rvq(levels=2, codebook_size=8, dim=8, l2_norm=False, ema=True)),
}

FAMILY = register(Family(name="codec", modality="audio", model_config=CodecConfig, loss_config=CodecLoss,
                         model="mmtok.families.codec.model:Codec",
                         objective="mmtok.modalities.audio.objective:AudioObjective", presets=PRESETS,
                         formats={"dac": "mmtok.families.codec.interop:read_dac",
                                  "encodec": "mmtok.families.codec.interop:read_encodec"},
                         hf_export="mmtok.families.codec.interop:to_hf"))
