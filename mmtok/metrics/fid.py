"""Frechet Inception Distance (rFID) as a rank-syncing torchmetrics Metric.

Feature extractor: the FID Inception-v3 (pool3, 2048-d; the network of pytorch-fid / torch-fidelity /
clean-fid), read from the TorchScript file resolved by `mmtok.assets` ("fid-inception"). Images enter in
[-1, 1], any size, and are resized to 299 x 299 with bilinear interpolation (align_corners=False, no
antialias) as pytorch-fid does; features leave as float64.

Statistics are kept as float64 sums (sum of features, sum of outer products, count) for the real and the
fake side, all reduced with "sum" across ranks, so a DDP evaluation equals a single-process one.

Frechet distance, in float64 and without a general matrix square root (scipy.linalg.sqrtm):

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))

S1 S2 is similar to the symmetric PSD matrix M = sqrt(S1) S2 sqrt(S1), so tr(sqrt(S1 S2)) =
sum_i sqrt(lambda_i(M)). With A = sqrt(S1) sqrt(S2) we have M = A A^T, so the same sum is the sum of the
singular values of A (its nuclear norm), which is what we compute: sqrt(S1), sqrt(S2) from
`torch.linalg.eigh` (eigenvalues clamped at 0), then `torch.linalg.svdvals(A)`. Mathematically this equals
`eigvalsh(M).clamp(0).sqrt().sum()`, but squaring into M costs half the digits: an eigenvalue of M that is
0 in exact arithmetic comes out as +-1e-16 * |M|, and its square root as 1e-8 * |S|. With fewer images than
features (rank-deficient covariances) the eigvalsh route gave FID(x, x) = -7e-5 at 2048-d / 500 images
and -7e-3 with features 10x larger; the singular-value route gives ~1e-11. Only symmetric eigensolvers and
an SVD are used, so the result is real by construction (pytorch-fid drops an imaginary part of sqrtm).
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from mmtok import assets
from mmtok.errors import AssetError
from mmtok.files import atomic_write

INCEPTION_SIZE = 299
INCEPTION_FEATURES = 2048
META_KEY = "mmtok_meta"  # where save_stats keeps the statistics' metadata


class InceptionFeatures(nn.Module):
    """FID Inception-v3 pool3 features: [N, 3, H, W] in [-1, 1] (any H, W) -> [N, 2048] float64.

    Inputs are resized to 299 x 299 (bilinear, align_corners=False, no antialias) unless already that size.
    The network is frozen and always in eval mode (`train()` is a no-op).
    """

    num_features = INCEPTION_FEATURES

    def __init__(self, scripted: nn.Module):
        super().__init__()
        self.net = scripted
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
        x = images.float()
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return self.net(x).double()


def load_inception(path: str | os.PathLike | None = None) -> InceptionFeatures:
    """The FID Inception-v3 feature extractor (see InceptionFeatures), on CPU.

    `path` is an explicit TorchScript file; without it the asset search order of `mmtok.assets` applies.
    Raises AssetError when the file is missing or is not a readable TorchScript module.
    """
    file = assets.get("fid-inception").resolve(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated; the file is TorchScript
            scripted = torch.jit.load(str(file), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any failure to read the file is an unreadable asset
        raise AssetError(
            f"FID Inception-v3: cannot read {file} as TorchScript ({type(e).__name__})",
            hint=assets.get("fid-inception").how,
        ) from e
    return InceptionFeatures(scripted)


# ---------------------------------------------------------------------------------------------------------
# functional


def _f64(x: Any) -> Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().to("cpu", torch.float64)


def _sqrt_psd(s: Tensor) -> Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> Tensor:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), as a 0-d float64 tensor on CPU.

    mu: [F], sigma: [F, F] symmetric PSD (tensors or arrays). Computed in float64 on CPU as the nuclear
    norm of sqrt(S1) sqrt(S2) (see the module docstring); equals pytorch-fid's sqrtm formula. About 10 s
    at F = 2048 on two CPU cores.
    """
    mu1, mu2, s1, s2 = _f64(mu1), _f64(mu2), _f64(sigma1), _f64(sigma2)
    if mu1.shape != mu2.shape or mu1.ndim != 1 or s1.shape != s2.shape or s1.shape != (mu1.numel(),) * 2:
        raise ValueError(
            f"shape mismatch: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, sigma {tuple(s1.shape)} / {tuple(s2.shape)}"
        )
    s1 = (s1 + s1.T) / 2
    s2 = (s2 + s2.T) / 2
    tr_covmean = torch.linalg.svdvals(_sqrt_psd(s1) @ _sqrt_psd(s2)).sum()
    diff = mu1 - mu2
    return diff.dot(diff) + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean


