"""Nearest-code search: the one function every quantizer calls.

`nearest(x, codebook, metric)` returns, for each row of x, the id of the closest code. Two backends:

- "torch": a chunked matmul + argmin whose memory stays O(chunk x K): the N x K distance matrix is never
  built whole. Distances are computed in fp32 whatever the input dtype.
- "triton": fused kernels (`mmtok.quantize.kernels.nearest`) that keep a tile of x resident, stream the
  codebook and keep a running minimum; nothing N x K is ever written. fp32 operands use an fp32 (IEEE, never
  TF32) dot. fp16/bf16 operands use a half dot with fp32 accumulation that keeps the 4 best candidates per
  row, which are then re-ranked exactly (float64, in PyTorch) on the same half values.

`backend="auto"` (the default) takes Triton for CUDA tensors when triton imports, the torch path otherwise.
`backend="triton"` on CPU tensors runs only under Triton's interpreter (TRITON_INTERPRET=1 set before triton
is first imported) and raises `LookupBackendError` (a ValueError) otherwise.

Contract shared by both backends:

- Ties resolve to the lowest index (torch.argmin's rule); exact duplicates of a code never beat it.
- Ids are identical across backends except where the best two distances lie within fp32 rounding of each
  other (the two backends sum the dot products in different orders); exact ties always agree.
- NaN policy (torch.argmin's rule): a NaN distance counts as smaller than every number. A row whose
  distance to some code is NaN gets the lowest such code index, and a NaN distance. So a NaN anywhere in
  x[i] gives ids[i] == 0, and a NaN inside code k sends every row to the lowest NaN code (a loud,
  visible failure rather than a silently skipped code). Inputs with +-inf, or values so large that
  distances overflow fp32, are outside the agreement guarantee.
- Returned distances are fp32: squared Euclidean for "l2", 1 - cosine similarity for "cos". They agree
  across backends to fp32 rounding (the half-precision Triton path reports the exact re-ranked value).

`nearest_dual` is TokenFlow's shared-index lookup over two codebooks, and `code_histogram` counts code
usage (== torch.bincount); both dispatch the same way.
"""
from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F

from mmtok.errors import MmtokError

Metric = Literal["l2", "cos"]
Backend = Literal["auto", "triton", "torch"]

DEFAULT_CHUNK = 4096
RERANK_TOPK = 4  # candidates the half-precision kernel keeps per row for the exact re-rank
_NORM_EPS = 1e-12  # F.normalize's default eps: a zero vector has cosine similarity 0 with everything


class LookupBackendError(MmtokError, ValueError):
    """The requested lookup backend cannot run these tensors here."""


# ----------------------------------------------------------------------------------------------- dispatch
_KERNELS: object = None  # the kernel module, or False once its import failed


