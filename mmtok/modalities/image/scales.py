"""Per-scale evaluation of multi-scale image tokenizers (token spec layout "multi_scale", a model with
`decode_scales(ids, upto)`, e.g. the `var` family): what the first s scales reconstruct, and how each scale uses the
codebook.

    by_scales[str(side)] = {"scales": s, "tokens": tokens of scales 1..s, "psnr": dB of decode_scales(ids, s),
                            "usage_pct", "used_codes", "perplexity": this scale's own ids, "tokens_in_scale",
                            "possible_codes": min(codebook size, s^2 x images), "usage_of_possible_pct",
                            "uniform_codes": K (1 - (1 - 1/K)^(s^2 x images)), "usage_of_uniform_pct"}

PSNR follows the evaluation's protocol (reconstructions clamped and quantised to 8 bits, images in [0, 1]). A scale's
usage is bounded by its tokens: a 1 x 1 scale over N images can use at most N codes, so each scale's usage is also given
against what it could use at most (min(codebook size, its tokens over the set)) and against the distinct codes that
as many tokens drawn uniformly at random from the codebook would hit on average (K (1 - (1 - 1/K)^n) for n tokens and
K codes: 63% of min(K, n) when n = K). The first bound needs every token on a code of its own; the second is what a
scale that uses its codebook evenly reaches, and a scale more even than a random draw passes 100%. The picture
(scales.png) shows the first images: originals in the top row, then the reconstruction from the first 1, 2, ... scales.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

PICTURE_IMAGES = 4


def has_scales(model) -> bool:
    """True for a multi-scale tokenizer that can decode from its first scales."""
    return bool(getattr(model.spec, "multi_scale", False)) and hasattr(model, "decode_scales")


class ScaleMetrics:
    """The per-scale metrics over one evaluation pass (every rank updates; compute() syncs the metric states)."""

    def __init__(self, model, device):
        from mmtok.metrics import PSNR, CodebookUsage

        spec = model.spec
        self.model, self.scales, self.offsets = model, list(spec.scales), list(spec.scale_offsets)
        self.psnr = [PSNR().to(device) for _ in self.scales]
        self.usage = [CodebookUsage(spec.codebook_size).to(device) for _ in self.scales]
        self.picture: list[torch.Tensor] = []  # [S + 1, n, 3, H, W]: originals, then each prefix

    def update(self, x: torch.Tensor, ids: torch.Tensor, keep_picture: bool) -> None:
        from mmtok.modalities.image.objective import to_8bit_levels

        rows = [x[:PICTURE_IMAGES].cpu()] if keep_picture else []
        for k in range(len(self.scales)):
            recon = to_8bit_levels(self.model.decode_scales(ids, k + 1).float())
            self.psnr[k].update((recon + 1) / 2, (x.float() + 1) / 2)
            self.usage[k].update(ids[:, self.offsets[k]:self.offsets[k + 1]])
            if keep_picture:
                rows.append(recon[:PICTURE_IMAGES].cpu())
        if keep_picture:
            self.picture.append(torch.stack(rows))

    def compute(self) -> dict:
        out = {}
        for k, side in enumerate(self.scales):
            u = self.usage[k].compute()
            k_codes, n = self.usage[k].codebook_size, side * side * int(u["num_samples"])
            possible, uniform = min(k_codes, n), k_codes * (1 - (1 - 1 / k_codes) ** n)
            out[str(side)] = {"scales": k + 1, "tokens": self.offsets[k + 1], "tokens_in_scale": side * side,
                              "psnr": float(self.psnr[k].compute()), "usage_pct": float(u["usage_pct"]),
                              "used_codes": int(u["used_codes"]), "perplexity": float(u["perplexity"]),
                              "possible_codes": possible,
                              "usage_of_possible_pct": 100.0 * int(u["used_codes"]) / max(possible, 1),
                              "uniform_codes": uniform,
                              "usage_of_uniform_pct": 100.0 * int(u["used_codes"]) / max(uniform, 1e-9)}
        return out

    def write_picture(self, path: Path) -> bool:
        """scales.png: originals, then the reconstructions from the first 1..S scales, one row each."""
        if not self.picture:
            return False
        from PIL import Image, ImageDraw

        from mmtok.files import save_image
        from mmtok.modalities.image.grid import font, to_uint8, upscale_factor

        rows = torch.cat(self.picture, dim=1)[:, :PICTURE_IMAGES]  # [S + 1, n, 3, H, W]
        n, h, w = rows.shape[1], rows.shape[-2], rows.shape[-1]
        f = upscale_factor(h, w, 96)
        ch, cw, gap, left = h * f, w * f, 4, 150
        labels = ["original"] + [f"{k + 1} scale{'s' if k else ''} ({self.offsets[k + 1]} tokens)"
                                 for k in range(len(self.scales))]
        img = Image.new("RGB", (left + n * (cw + gap) + gap, len(labels) * (ch + gap) + gap), "white")
        draw = ImageDraw.Draw(img)
        for r, label in enumerate(labels):
            y = gap + r * (ch + gap)
            draw.text((gap, y + ch // 2 - 6), label, fill=(0, 0, 0), font=font(12))
            cells = to_uint8(rows[r])
            for i in range(n):
                cell = Image.fromarray(np.ascontiguousarray(cells[i])).resize((cw, ch), Image.NEAREST)
                img.paste(cell, (left + gap + i * (cw + gap), y))
        save_image(img, path)
        return True


SCALE_COLUMNS = ("scales used", "side", "tokens", "PSNR (dB)", "codes used by this scale (% of codebook)",
                 "% of what it could use", "% of a uniform draw", "perplexity")


def scale_cells(side: str, r: dict) -> list[str]:
    """One row of the per-scale table (SCALE_COLUMNS) from metrics["by_scales"][side]."""
    return [str(r["scales"]), f"{side}x{side}", str(r["tokens"]), f"{r['psnr']:.2f}",
            f"{r['used_codes']} ({r['usage_pct']:.1f}%)", f"{r['usage_of_possible_pct']:.1f}% of {r['possible_codes']}",
            f"{r['usage_of_uniform_pct']:.1f}% of {r['uniform_codes']:.0f}", f"{r['perplexity']:.1f}"]


def scales_markdown(by_scales: dict) -> list[str]:
    """The per-scale table (report.md, model cards)."""
    lines = ["| " + " | ".join(SCALE_COLUMNS) + " |", "|" + "---|" * len(SCALE_COLUMNS)]
    return lines + ["| " + " | ".join(scale_cells(side, r)) + " |" for side, r in by_scales.items()]