def _stats(total: Tensor, outer: Tensor, n: Tensor | int) -> tuple[Tensor, Tensor]:
    n = int(n)
    if n < 2:
        raise ValueError(f"FID needs at least 2 images on each side, got {n}")
    mu = total / n
    sigma = (outer - n * torch.outer(mu, mu)) / (n - 1)  # unbiased, as numpy.cov in pytorch-fid
    return mu, (sigma + sigma.T) / 2


def feature_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """(mu [F], sigma [F, F]) of features [N, F] in float64; sigma is the unbiased covariance."""
    f = _f64(features)
    return _stats(f.sum(0), f.T @ f, f.shape[0])


# ---------------------------------------------------------------------------------------------------------
# metric


class FrechetInceptionDistance(Metric):
    """rFID between real images and reconstructions, synced across ranks.

    `update(images, real)`: images [N, 3, H, W] in [-1, 1]; `real=True` for originals, False for
    reconstructions. `compute()`: the Frechet distance (0-d float64 tensor).

    feature_extractor: None loads the FID Inception-v3 (`weights` = explicit path, else the asset search);
    any nn.Module mapping images to [N, F] may be given instead (tests use a tiny random network). F is
    taken from `num_features`, else the module's `num_features` attribute, else a dry run on 2 x 3 x 64 x 64.
    The extractor is frozen and kept in eval mode; it is a submodule, so `.to(device)` moves it.

    Reference statistics: `save_reference_stats(path)` writes the real side's mu, sigma and count;
    `load_reference_stats(path)` makes compute() use them for the real side (they are held per process and
    never summed across ranks; real-side updates are then an error).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        *,
        weights: str | os.PathLike | None = None,
        num_features: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if feature_extractor is None:
            feature_extractor = load_inception(weights)
        feature_extractor.eval()
        for p in feature_extractor.parameters():
            p.requires_grad_(False)
        self.extractor = feature_extractor
        if num_features is None:
            num_features = getattr(feature_extractor, "num_features", None)
        if num_features is None:
            with torch.no_grad():
                num_features = int(feature_extractor(torch.zeros(2, 3, 64, 64, dtype=self._input_dtype())).shape[-1])
        self.num_features = int(num_features)
        f = self.num_features
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(f, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(f, f, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self._reference: tuple[Tensor, Tensor, int] | None = None

    def train(self, mode: bool = True) -> "FrechetInceptionDistance":
        super().train(mode)
        self.extractor.eval()
        return self

    def _input_dtype(self) -> torch.dtype:
        first = next(self.extractor.parameters(), None)
        return first.dtype if first is not None and first.is_floating_point() else torch.float32

    def update(self, images: Tensor, real: bool) -> None:
        with torch.no_grad():
            feats = self.extractor(images.to(self._input_dtype()))
        if feats.ndim != 2 or feats.shape[1] != self.num_features:
            raise ValueError(f"feature extractor returned {tuple(feats.shape)}, expected [N, {self.num_features}]")
        feats = feats.to(torch.float64)
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + feats.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + feats.T @ feats)
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + feats.shape[0])

    def real_stats(self) -> tuple[Tensor, Tensor, int]:
        """(mu, sigma, count) of the real side: the loaded reference, else the (synced) accumulated sums."""
        if self._reference is not None:
            if int(self.real_count) > 0:
                raise ValueError("reference statistics are loaded, yet real images were also added")
            return self._reference
        mu, sigma = _stats(self.real_sum, self.real_outer, self.real_count)
        return mu, sigma, int(self.real_count)

    def fake_stats(self) -> tuple[Tensor, Tensor, int]:
        mu, sigma = _stats(self.fake_sum, self.fake_outer, self.fake_count)
        return mu, sigma, int(self.fake_count)

    def compute(self) -> Tensor:
        mu1, s1, _ = self.real_stats()
        mu2, s2, _ = self.fake_stats()
        return frechet_distance(mu1, s1, mu2, s2)

    def save_reference_stats(self, path: str | os.PathLike, meta: dict | None = None) -> None:
        """Write the real side's mu [F], sigma [F, F] (float64), count and `meta` (where the images came from;
        see save_stats) to `.npz` or `.safetensors`.

        Under torch.distributed this is collective (every rank must call it): the stats cover all ranks and
        only global rank 0 writes the file.
        """
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            mu, sigma, n = self.real_stats()
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not distributed or torch.distributed.get_rank() == 0:
            save_stats(path, mu, sigma, n, meta)

    def load_reference_stats(self, path: str | os.PathLike) -> None:
        """Use the stats in `path` (see save_reference_stats; pytorch-fid `.npz` files work) for the real side.
        Their metadata is not checked here (see load_stats_meta; `mmtok eval` checks it)."""
        mu, sigma, n = load_stats(path)
        if mu.numel() != self.num_features:
            raise AssetError(
                f"reference stats {path} have {mu.numel()} features, the extractor gives {self.num_features}"
            )
        self._reference = (mu, sigma, n)


def save_stats(path: str | os.PathLike, mu: Tensor, sigma: Tensor, count: int, meta: dict | None = None) -> None:
    """Write mu, sigma (float64), count and optional metadata (a JSON-able dict: where the statistics come
    from) to `.npz` (numpy; meta as a JSON string array) or `.safetensors` (meta in the header), atomically."""
    path = Path(path)
    mu, sigma = _f64(mu), _f64(sigma)
    text = json.dumps(meta, sort_keys=True) if meta is not None else None
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        atomic_write(path, lambda tmp: save_file({"mu": mu.contiguous(), "sigma": sigma.contiguous(),
                                                   "count": torch.tensor([int(count)])}, str(tmp),
                                                  metadata={META_KEY: text} if text is not None else None))
    elif path.suffix == ".npz":
        extra = {META_KEY: np.array(text)} if text is not None else {}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, mu=mu.numpy(), sigma=sigma.numpy(), count=np.int64(count), **extra)

        atomic_write(path, write)
    else:
        raise ValueError(f"reference stats must be .npz or .safetensors, got {path.name}")


def load_stats(path: str | os.PathLike) -> tuple[Tensor, Tensor, int]:
    """(mu, sigma, count) from `.npz` or `.safetensors`; count is 0 when the file has none (pytorch-fid)."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"FID reference statistics: no file at {path}", hint="write them with save_reference_stats")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            d = load_file(str(path))
            mu, sigma, n = d["mu"], d["sigma"], int(d["count"].reshape(-1)[0]) if "count" in d else 0
        else:
            with np.load(path, allow_pickle=False) as d:
                mu, sigma = torch.from_numpy(d["mu"]), torch.from_numpy(d["sigma"])
                n = int(d["count"]) if "count" in d.files else 0
    except (KeyError, ValueError, OSError) as e:
        raise AssetError(f"FID reference statistics {path} are unreadable ({e})") from e
    return mu.double(), sigma.double(), n


def load_stats_meta(path: str | os.PathLike) -> dict | None:
    """The metadata dict saved with the statistics at `path` (see save_stats), or None when the file has
    none (written before metadata existed, or by pytorch-fid)."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"FID reference statistics: no file at {path}", hint="write them with save_reference_stats")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                text = (fh.metadata() or {}).get(META_KEY)
        else:
            with np.load(path, allow_pickle=False) as d:
                text = str(d[META_KEY]) if META_KEY in d.files else None
        meta = json.loads(text) if text is not None else None
    except (ValueError, OSError) as e:  # json.JSONDecodeError is a ValueError
        raise AssetError(f"FID reference statistics {path} are unreadable ({e})") from e
    if meta is not None and not isinstance(meta, dict):
        raise AssetError(f"FID reference statistics {path}: their metadata is not a JSON object")
    return meta
