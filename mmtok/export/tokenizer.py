"""What `mmtok.load(bundle)` returns: a `BaseTokenizer` subclass chosen by the bundle's modality (its
`Modality.tokenizer`, e.g. mmtok.modalities.image.tokenizer.ImageTokenizer), with every input checked.

    tok = mmtok.load("bundles/vq16")
    ids = tok.encode(["cat.jpg", pil_image])   # LongTensor [B, h, w], row-major grid, ids in [0, K)
    images = tok.decode(ids)                  # float32 [B, 3, R, R] in [-1, 1]
    tok.meta                                  # tokenizer.json: grid, codebook, special tokens, normalisation
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmtok.contract import TokenSpec
from mmtok.errors import MmtokError

RANGE_TOLERANCE = 1e-3  # float slack on the [-1, 1] check (e.g. values read back from fp16)

class BaseTokenizer:
    """A loaded bundle: `encode`, `decode`, `meta`, `to(device)`. Wraps the model (`.model`), which stays in
    eval mode; all calls run without gradients. A modality's subclass implements `preprocess` (any input form it
    accepts -> the model's input tensor on this device, one-line MmtokError for bad input) and `check_ids`
    (ids in any form it accepts -> int64 on this device), and may override `postprocess` (the model's decode
    output -> what `decode` returns) or `encode` (extra options)."""

    def __init__(self, model: nn.Module, meta: dict, config: dict, path: Path | None = None):
        self.model = model.eval()
        self.meta = meta
        self.config = config
        self.path = path
        self.spec = TokenSpec.from_meta(meta)
        self.token_grid = self.spec.token_grid
        self.codebook_size = self.spec.codebook_size
        self.levels = self.spec.levels  # a residual layout's ids carry a trailing level dimension

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> "BaseTokenizer":
        self.model.to(device)
        return self

    def __repr__(self) -> str:
        g = "x".join(str(s) for s in self.token_grid)
        size = "x".join(str(s) for s in self.meta["input_size"])
        return (f"{type(self).__name__}({self.meta.get('family', '?')}, {self.meta['modality']} {size} -> {g} tokens, "
                f"{self.codebook_size} codes, path={str(self.path) if self.path else None!r})")

    def preprocess(self, x: Any) -> torch.Tensor:
        raise NotImplementedError

    def check_ids(self, ids: Any) -> torch.Tensor:
        raise NotImplementedError

    def postprocess(self, out: torch.Tensor) -> torch.Tensor:
        return out.float()

    @torch.no_grad()
    def encode(self, x: Any, **options) -> torch.Tensor:
        """Token ids (int64) for `x` in any form `preprocess` takes (`options` go to `preprocess`)."""
        return self.model.encode(self.preprocess(x, **options))

    @torch.no_grad()
    def decode(self, ids: Any) -> torch.Tensor:
        """The model's reconstruction of ids in any form `check_ids` takes, through `postprocess`."""
        return self.postprocess(self.model.decode(self.check_ids(ids)))

    def as_id_tensor(self, ids: Any) -> torch.Tensor:
        """ids from a tensor, array or nested list as an integer tensor; MmtokError for floats and other types."""
        if isinstance(ids, (list, tuple)):
            ids = np.asarray(ids)
        if isinstance(ids, np.ndarray):
            if ids.dtype.kind not in "iu":
                raise MmtokError(f"decode got a {ids.dtype} array; token ids must be integers")
            ids = torch.from_numpy(ids.astype(np.int64))
        if not isinstance(ids, torch.Tensor):
            raise MmtokError(f"decode cannot take a {type(ids).__name__}", hint="pass a LongTensor of ids")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise MmtokError(f"decode got a {str(ids.dtype).replace('torch.', '')} tensor; token ids must be integers")
        return ids

    def check_range(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (int64) on this device; MmtokError when any lies outside [0, codebook_size)."""
        ids = ids.long()
        k = self.codebook_size
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= k:
                raise MmtokError(f"decode got ids in [{lo}, {hi}]; this codebook's ids lie in [0, {k})",
                                 hint="strip special tokens and vocabulary offsets before decoding")
        return ids.to(self.device)
