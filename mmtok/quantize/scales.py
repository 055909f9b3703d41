"""Token maps at several scales (VAR-style multi-scale residual quantizers: mmtok.families.var.quant and TokenFlow's
mmtok.families.tokenflow.multiscale): area-downsampling a residual to an s x s map, bicubic-upsampling codes back to
the full grid, and maps <-> rows for the nearest-code search."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def down(r: torch.Tensor, s: int) -> torch.Tensor:
    """Maps [B, C, g, g] area-downsampled to [B, C, s, s] (as they are when s == g)."""
    return r if r.shape[-1] == s else F.interpolate(r, size=(s, s), mode="area")


def up(q: torch.Tensor, g: int) -> torch.Tensor:
    """Maps [B, C, s, s] bicubic-upsampled to [B, C, g, g] (as they are when s == g)."""
    return q if q.shape[-1] == g else F.interpolate(q, size=(g, g), mode="bicubic", align_corners=False)


def map_rows(m: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> rows [B * h * w, C], row-major over the map, batch first."""
    return m.permute(0, 2, 3, 1).reshape(-1, m.shape[1])


def rows_map(rows: torch.Tensor, b: int, s: int) -> torch.Tensor:
    """rows [B * s * s, C] -> [B, C, s, s] (inverse of map_rows)."""
    return rows.reshape(b, s, s, -1).permute(0, 3, 1, 2)
