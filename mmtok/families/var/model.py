"""VAR's VQ-VAE: conv encoder -> 3x3 quant_conv -> multi-scale residual quantizer (mmtok.families.var.quant) ->
3x3 post_quant_conv -> conv decoder.

Contract: images [B, 3, R, R] in [-1, 1] -> ids [B, L] (LongTensor, L = sum(s*s) over the scales, coarse to fine,
row-major within each scale: token spec layout "multi_scale") -> images. `decode_scales(ids, upto)` decodes from the
first `upto` scales only (VAR's coarse-to-fine reconstructions; `mmtok eval` reports PSNR per scale).
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from mmtok.contract import Tokenizer, TokenizerOutput, TokenSpec
from mmtok.errors import MmtokError
from mmtok.families.conv_image import image_grid_meta
from mmtok.families.var.config import VARConfig
from mmtok.families.var.quant import MultiScaleVQ
from mmtok.nn.conv import Decoder, Encoder
from mmtok.quantize.scales import down, map_rows, rows_map, up


class VAR(Tokenizer):
    def __init__(self, cfg: VARConfig, *, active_terms=(), pretrained: bool = True):
        """`active_terms`: the loss terms the recipe weighs (the quantizer computes its entropy only if asked);
        `pretrained` has no effect (nothing pretrained inside)."""
        super().__init__()
        self.cfg = cfg
        common = cfg.conv_kwargs()
        z = cfg.z_channels
        self.encoder = Encoder(in_channels=cfg.in_channels, **common)
        self.quant_conv = nn.Conv2d(z, z, 3, padding=1)
        self.quantizer = MultiScaleVQ(z, cfg.quantizer, entropy_loss="entropy" in active_terms)
        self.post_quant_conv = nn.Conv2d(z, z, 3, padding=1)
        self.decoder = Decoder(out_channels=cfg.in_channels, **common)

    @property
    def spec(self) -> TokenSpec:
        q, g, offsets = self.cfg.quantizer, self.cfg.grid, self.quantizer.offsets
        codes = SimpleNamespace(kind="var", id_layout="multi_scale", codebook_size=q.codebook_size, num_codebooks=1,
                                dim=self.cfg.z_channels, l2_norm=False)
        meta = image_grid_meta(self.cfg, codes)
        meta.update({
            "family": "var", "token_grid": [offsets[-1]], "tokens_per_sample": offsets[-1],
            "flattening": f"coarse to fine, scale by scale (sides {q.scales}), row-major within each scale: the ids "
                          "of scale i (an s_i x s_i map) are ids[:, scale_offsets[i]:scale_offsets[i + 1]]",
            "scales": list(q.scales), "scale_offsets": list(offsets), "final_grid": [g, g],
            "decode": f"f_hat = sum over scales of phi_i(bicubic-upsample(codes of scale i, {g}x{g})), "
                      f"phi_i(h) = {1 - q.phi_ratio:g} h + {q.phi_ratio:g} conv3x3_i(h)",
        })
        return TokenSpec.from_meta(meta)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output weight (taming's adaptive GAN weight is computed on it)."""
        return self.decoder.conv_out.weight

    def check_input(self, x: torch.Tensor) -> None:
        c, r = self.cfg.in_channels, self.cfg.resolution
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, r, r):
            raise MmtokError(f"expected images [B, {c}, {r}, {r}], got {tuple(x.shape)}",
                             hint=f"a multi-scale tokenizer's scales end at its {self.cfg.grid}x{self.cfg.grid} grid: "
                             f"resize to {r}x{r}")

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        f_hat, ids, losses, stats = self.quantizer(self.quant_conv(self.encoder(x)))
        recon = self.decoder(self.post_quant_conv(f_hat))
        return TokenizerOutput(recon=recon, ids=ids, losses=losses, stats=stats)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, R, R] in [-1, 1] -> ids [B, L]."""
        self.check_input(x)
        return self.quantizer(self.quant_conv(self.encoder(x)))[1]

    def _check_ids(self, ids: torch.Tensor) -> None:
        n = self.quantizer.offsets[-1]
        if ids.dim() != 2 or ids.shape[1] != n:
            raise MmtokError(f"expected ids [B, {n}] (every scale, coarse to fine), got {tuple(ids.shape)}")

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, L] -> images [B, 3, R, R]."""
        return self.decode_scales(ids)

    @torch.no_grad()
    def decode_scales(self, ids: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Images decoded from the first `upto` scales of ids [B, L] (all by default)."""
        self._check_ids(ids)
        return self.decoder(self.post_quant_conv(self.quantizer.vectors(ids, upto)))

    @torch.no_grad()
    def code_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, L, z] : each token's own code (the token probe mean-pools them)."""
        return self.quantizer.lookup_rows(ids)

    def graph_modules(self) -> tuple[nn.Module, nn.Module]:
        """Export-safe (encode, decode) modules: the eval forward's ids and the decode path, with no data-dependent
        control flow (the scales are fixed)."""
        return EncodeGraph(self), DecodeGraph(self)


class EncodeGraph(nn.Module):
    """Images -> ids [B, L] as the eval forward computes them (`nearest`'s torch path op for op: one addmm of
    ||c||^2 - 2 x.c per scale, min, ties to the lowest index), export-safe."""

    def __init__(self, t: VAR):
        super().__init__()
        self.t = t

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        q = self.t.quantizer
        f = self.t.quant_conv(self.t.encoder(images)).float()
        b, g = f.shape[0], q.grid
        codes = q.embedding.float()
        c_sq = (codes * codes).sum(1).unsqueeze(0)
        rest, out = f, []
        for i, s in enumerate(q.scales):
            ids = torch.addmm(c_sq, map_rows(down(rest, s)), codes.T, beta=1.0, alpha=-2.0).min(dim=1).indices
            h = q.phi(i, up(rows_map(F.embedding(ids, codes), b, s), g))
            rest = rest - h
            out.append(ids.reshape(b, s * s))
        return torch.cat(out, dim=1)


class DecodeGraph(nn.Module):
    """Ids [B, L] -> images [B, 3, R, R] clamped to [-1, 1], as the bundle's decoder.pt2."""

    def __init__(self, t: VAR):
        super().__init__()
        self.t = t

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.t.decoder(self.t.post_quant_conv(self.t.quantizer.vectors(ids))).clamp(-1, 1)
