"""Codec: SEANet encoder -> residual VQ -> SEANet decoder over waveforms.

Contract: audio [B, C, T] in [-1, 1] at `sample_rate`, T a multiple of hop -> ids [B, T / hop, levels] (frame-major:
one id per level per frame, coarse level first) -> audio [B, C, T] in [-1, 1]. `encode(x, levels=n)` keeps the
first n levels (bitrate n * log2(K) * frame_rate); `decode` takes any 1 <= n <= levels.
"""
from __future__ import annotations

import torch
from torch import nn

from mmtok.contract import Tokenizer, TokenizerOutput, TokenSpec
from mmtok.errors import MmtokError
from mmtok.families.codec.config import CodecConfig
from mmtok.families.codec.seanet import SEANetDecoder, SEANetEncoder
from mmtok.quantize import build_quantizer


class Codec(Tokenizer):
    def __init__(self, cfg: CodecConfig, *, active_terms=(), pretrained: bool = True):
        """`active_terms`: the weighted loss terms (the quantizer computes its entropy term only if asked);
        `pretrained` has no effect (nothing pretrained inside)."""
        super().__init__()
        self.cfg = cfg
        self.encoder = SEANetEncoder(cfg)
        self.quantizer = build_quantizer(cfg.latent_dim, cfg.quantizer, entropy_loss="entropy" in active_terms)
        self.decoder = SEANetDecoder(cfg)
        self._zero_biases()

    def _zero_biases(self) -> None:
        """DAC's init: every conv and quantizer projection starts with a zero bias. With PyTorch's default biases the
        latent of a fresh encoder is a near-constant offset (frames at cosine ~0.99 to each other), which k-means
        init and cosine codes cannot split, and the codebooks collapse within a few steps."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def spec(self) -> TokenSpec:
        """The token spec plus the audio keys: sample_rate, frame_rate,
        hop, bitrate_per_level (bits/s with the first n levels, n = 1..levels)."""
        cfg, q = self.cfg, self.cfg.quantizer
        return TokenSpec.from_meta({
            "family": "codec", "modality": "audio",
            "input_size": [cfg.channels, cfg.segment_samples], "value_range": [-1.0, 1.0],
            "token_grid": [cfg.frames], "tokens_per_sample": cfg.frames, "downsample": cfg.hop,
            "num_codebooks": q.levels, "codebook_size": q.codebook_size, "codebook_dim": q.dim,
            "quantizer": q.kind, "layout": "residual", "l2_norm": q.l2_norm,
            "flattening": "frame-major: frame by frame, the levels of one frame innermost (coarse to fine)",
            "sample_rate": cfg.sample_rate, "channels": cfg.channels, "hop": cfg.hop, "frame_rate": cfg.frame_rate,
            "segment_seconds": cfg.segment_samples / cfg.sample_rate,
            "bitrate_per_level": [round(cfg.bitrate(n), 3) for n in range(1, q.levels + 1)],
        })

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight of the decoder's last conv (for an adaptive adversarial weight)."""
        last = self.decoder.net[-2] if self.cfg.final_tanh else self.decoder.net[-1]
        return last.parametrizations.weight.original1

    def check_input(self, x: torch.Tensor) -> None:
        c, hop = self.cfg.channels, self.cfg.hop
        if x.dim() != 3 or x.shape[1] != c or x.shape[-1] % hop or x.shape[-1] == 0:
            raise MmtokError(f"expected audio [B, {c}, T] with T a positive multiple of {hop}, got {tuple(x.shape)}",
                             hint=f"pad the waveform to a multiple of {hop} samples (mmtok.load(...).encode does)")

    def _quantize(self, x: torch.Tensor):
        z = self.encoder(x)  # [B, D, F]
        return self.quantizer(z.transpose(1, 2))  # z_q [B, F, D], ids [B, F, levels]

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        q = self._quantize(x)
        recon = self.decoder(q.z_q.transpose(1, 2))
        return TokenizerOutput(recon=recon, ids=q.ids, losses=q.losses, stats=q.stats)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Audio [B, C, T] in [-1, 1] (T a multiple of hop) -> ids [B, T / hop, n] (n = levels, default all)."""
        self.check_input(x)
        ids = self._quantize(x).ids
        return ids if levels is None else ids[..., :levels]

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, F, n] (1 <= n <= levels: the first n levels) -> audio [B, C, F * hop] in [-1, 1]."""
        return self.decoder(self.quantizer.lookup(ids).transpose(1, 2))

    def graph_modules(self) -> tuple[nn.Module, nn.Module]:
        """Export-safe (encode, decode) modules for torch.export / ONNX (mmtok.export.graphs)."""
        return EncodeGraph(self), DecodeGraph(self)


class EncodeGraph(nn.Module):
    """Audio [B, C, T] (T fixed at export) -> ids [B, T / hop, levels] int64, the eager `Codec.encode` in eval mode
    through the quantizer's export-safe `export_ids`."""

    def __init__(self, codec: Codec):
        super().__init__()
        self.encoder, self.quantizer = codec.encoder, codec.quantizer
        self.latent_dim = int(codec.cfg.latent_dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        z = self.encoder(audio)
        b, _, f = z.shape
        ids = self.quantizer.export_ids(z.transpose(1, 2).reshape(-1, self.latent_dim).float())
        return ids.reshape(b, f, ids.shape[-1])


class DecodeGraph(nn.Module):
    """Ids [B, F, levels] int64 -> audio [B, C, F * hop] in [-1, 1] through `export_vectors`."""

    def __init__(self, codec: Codec):
        super().__init__()
        self.decoder, self.quantizer = codec.decoder, codec.quantizer
        self.latent_dim = int(codec.cfg.latent_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, f = ids.shape[:2]
        z = self.quantizer.export_vectors(ids.reshape(b * f, ids.shape[2])).reshape(b, f, self.latent_dim)
        return self.decoder(z.transpose(1, 2)).clamp(-1.0, 1.0)