def _kernels():
    """The Triton kernel module, imported on first use (None when triton cannot be imported)."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from mmtok.quantize.kernels import nearest as kernels
        except Exception:  # no triton, or a triton that fails to import: the torch path still works
            kernels = False
        _KERNELS = kernels
    return _KERNELS or None


_AUTO_FAILURE: str | None = None  # set once a Triton call under backend="auto" failed: auto then stays on torch


def _auto_failed(e: Exception) -> None:
    global _AUTO_FAILURE
    _AUTO_FAILURE = f"{type(e).__name__}: {e}"
    warnings.warn(f"mmtok: the Triton lookup kernel failed ({_AUTO_FAILURE[:300]}); backend='auto' uses the "
                  "torch path from now on (pass backend='triton' to see the error)", RuntimeWarning, stacklevel=3)


def _use_triton(backend: str, device: torch.device) -> bool:
    if backend == "torch":
        return False
    if backend not in ("auto", "triton"):
        raise LookupBackendError(f"unknown backend {backend!r}", hint="use 'auto', 'triton' or 'torch'")
    if backend == "auto":
        if device.type != "cuda" or _AUTO_FAILURE:  # decided without importing triton on CPU
            return False
        kernels = _kernels()
        return kernels is not None and not kernels.INTERPRETED and not kernels.INTERPRETER_BROKEN
    kernels = _kernels()
    if kernels is None:
        raise LookupBackendError("backend='triton' needs the triton package, which does not import here",
                                 hint="pip install triton, or use backend='auto' or 'torch'")
    if kernels.INTERPRETER_BROKEN:
        raise LookupBackendError(
            "Triton's interpreter cannot run here: triton was imported before TRITON_INTERPRET=1 was set",
            hint="set TRITON_INTERPRET=1 in the environment before anything imports triton, "
            "or use backend='auto' or 'torch'",
        )
    if kernels.INTERPRETED or device.type == "cuda":
        return True
    raise LookupBackendError(
        f"backend='triton' on {device.type} tensors needs Triton's interpreter",
        hint="set TRITON_INTERPRET=1 before triton is first imported, move the tensors to CUDA, "
        "or use backend='auto' or 'torch'",
    )


# --------------------------------------------------------------------------------------------- nearest
def nearest(
    x: torch.Tensor,
    codebook: torch.Tensor,
    metric: Metric = "l2",
    *,
    return_dist: bool = False,
    chunk: int = DEFAULT_CHUNK,
    backend: Backend = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Ids [N] (int64) of the nearest codes to x [N, D] among codebook [K, D] (and their distances if asked).

    metric "l2": squared Euclidean distance. metric "cos": 1 - cosine similarity (inputs need not be
    normalised). Returned distances are fp32. `chunk` is the row block of the torch path (memory
    O(chunk x K)); it never changes the answer. `backend`: "auto" | "triton" | "torch". Under "auto" a
    Triton kernel that fails (e.g. cannot compile on this GPU) warns once and the torch path takes over.
    See the module docstring for the tie rule and the NaN policy.
    """
    if x.dim() != 2 or codebook.dim() != 2 or x.shape[1] != codebook.shape[1]:
        raise ValueError(f"nearest expects x [N, D] and codebook [K, D], got {tuple(x.shape)} and {tuple(codebook.shape)}")
    if metric not in ("l2", "cos"):
        raise ValueError(f"unknown metric {metric!r}; use 'l2' or 'cos'")
    if codebook.shape[0] == 0:
        raise ValueError("nearest needs a codebook with at least one code")
    if _use_triton(backend, x.device):
        if backend == "triton":
            return _nearest_triton(x, codebook, metric, return_dist, chunk)
        try:
            return _nearest_triton(x, codebook, metric, return_dist, chunk)
        except (torch.cuda.OutOfMemoryError, LookupBackendError):
            raise
        except Exception as e:  # a kernel that cannot compile here must not stop training: fall back
            _auto_failed(e)
    return _nearest_torch(x, codebook, metric, return_dist, chunk)


def _nearest_torch(x, codebook, metric, return_dist, chunk):
    x = x.float()
    c = codebook.float()
    if metric == "cos":
        x = torch.nn.functional.normalize(x, dim=1)
        c = torch.nn.functional.normalize(c, dim=1)
        c_sq = None
    elif metric == "l2":
        c_sq = (c * c).sum(1)
    else:
        raise ValueError(f"unknown metric {metric!r}; use 'l2' or 'cos'")
    n = x.shape[0]
    ids = torch.empty(n, dtype=torch.long, device=x.device)
    dist = torch.empty(n, dtype=torch.float32, device=x.device) if return_dist else None
    # one reused chunk x K buffer: half the peak memory of allocating a fresh one per chunk, and no page
    # faults on every chunk. Both keys are one GEMM with a broadcast bias: fl(b + a * x.c) with a = -1 or
    # -2 exact, i.e. 1 - x.c (cos) and ||c||^2 - 2 x.c (l2); ||x||^2 is constant per row, so it only enters
    # the reported distance.
    bias = torch.ones(1, c.shape[0], device=x.device) if metric == "cos" else c_sq.unsqueeze(0)
    alpha = -1.0 if metric == "cos" else -2.0
    buf = torch.empty(min(chunk, n), c.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, n, chunk):
        xs = x[start : start + chunk]
        d = torch.addmm(bias, xs, c.T, beta=1.0, alpha=alpha, out=buf[: xs.shape[0]])
        best, idx = d.min(dim=1)
        ids[start : start + chunk] = idx
        if dist is not None:
            dist[start : start + chunk] = best + (xs * xs).sum(1) if metric == "l2" else best
    return (ids, dist) if return_dist else ids


