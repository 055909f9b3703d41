"""The contract every tokenizer family and modality follows, in one leaf module.

train/, families/, modalities/, evaluation/, export/ and lm/ import this module; it imports none of them (only
torch and the standard library). It holds:

- `TokenSpec`: what a tokenizer's tokens are (becomes tokenizer.json), with the one implementation of each id
  layout (`single`, `residual`, `shared_index`, `multi_scale`, `1d_causal`): the ids' shape, their flat order
  and its description. Export, `mmtok tokenize` and the LM stage ask the spec; they never compare layout names.
- `Tokenizer`: the base of every family's model (forward -> `TokenizerOutput`, encode, decode, `spec`,
  `graph_modules`).
- `TokenizerOutput`: what forward returns.
- `Objective`, `Adversary`, `MetricSuite`: what the one Lightning task (mmtok.train.task) and `mmtok eval` call.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from math import prod
from pathlib import Path
from typing import Any

import torch
from torch import nn

LAYOUTS = ("single", "residual", "shared_index", "1d_causal", "multi_scale")
_OPTIONAL = ("scales", "scale_offsets")  # TokenSpec fields that only some layouts carry


# ----------------------------------------------------------------------------------------------- the token spec


@dataclass(frozen=True)
class TokenSpec:
    """One tokenizer's tokens. Layouts:

    single        ids [B, *token_grid], one codebook (`token_grid` [h, w] for images, [T'] for sequences)
    residual      ids [B, *token_grid, num_codebooks]: residual levels innermost, coarse to fine
    shared_index  ids [B, *token_grid]: one id indexes several codebooks (e.g. TokenFlow's semantic + pixel pair)
    1d_causal     ids [B, n]: a 1-D sequence, position i depends only on positions <= i
    multi_scale   ids [B, sum(s * s)]: scale by scale, coarse to fine (`scales`), each s x s map row-major;
                  scale j is ids[:, scale_offsets[j]:scale_offsets[j + 1]]
    """

    family: str
    modality: str  # a module under mmtok/modalities/
    input_size: tuple[int, ...]  # one sample's input shape, e.g. [C, H, W]
    value_range: tuple[float | None, float | None]  # None: unbounded on that side
    token_grid: tuple[int, ...]
    tokens_per_sample: int
    downsample: int
    num_codebooks: int
    codebook_size: int
    codebook_dim: int
    quantizer: str
    layout: str  # one of LAYOUTS
    l2_norm: bool
    flattening: str
    scales: tuple[int, ...] | None = None  # multi_scale: the sides, coarse to fine
    scale_offsets: tuple[int, ...] | None = None  # multi_scale: where each scale starts (len(scales) + 1 entries)
    extra: dict[str, Any] = field(default_factory=dict)  # family / modality keys (e.g. "semantic", "fps")

    # ------------------------------------------------------------------------------------------- from / to JSON

    @classmethod
    def from_meta(cls, meta: dict) -> "TokenSpec":
        """The spec of a plain dict (a model's fields or a tokenizer.json); ValueError naming every missing or
        malformed field. Keys that are not fields are kept in `extra`."""
        required = [f.name for f in fields(cls) if f.name != "extra" and f.name not in _OPTIONAL]
        problems = [f"missing {n!r}" for n in required if n not in meta]
        if not problems:
            problems = _field_problems(meta)
        if problems:
            raise ValueError(f"token spec of family {meta.get('family', '?')!r}: " + "; ".join(problems))
        values = {n: meta[n] for n in required}
        for n in ("input_size", "value_range", "token_grid"):
            values[n] = tuple(values[n])
        for n in _OPTIONAL:
            if meta.get(n) is not None:
                values[n] = tuple(int(v) for v in meta[n])
        names = set(required) | set(_OPTIONAL)
        return cls(**values, extra={k: v for k, v in meta.items() if k not in names})

    def to_meta(self) -> dict:
        """The plain dict (lists, not tuples; optional fields only when set) that tokenizer.json starts from."""
        out = {}
        for k, v in asdict(self).items():
            if k == "extra" or (k in _OPTIONAL and v is None):
                continue
            out[k] = list(v) if isinstance(v, tuple) else v
        return {**out, **self.extra}

    def __getitem__(self, key: str) -> Any:
        """spec["codebook_size"] or spec["fps"]: a field or an extra key, as in the JSON (lists, not tuples)."""
        meta = self.to_meta()
        if key not in meta:
            raise KeyError(key)
        return meta[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    # ------------------------------------------------------------------------------------------- the id layout

    @property
    def levels(self) -> int:
        """Residual levels in a trailing id dimension (0 when the layout has none)."""
        return self.num_codebooks if self.layout == "residual" else 0

    @property
    def multi_scale(self) -> bool:
        """True when ids are several token maps of growing side, coarse to fine (`scales`)."""
        return self.layout == "multi_scale"

    @property
    def ids_shape(self) -> tuple[int, ...]:
        """One sample's ids: token_grid, plus [levels] for a residual layout."""
        return self.token_grid + ((self.levels,) if self.levels else ())

    @property
    def ids_per_sample(self) -> int:
        """How many ids one sample has in all (its flat sequence's length)."""
        return prod(self.ids_shape)

    def flatten(self, ids):
        """[B, *ids_shape] (tensor or array) -> [B, ids_per_sample] in the layout's order (`order`)."""
        return ids.reshape(ids.shape[0], self.ids_per_sample)

    def unflatten(self, flat, levels: int | None = None):
        """[B, ids_per_sample] (or [B, prod(token_grid) * n] for the first n residual levels) -> [B, *ids_shape]."""
        n = self.levels if levels is None else levels
        return flat.reshape(flat.shape[0], *self.token_grid, *((n,) if self.levels else ()))

    def scale_slices(self) -> list[slice]:
        """multi_scale: the slice of the flat ids that holds each scale, coarse to fine ([] for other layouts)."""
        if not self.multi_scale:
            return []
        o = self.scale_offsets
        return [slice(o[j], o[j + 1]) for j in range(len(o) - 1)]

    @property
    def order(self) -> str:
        """The flat order of ids, in words (tokenizer.json "ids.layout")."""
        if self.multi_scale:
            text = (f"scale by scale, coarse to fine (scales {list(self.scales)}, each s x s row-major; scale j "
                    "starts at scale_offsets[j]); one shared id per position")
        elif len(self.token_grid) == 1:
            text = "in sequence order (1-D tokens" + ("; position i depends only on positions <= i for layout "
                                                     "1d_causal)" if self.layout == "1d_causal" else ")")
        else:
            text = ("row-major over the grid (raster order: left to right, then top to bottom); "
                    "flat index = row * width + col")
        return text + ("; residual levels innermost (coarse to fine)" if self.levels else "")


def _field_problems(meta: dict) -> list[str]:
    problems = []
    ints = ("tokens_per_sample", "downsample", "num_codebooks", "codebook_size", "codebook_dim")
    problems += [f"{n!r} must be a positive int, got {meta[n]!r}" for n in ints
                 if not isinstance(meta[n], int) or isinstance(meta[n], bool) or meta[n] < 1]
    if meta["layout"] not in LAYOUTS:
        problems.append(f"'layout' must be one of {LAYOUTS}, got {meta['layout']!r}")
    grid = meta["token_grid"]
    if not grid or any(not isinstance(g, int) or g < 1 for g in grid):
        problems.append(f"'token_grid' must be positive ints, got {grid!r}")
    elif prod(grid) != meta["tokens_per_sample"]:
        problems.append(f"'tokens_per_sample' {meta['tokens_per_sample']} != product of token_grid {grid}")
    if meta["layout"] == "multi_scale":
        scales, offsets = meta.get("scales"), meta.get("scale_offsets")
        if not scales or not offsets or len(offsets) != len(scales) + 1:
            problems.append("layout 'multi_scale' needs 'scales' and 'scale_offsets' (one more entry than scales)")
        elif [offsets[j + 1] - offsets[j] for j in range(len(scales))] != [s * s for s in scales] or offsets[0]:
            problems.append(f"'scale_offsets' {offsets} do not start at 0 and step by s * s of scales {scales}")
        elif offsets[-1] != meta["tokens_per_sample"]:
            problems.append(f"the scales hold {offsets[-1]} ids, tokens_per_sample is {meta['tokens_per_sample']}")
    return problems


# ----------------------------------------------------------------------------------------------- the model


@dataclass
class TokenizerOutput:
    """What a tokenizer's forward returns.

    recon:  the reconstruction, same shape and value range as the input.
    ids:    LongTensor of token ids, [B, *spec.ids_shape].
    losses: unweighted named loss terms from the quantizer (and any family-specific term).
    stats:  detached scalars for logging (codebook usage, perplexity, restarts).
    """

    recon: torch.Tensor
    ids: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Tokenizer(nn.Module, ABC):
    """Base of every family's model. Built as `Model(model_cfg, active_terms=(), pretrained=True)`.

    A family implements `spec` (its TokenSpec), `forward(x) -> TokenizerOutput`, `encode(x) -> ids`,
    `decode(ids) -> x` and `graph_modules() -> (encode, decode)`: eval-only modules without data-dependent
    control flow that torch.export can trace (mmtok.export.graphs checks them against encode / decode)."""

    @property
    @abstractmethod
    def spec(self) -> TokenSpec: ...

    @property
    def meta(self) -> dict:
        """`spec` as the plain dict tokenizer.json starts from."""
        return self.spec.to_meta()

    @abstractmethod
    def forward(self, x: torch.Tensor) -> TokenizerOutput: ...

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def decode(self, ids: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def graph_modules(self) -> tuple[nn.Module, nn.Module]: ...

    @torch.no_grad()
    def code_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """The quantised vectors that `ids` [B, *ids_shape] stand for, as the decoder reads them: [B, N, D], one row
        per token position (residual levels summed). This default looks the ids up in `self.quantizer`; a family
        whose codes are held elsewhere (or split in parts) overrides it. The token probe (`mmtok eval --probe`)
        mean-pools these rows."""
        quantizer = getattr(self, "quantizer", None)
        vectors = quantizer.lookup(ids) if quantizer is not None else None
        if not isinstance(vectors, torch.Tensor):
            from mmtok.errors import MmtokError

            raise MmtokError(f"{type(self).__name__}: no single quantizer to look code vectors up in",
                             hint="the family overrides Tokenizer.code_vectors (see mmtok/contract.py)")
        return vectors.reshape(ids.shape[0], -1, vectors.shape[-1])


# ----------------------------------------------------------------------------------------------- training


class MetricSuite(nn.Module, ABC):
    """Validation / evaluation metrics over a pass, synced across ranks (torchmetrics states).

    `update(x, out)` per batch; `compute()` -> {name: float-like} without a "val/" prefix; `names` lists them."""

    names: tuple[str, ...] = ()

    @abstractmethod
    def update(self, x: torch.Tensor, out) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, torch.Tensor]: ...


class Adversary(nn.Module, ABC):
    """The discriminator side: `phase(step)` says whether D trains and whether G sees its loss;
    `g_terms(x, recon, rec_loss, model)` are the generator's adversarial terms; `d_terms(x, recon)` the
    discriminator's (recon detached), with `d_loss(terms)` their weighted sum."""

    lr: float | None = None  # its optimizer's learning rate (None: optim.lr)

    @abstractmethod
    def phase(self, step: int) -> tuple[bool, bool]: ...

    @abstractmethod
    def g_terms(self, x, recon, rec_loss, model) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(unweighted terms, scales): term k enters the loss as weight(k) * scales.get(k, 1) * terms[k] (e.g.
        taming's adaptive GAN weight), and weight(k) * scale is logged as train/k_weight."""

    @abstractmethod
    def d_terms(self, x, recon) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def d_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor: ...


class Objective(nn.Module, ABC):
    """What a family trains for. `inputs(batch)` is the model's input, `terms(x, out)` its unweighted loss terms
    (only those whose weight is > 0), `metrics()` the validation suite (the same one `mmtok eval` uses),
    `write_samples` a picture or clip. Its own modules are frozen helpers (LPIPS, teachers), rebuilt from their
    weights files and never saved in checkpoints; `make_adversary()` gives the trainable discriminator side (or
    None), which the task owns, saves and optimises with its own optimizer. `recipe.loss.weight(name)` is the
    weight of a term."""

    def __init__(self, recipe):
        super().__init__()
        self.recipe = recipe

    def active(self, name: str) -> bool:
        return self.recipe.loss.weight(name) > 0

    @abstractmethod
    def inputs(self, batch: dict) -> torch.Tensor:
        """The model's input from a loader batch ({modality: tensor, "skipped": ..., ...})."""

    @abstractmethod
    def terms(self, x: torch.Tensor, out) -> dict[str, torch.Tensor]:
        """Unweighted reconstruction / family terms (not the model's own `out.losses`)."""

    def make_adversary(self) -> Adversary | None:
        """The trainable adversary for this recipe, or None (the task owns, optimises and saves it)."""
        return None

    @abstractmethod
    def metrics(self) -> MetricSuite:
        """A fresh validation suite (the same class `mmtok eval` uses)."""

    @abstractmethod
    def write_samples(self, x: torch.Tensor, out, path: Path) -> None:
        """Write a picture (or clip) of inputs and reconstructions to `path`."""
