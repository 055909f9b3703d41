"""VQGAN: a conv encoder, a vector quantizer in a low-dimensional code space, and a conv decoder.

Contract: images [B, 3, R, R] in [-1, 1] -> ids [B, R/f, R/f] (LongTensor, row-major grid) -> images.
"""
from __future__ import annotations

import torch
from torch import nn

from mmtok.config import VQGANConfig
from mmtok.errors import MmtokError
from mmtok.nn.conv import Decoder, Encoder
from mmtok.quantize import build_quantizer
from mmtok.registry import PRESETS, TOKENIZERS
from mmtok.tokenizers.base import TokenizerOutput


@TOKENIZERS.register("vqgan")
class VQGAN(nn.Module):
    def __init__(self, cfg: VQGANConfig, *, entropy_loss: bool = False):
        super().__init__()
        if cfg.resolution % cfg.downsample:
            raise MmtokError(
                f"image size {cfg.resolution} is not divisible by the downsample factor {cfg.downsample}",
                hint=f"use a resolution that is a multiple of {cfg.downsample} (--set model.resolution=...)",
            )
        self.cfg = cfg
        common = dict(ch=cfg.ch, ch_mult=cfg.ch_mult, num_res_blocks=cfg.num_res_blocks,
                      attn_resolutions=cfg.attn_resolutions, mid_attn=cfg.mid_attn, z_channels=cfg.z_channels,
                      resolution=cfg.resolution, dropout=cfg.dropout)
        self.encoder = Encoder(in_channels=cfg.in_channels, **common)
        self.quantizer = build_quantizer(cfg.z_channels, cfg.quantizer, entropy_loss=entropy_loss)
        self.decoder = Decoder(out_channels=cfg.in_channels, **common)

    @property
    def meta(self) -> dict:
        g = self.cfg.resolution // self.cfg.downsample
        q = self.cfg.quantizer
        return {
            "modality": "image",
            "family": "vqgan",
            "input_size": [self.cfg.in_channels, self.cfg.resolution, self.cfg.resolution],
            "value_range": [-1.0, 1.0],
            "token_grid": [g, g],
            "tokens_per_sample": g * g,
            "downsample": self.cfg.downsample,
            "num_codebooks": q.num_codebooks,
            "codebook_size": q.codebook_size,
            "codebook_dim": q.dim,
            "quantizer": q.kind,
            "l2_norm": q.l2_norm,
            "flattening": "row-major (raster) over the token grid",
        }

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output weight (taming's adaptive GAN weight is computed on it)."""
        return self.decoder.conv_out.weight

    def check_input(self, x: torch.Tensor) -> None:
        c, r = self.cfg.in_channels, self.cfg.resolution
        if x.dim() != 4 or x.shape[1] != c or x.shape[-1] % self.cfg.downsample or x.shape[-2] % self.cfg.downsample:
            raise MmtokError(
                f"expected images [B, {c}, H, W] with H and W multiples of {self.cfg.downsample}, got {tuple(x.shape)}",
                hint=f"this tokenizer was trained at {r}x{r}",
            )

    def _quantize(self, x: torch.Tensor):
        z = self.encoder(x)
        return self.quantizer(z.permute(0, 2, 3, 1))

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        q = self._quantize(x)
        recon = self.decoder(q.z_q.permute(0, 3, 1, 2))
        return TokenizerOutput(recon=recon, ids=q.ids, losses=q.losses, stats=q.stats)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> ids [B, H/f, W/f] ([B, H/f, W/f, levels] for a residual quantizer)."""
        self.check_input(x)
        return self._quantize(x).ids

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, h, w] (or [B, h, w, n] for a residual quantizer, n <= levels) -> images [B, 3, h*f, w*f]."""
        return self.decoder(self.quantizer.lookup(ids).permute(0, 3, 1, 2))


def _preset(name: str, **fields) -> None:
    fields["quantizer"] = {"kind": "vq", **fields["quantizer"]}  # explicit: a recipe's other kind replaces it
    PRESETS.register(name, {"family": "vqgan", "preset": name, **fields})


_LLAMAGEN_VQ = dict(ch=128, num_res_blocks=2, z_channels=256, mid_attn=True,
                    quantizer=dict(codebook_size=16384, dim=8, l2_norm=True))
# LlamaGen VQ-16: f16, 16384 codes of dim 8, l2-normalised; attention at the deepest level (16x16 at 256px).
_preset("llamagen_vq16", resolution=256, ch_mult=[1, 1, 2, 2, 4], attn_resolutions=[16], **_LLAMAGEN_VQ)
# LlamaGen VQ-8: f8, same codebook; attention at the deepest level (32x32 at 256px).
_preset("llamagen_vq8", resolution=256, ch_mult=[1, 2, 2, 4], attn_resolutions=[32], **_LLAMAGEN_VQ)
# The classic taming VQGAN f16 with 1024 codes of dim 256 (no l2 normalisation): the "before" picture.
_preset("taming_f16_1024", resolution=256, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16],
        z_channels=256, mid_attn=True, quantizer=dict(codebook_size=1024, dim=256, l2_norm=False))
# Sized for a few CPU minutes at 64x64: f8, 1024 cosine codes of dim 8, no attention. Narrow at full
# resolution (16 channels) and wide at the bottom (128): full-resolution convs dominate CPU time.
_preset("small_f8_1024", resolution=64, ch=16, ch_mult=[1, 2, 4, 8], num_res_blocks=1, attn_resolutions=[],
        z_channels=64, mid_attn=False, quantizer=dict(codebook_size=1024, dim=8, l2_norm=True))
# Tiny presets for tests: a forward/backward in well under a second on CPU.
_preset("test_f4", resolution=16, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8,
        mid_attn=False, quantizer=dict(codebook_size=32, dim=4, l2_norm=True))
_preset("test_f2_attn", resolution=16, ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], z_channels=8,
        mid_attn=True, quantizer=dict(codebook_size=16, dim=8, l2_norm=False))