def _nearest_triton(x, codebook, metric, return_dist, chunk):
    kernels = _kernels()
    if x.device != codebook.device:
        raise LookupBackendError(f"x is on {x.device} but the codebook is on {codebook.device}",
                                 hint="move both to the same device")
    # dtypes the kernel does not take (fp64, ...) are computed in fp32, as on the torch path
    if x.dtype not in kernels.KERNEL_DTYPES:
        x = x.float()
    if codebook.dtype not in kernels.KERNEL_DTYPES:
        codebook = codebook.float()
    half = x.dtype in (torch.float16, torch.bfloat16) and x.dtype == codebook.dtype

    if half:  # half dot, fp32 accumulate: keep 4 candidates, then the exact re-rank picks the id
        if metric == "l2":
            cf = codebook.float()
            cand, _ = kernels.nearest_candidates(x, codebook, csq=(cf * cf).sum(1), topk=RERANK_TOPK)
        else:
            rx = 1.0 / torch.linalg.vector_norm(x.float(), dim=1).clamp_min(_NORM_EPS)
            rc = 1.0 / torch.linalg.vector_norm(codebook.float(), dim=1).clamp_min(_NORM_EPS)
            cand, _ = kernels.nearest_candidates(x, codebook, rx=rx, rc=rc, cos=True, topk=RERANK_TOPK)
        ids, dist = _rerank(x, codebook, cand, metric)
        return (ids, dist) if return_dist else ids

    # fp32 (or mixed) operands: one fp32 IEEE pass, keys formed exactly as on the torch path
    if metric == "l2":
        c = codebook.float()
        idx, key = kernels.nearest_candidates(x, codebook, csq=(c * c).sum(1), topk=1)
    else:
        xn = F.normalize(x.float(), dim=1)
        cn = F.normalize(codebook.float(), dim=1)
        idx, key = kernels.nearest_candidates(xn, cn, cos=True, topk=1)
    ids = idx[:, 0]
    if not return_dist:
        return ids
    dist = key[:, 0]
    if metric == "l2":
        xf = x.float()
        dist = dist + (xf * xf).sum(1)
    return ids, dist


