"""The token spec: what every tokenizer's `meta` must say about its tokens (torch-free).

Export (tokenizer.json), `mmtok eval`, `mmtok.load` and the LM stage read only these fields, never a family's
internals. A model's `meta` is a plain dict (JSON as it is); `TokenSpec.from_meta` checks it, and keeps every
extra key a family adds (e.g. "semantic", "codebooks") in `extra`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

LAYOUTS = ("single", "residual", "shared_index", "1d_causal", "multi_scale")


@dataclass(frozen=True)
class TokenSpec:
    family: str
    modality: str  # "image", "audio", "motion"
    input_size: tuple[int, ...]  # one sample's input shape, e.g. [C, H, W]
    value_range: tuple[float, float]
    token_grid: tuple[int, ...]  # ids per sample are [*token_grid] (+ [num_codebooks] for layout "residual")
    tokens_per_sample: int
    downsample: int
    num_codebooks: int
    codebook_size: int
    codebook_dim: int
    quantizer: str
    layout: str  # one of LAYOUTS
    l2_norm: bool
    flattening: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: dict) -> "TokenSpec":
        """The spec of a model's `meta`; ValueError naming every missing or malformed field."""
        names = [f.name for f in fields(cls) if f.name != "extra"]
        problems = [f"missing {n!r}" for n in names if n not in meta]
        if not problems:
            ints = ("tokens_per_sample", "downsample", "num_codebooks", "codebook_size", "codebook_dim")
            problems += [f"{n!r} must be a positive int, got {meta[n]!r}" for n in ints
                         if not isinstance(meta[n], int) or isinstance(meta[n], bool) or meta[n] < 1]
            if meta["layout"] not in LAYOUTS:
                problems.append(f"'layout' must be one of {LAYOUTS}, got {meta['layout']!r}")
            grid = meta["token_grid"]
            if not grid or any(not isinstance(g, int) or g < 1 for g in grid):
                problems.append(f"'token_grid' must be positive ints, got {grid!r}")
            else:
                n = 1
                for g in grid:
                    n *= g
                if n != meta["tokens_per_sample"]:
                    problems.append(f"'tokens_per_sample' {meta['tokens_per_sample']} != product of token_grid {grid}")
        if problems:
            raise ValueError(f"token spec of family {meta.get('family', '?')!r}: " + "; ".join(problems))
        values = {n: meta[n] for n in names}
        for n in ("input_size", "value_range", "token_grid"):
            values[n] = tuple(values[n])
        return cls(**values, extra={k: v for k, v in meta.items() if k not in names})

    def to_meta(self) -> dict:
        """The plain dict (lists, not tuples) a model returns as `meta`, extra keys included."""
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "extra"}
        return {**out, **self.extra}
