"""VQGAN: a conv encoder, a vector quantizer in a low-dimensional code space, and a conv decoder.

Contract: images [B, 3, R, R] in [-1, 1] -> ids [B, R/f, R/f] (LongTensor, row-major grid) -> images.
"""
from __future__ import annotations

import torch
from torch import nn

from mmtok.contract import Tokenizer, TokenizerOutput, TokenSpec
from mmtok.errors import MmtokError
from mmtok.families.conv_image import image_grid_meta
from mmtok.families.vqgan.config import VQGANConfig
from mmtok.nn.conv import Decoder, Encoder, QuantizedDecodeGraph
from mmtok.quantize import build_quantizer


class VQGAN(Tokenizer):
    def __init__(self, cfg: VQGANConfig, *, active_terms=(), pretrained: bool = True):
        """`active_terms`: the loss terms the recipe weighs (the quantizer computes its entropy only if asked);
        `pretrained` has no effect (nothing pretrained inside)."""
        super().__init__()
        if cfg.resolution % cfg.downsample:
            raise MmtokError(
                f"image size {cfg.resolution} is not divisible by the downsample factor {cfg.downsample}",
                hint=f"use a resolution that is a multiple of {cfg.downsample} (--set model.resolution=...)",
            )
        self.cfg = cfg
        common = cfg.conv_kwargs()
        self.encoder = Encoder(in_channels=cfg.in_channels, **common)
        self.quantizer = build_quantizer(cfg.z_channels, cfg.quantizer, entropy_loss="entropy" in active_terms)
        self.decoder = Decoder(out_channels=cfg.in_channels, **common)

    @property
    def spec(self) -> TokenSpec:
        """The token spec."""
        return TokenSpec.from_meta({"family": "vqgan", **image_grid_meta(self.cfg, self.cfg.quantizer)})

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

    def graph_modules(self) -> tuple[nn.Module, nn.Module]:
        """Export-safe (encode, decode) modules for torch.export / ONNX (mmtok.export.graphs)."""
        return EncodeGraph(self), QuantizedDecodeGraph(self.quantizer, self.decoder)


class EncodeGraph(nn.Module):
    """Images [B, C, R, R] in [-1, 1] -> ids [B, R/f, R/f] (int64; [..., levels] for a residual quantizer),
    the eager `VQGAN.encode` in eval mode through the quantizer's export-safe `export_ids`."""

    def __init__(self, tokenizer: VQGAN):
        super().__init__()
        self.encoder, self.quantizer = tokenizer.encoder, tokenizer.quantizer
        self.input_dim = int(tokenizer.quantizer.input_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = self.encoder(images)
        b, _, h, w = z.shape
        ids = self.quantizer.export_ids(z.permute(0, 2, 3, 1).reshape(-1, self.input_dim).float())
        return ids.reshape(b, h, w, *ids.shape[1:])