def _rerank(x, codebook, cand, metric):
    """Exact choice among candidate ids cand [N, T]: float64 distances on the given values, NaN first,
    then the lowest index (the candidates are sorted by index, and argmin takes the first minimum)."""
    n, t = cand.shape
    ids = torch.empty(n, dtype=torch.long, device=x.device)
    dist = torch.empty(n, dtype=torch.float32, device=x.device)
    rc = None
    if metric == "cos":
        rc = 1.0 / torch.linalg.vector_norm(codebook.double(), dim=1).clamp_min(_NORM_EPS)
    step = max(1, (1 << 22) // max(1, t * x.shape[1]))  # the gathered fp64 codes stay <= 32 MiB
    for s in range(0, n, step):
        cs, _ = cand[s : s + step].sort(dim=1)
        xs = x[s : s + step].double()
        cc = codebook[cs].double()  # [n, T, D]
        if metric == "l2":
            d = (xs[:, None, :] - cc).square().sum(-1)
        else:
            xs = xs / torch.linalg.vector_norm(xs, dim=1, keepdim=True).clamp_min(_NORM_EPS)
            d = 1.0 - (xs[:, None, :] * cc).sum(-1) * rc[cs]
        j = d.argmin(dim=1, keepdim=True)
        ids[s : s + step] = cs.gather(1, j).squeeze(1)
        dist[s : s + step] = d.gather(1, j).squeeze(1).float()
    return ids, dist


# ----------------------------------------------------------------------------------------- nearest_dual
def nearest_dual(
    x_sem: torch.Tensor,
    cb_sem: torch.Tensor,
    x_pix: torch.Tensor,
    cb_pix: torch.Tensor,
    w_sem: float = 1.0,
    w_pix: float = 1.0,
    *,
    normalize: bool = True,
    return_dist: bool = False,
    chunk: int = DEFAULT_CHUNK,
    backend: Backend = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """TokenFlow's shared index over a semantic and a pixel codebook of the same size K.

    ids[i] = argmin_k  w_sem * ||s(x_sem[i]) - s(cb_sem[k])||^2 + w_pix * ||s(x_pix[i]) - s(cb_pix[k])||^2
    with s = l2-normalisation of each row (TokenFlow normalises features and codes; for unit vectors each
    term is 2 x the cosine distance), or s = identity with normalize=False. x_sem [N, Ds], cb_sem [K, Ds],
    x_pix [N, Dp], cb_pix [K, Dp]. The weighted sum of squared L2 distances is one squared L2 distance over
    the concatenation [sqrt(w_sem) s(x_sem), sqrt(w_pix) s(x_pix)], so this is one `nearest` call (same
    kernel, same tie rule and NaN policy); the returned distance is that weighted sum, in fp32.
    """
    if x_sem.dim() != 2 or cb_sem.dim() != 2 or x_pix.dim() != 2 or cb_pix.dim() != 2:
        raise ValueError("nearest_dual expects 2-D x_sem, cb_sem, x_pix, cb_pix")
    if x_sem.shape[0] != x_pix.shape[0] or cb_sem.shape[0] != cb_pix.shape[0]:
        raise ValueError(
            f"semantic and pixel parts must share N and K, got x {tuple(x_sem.shape)} / {tuple(x_pix.shape)}, "
            f"codebooks {tuple(cb_sem.shape)} / {tuple(cb_pix.shape)}"
        )
    if x_sem.shape[1] != cb_sem.shape[1] or x_pix.shape[1] != cb_pix.shape[1]:
        raise ValueError("each part's features and codes must have the same width")
    for name, w in (("w_sem", w_sem), ("w_pix", w_pix)):
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"{name} must be a finite weight >= 0, got {w}")

    def part(a: torch.Tensor, w: float) -> torch.Tensor:
        a = a.float()
        if normalize:
            a = F.normalize(a, dim=1)
        return a * math.sqrt(w)

    x = torch.cat([part(x_sem, w_sem), part(x_pix, w_pix)], dim=1)
    c = torch.cat([part(cb_sem, w_sem), part(cb_pix, w_pix)], dim=1)
    return nearest(x, c, "l2", return_dist=return_dist, chunk=chunk, backend=backend)


# --------------------------------------------------------------------------------------- code_histogram
def code_histogram(ids: torch.Tensor, K: int, *, backend: Backend = "auto") -> torch.Tensor:
    """How often each code occurs: int64 [K], equal to torch.bincount(ids.flatten(), minlength=K).

    ids: integer tensor of any shape with every value in [0, K) (checked; ValueError otherwise).
    """
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"code_histogram expects integer ids, got {ids.dtype}")
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    flat = ids.reshape(-1)
    if flat.numel():
        lo, hi = torch.aminmax(flat)
        if int(lo) < 0 or int(hi) >= K:
            raise ValueError(f"ids must lie in [0, {K}), found values in [{int(lo)}, {int(hi)}]")
    if _use_triton(backend, ids.device) and flat.numel() < 2**31:
        if backend == "triton":
            return _kernels().histogram(flat, K)
        try:
            return _kernels().histogram(flat, K)
        except (torch.cuda.OutOfMemoryError, LookupBackendError):
            raise
        except Exception as e:
            _auto_failed(e)
    return torch.bincount(flat.long(), minlength=K)
