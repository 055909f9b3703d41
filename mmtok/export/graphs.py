"""torch.export graphs of a VQGAN: `encoder.pt2` (images -> ids) and `decoder.pt2` (ids -> images).

Both graphs have a dynamic batch dimension and fixed spatial size (the bundle's resolution), run in fp32,
and load with plain torch (no mmtok import):

    enc = torch.export.load("encoder.pt2").module()   # [B, 3, R, R] float32 in [-1, 1] -> [B, h, w] int64
    dec = torch.export.load("decoder.pt2").module()   # [B, h, w] int64 in [0, K) -> [B, 3, R, R] in [-1, 1]

The quantizer's training forward has data-dependent parts (bincount statistics, the k-means flag, Python
ints from tensors), so the graphs are made from eval-only wrappers that repeat the eager inference path
op for op: encoder -> proj_in -> l2-normalise -> ||c||^2 - 2 x.c (one addmm) -> min over codes (ties to the
lowest index), and embedding -> proj_out -> decoder -> clamp to [-1, 1]. `check_graphs` verifies that they
give the eager model's ids exactly and its pixels to 1e-5.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_FILE = "encoder.pt2"
DECODER_FILE = "decoder.pt2"
MAX_BATCH = 4096


def _codes(codebook: torch.Tensor, l2_norm: bool) -> torch.Tensor:
    c = codebook.float()
    return F.normalize(c, dim=1) if l2_norm else c


def _linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, layer.weight.float(), None if layer.bias is None else layer.bias.float())
    return x


class EncodeGraph(nn.Module):
    """Images [B, C, R, R] in [-1, 1] -> ids [B, R/f, R/f] (int64), the eager `VQGAN.encode` in eval mode."""

    def __init__(self, tokenizer: nn.Module):
        super().__init__()
        q = tokenizer.quantizer
        self.encoder = tokenizer.encoder
        self.proj_in = q.proj_in
        self.codebook = q.codebook  # the same tensor (parameter or buffer) as the model's
        self.l2_norm = bool(q.cfg.l2_norm)
        self.input_dim = int(q.input_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = self.encoder(images)
        b, _, h, w = z.shape
        x = _linear(self.proj_in, z.permute(0, 2, 3, 1).reshape(-1, self.input_dim).float())
        if self.l2_norm:
            x = F.normalize(x, dim=1)
        c = _codes(self.codebook, self.l2_norm)
        # the torch lookup path's key: ||c||^2 - 2 x.c (||x||^2 is constant per row), argmin with ties low
        d = torch.addmm((c * c).sum(1).unsqueeze(0), x, c.T, beta=1.0, alpha=-2.0)
        return d.min(dim=1).indices.reshape(b, h, w)


class DecodeGraph(nn.Module):
    """Ids [B, h, w] (int64 in [0, K)) -> images [B, C, h*f, w*f] clamped to [-1, 1]."""

    def __init__(self, tokenizer: nn.Module):
        super().__init__()
        q = tokenizer.quantizer
        self.decoder = tokenizer.decoder
        self.proj_out = q.proj_out
        self.codebook = q.codebook
        self.l2_norm = bool(q.cfg.l2_norm)
        self.input_dim = int(q.input_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, h, w = ids.shape
        q = _linear(self.proj_out, F.embedding(ids.reshape(-1), _codes(self.codebook, self.l2_norm)))
        z = q.reshape(b, h, w, self.input_dim).permute(0, 3, 1, 2)
        return self.decoder(z).clamp(-1.0, 1.0)


def export_graphs(tokenizer: nn.Module, out_dir: str | Path) -> dict[str, Path]:
    """Write encoder.pt2 and decoder.pt2 for an eval-mode VQGAN on CPU into `out_dir`; returns their paths."""
    cfg = tokenizer.cfg
    r, g = cfg.resolution, cfg.resolution // cfg.downsample
    tokenizer = tokenizer.cpu().eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    images = torch.zeros(2, cfg.in_channels, r, r)
    ids = torch.zeros(2, g, g, dtype=torch.long)
    out_dir = Path(out_dir)
    with torch.no_grad():
        enc = torch.export.export(EncodeGraph(tokenizer).eval(), (images,), dynamic_shapes={"images": {0: batch}})
        dec = torch.export.export(DecodeGraph(tokenizer).eval(), (ids,), dynamic_shapes={"ids": {0: batch}})
    paths = {"encoder": out_dir / ENCODER_FILE, "decoder": out_dir / DECODER_FILE}
    torch.export.save(enc, str(paths["encoder"]))
    torch.export.save(dec, str(paths["decoder"]))
    return paths


def check_graphs(tokenizer: nn.Module, out_dir: str | Path, images: torch.Tensor) -> None:
    """Reload the saved graphs and compare them with the eager model on `images` ([B, C, R, R] in [-1, 1]):
    ids must be equal and pixels within 1e-5. Raises RuntimeError naming the difference."""
    out_dir = Path(out_dir)
    enc = torch.export.load(str(out_dir / ENCODER_FILE)).module()
    dec = torch.export.load(str(out_dir / DECODER_FILE)).module()
    with torch.no_grad():
        want_ids = tokenizer.encode(images)
        got_ids = enc(images)
        if not torch.equal(got_ids, want_ids):
            n = int((got_ids != want_ids).sum())
            raise RuntimeError(f"encoder.pt2 gives different ids than the eager model at {n} positions")
        want = tokenizer.decode(want_ids).clamp(-1, 1)
        got = dec(want_ids)
        err = float((got - want).abs().max())
        if err > 1e-5:
            raise RuntimeError(f"decoder.pt2 differs from the eager model by up to {err:.3g}")
