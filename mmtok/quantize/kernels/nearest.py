"""Triton kernels behind `mmtok.quantize.lookup`: fused nearest-code search and per-code counts.

Nothing here normalises, validates or re-ranks: `lookup.py` prepares the operands, picks the kernel
options and owns the CPU fallbacks. The kernels are plain functions of prepared tensors:

`nearest_candidates(x, c, ...)` -> (idx [N, topk] int64, key [N, topk] fp32)
    One program keeps a BLOCK_N x D tile of x resident (or streams it in BLOCK_D chunks when D is
    larger than one chunk) and streams the codebook in BLOCK_K blocks. Per block it computes x . c with
    `tl.dot` (fp32 accumulation, input_precision="ieee" for fp32 operands, so TF32 never changes an id),
    turns it into a key and folds the block into a running minimum with a strict `<`, so ties keep the
    lowest index exactly like torch.argmin.
      l2:  key = ||c||^2 - 2 x.c          (||c||^2 precomputed in fp32; ||x||^2 is constant per row)
      cos: key = 1 - x.c                  (x, c already unit rows), or
           key = 1 - (x.c) * rx * rc      (SCALED: reciprocal norms given, x and c left as they are)
    A NaN key counts as smaller than every number and the lowest NaN index wins (torch.argmin's rule);
    such rows report a NaN key. Codes past K get +inf. With topk=4 the program keeps the four smallest
    (key, index) pairs in lexicographic order, for an exact re-rank by the caller.

`histogram(ids, K)` -> int64 counts [K], equal to torch.bincount(ids, minlength=K) for ids in [0, K).

Under TRITON_INTERPRET=1 (set before triton is first imported) the kernels run on CPU tensors through
Triton's numpy interpreter; `INTERPRETED` says which mode this module was built in. The interpreter
reads bf16 wrongly unless a tile is cast to fp32 right after `tl.load`, so `dot_fp32` is forced there.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

try:  # which kind of object triton.jit built tells us the mode the kernels really run in
    from triton.runtime.interpreter import InterpretedFunction as _InterpretedFunction
except ImportError:  # pragma: no cover - very old or very new triton
    _InterpretedFunction = ()

_HALF = (torch.float16, torch.bfloat16)
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _nearest_kernel(
    x_ptr, c_ptr, csq_ptr, rx_ptr, rc_ptr, idx_ptr, key_ptr,
    N, K, D,
    stride_xn, stride_xd, stride_ck, stride_cd,
    METRIC_COS: tl.constexpr,  # False: l2 key, True: cosine key
    SCALED: tl.constexpr,  # cos only: multiply x.c by rx[n] * rc[k]
    TOPK: tl.constexpr,  # 1 or 4
    DOT_FP32: tl.constexpr,  # cast tiles to fp32 after load (always in the interpreter)
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    SINGLE_D: tl.constexpr,  # D <= BLOCK_D: the x tile is loaded once and stays resident
):
    pid = tl.program_id(0)
    rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rn < N
    rn64 = rn.to(tl.int64)
    rd = tl.arange(0, BLOCK_D)
    rk_local = tl.arange(0, BLOCK_K)

    if SINGLE_D:
        xt = tl.load(x_ptr + rn64[:, None] * stride_xn + rd[None, :] * stride_xd,
                     mask=row_ok[:, None] & (rd[None, :] < D), other=0.0)
        if DOT_FP32:
            xt = xt.to(tl.float32)
    if SCALED:
        rx = tl.load(rx_ptr + rn, mask=row_ok, other=0.0)

    b0 = tl.full([BLOCK_N], float("inf"), tl.float32)
    b1 = tl.full([BLOCK_N], float("inf"), tl.float32)
    b2 = tl.full([BLOCK_N], float("inf"), tl.float32)
    b3 = tl.full([BLOCK_N], float("inf"), tl.float32)
    i0 = tl.zeros([BLOCK_N], tl.int32)
    i1 = tl.zeros([BLOCK_N], tl.int32)
    i2 = tl.zeros([BLOCK_N], tl.int32)
    i3 = tl.zeros([BLOCK_N], tl.int32)

    for k0 in range(0, K, BLOCK_K):
        rk = k0 + rk_local
        col_ok = rk < K
        rk64 = rk.to(tl.int64)
        acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
        if SINGLE_D:
            ct = tl.load(c_ptr + rk64[:, None] * stride_ck + rd[None, :] * stride_cd,
                         mask=col_ok[:, None] & (rd[None, :] < D), other=0.0)
            if DOT_FP32:
                acc = tl.dot(xt, tl.trans(ct.to(tl.float32)), acc, input_precision="ieee")
            else:
                acc = tl.dot(xt, tl.trans(ct), acc)
        else:
            for d0 in range(0, D, BLOCK_D):
                dd = d0 + rd
                d_ok = dd < D
                xc = tl.load(x_ptr + rn64[:, None] * stride_xn + dd[None, :] * stride_xd,
                             mask=row_ok[:, None] & d_ok[None, :], other=0.0)
                cc = tl.load(c_ptr + rk64[:, None] * stride_ck + dd[None, :] * stride_cd,
                             mask=col_ok[:, None] & d_ok[None, :], other=0.0)
                if DOT_FP32:
                    acc = tl.dot(xc.to(tl.float32), tl.trans(cc.to(tl.float32)), acc, input_precision="ieee")
                else:
                    acc = tl.dot(xc, tl.trans(cc), acc)

        if METRIC_COS:
            if SCALED:
                rc = tl.load(rc_ptr + rk, mask=col_ok, other=0.0)
                acc = acc * rx[:, None] * rc[None, :]
            key = 1.0 - acc
        else:
            csq = tl.load(csq_ptr + rk, mask=col_ok, other=0.0)
            key = csq[None, :] - 2.0 * acc
        key = tl.where(key != key, float("-inf"), key)  # NaN first, like torch.argmin
        key = tl.where(col_ok[None, :], key, float("inf"))

        if TOPK == 1:
            m, j = tl.min(key, axis=1, return_indices=True)
            better = m < b0
            b0 = tl.where(better, m, b0)
            i0 = tl.where(better, j + k0, i0)
        else:
            for t in tl.static_range(4):
                m, j = tl.min(key, axis=1, return_indices=True)
                g = j + k0
                c0 = m < b0
                c1 = m < b1
                c2 = m < b2
                c3 = m < b3
                b3 = tl.where(c2, b2, tl.where(c3, m, b3))
                i3 = tl.where(c2, i2, tl.where(c3, g, i3))
                b2 = tl.where(c1, b1, tl.where(c2, m, b2))
                i2 = tl.where(c1, i1, tl.where(c2, g, i2))
                b1 = tl.where(c0, b0, tl.where(c1, m, b1))
                i1 = tl.where(c0, i0, tl.where(c1, g, i1))
                b0 = tl.where(c0, m, b0)
                i0 = tl.where(c0, g, i0)
                if t < 3:
                    key = tl.where(rk_local[None, :] == j[:, None], float("inf"), key)

    out = rn64 * TOPK
    tl.store(idx_ptr + out, i0.to(tl.int64), mask=row_ok)
    tl.store(key_ptr + out, tl.where(b0 == float("-inf"), float("nan"), b0), mask=row_ok)
    if TOPK == 4:
        tl.store(idx_ptr + out + 1, i1.to(tl.int64), mask=row_ok)
        tl.store(idx_ptr + out + 2, i2.to(tl.int64), mask=row_ok)
        tl.store(idx_ptr + out + 3, i3.to(tl.int64), mask=row_ok)
        tl.store(key_ptr + out + 1, tl.where(b1 == float("-inf"), float("nan"), b1), mask=row_ok)
        tl.store(key_ptr + out + 2, tl.where(b2 == float("-inf"), float("nan"), b2), mask=row_ok)
        tl.store(key_ptr + out + 3, tl.where(b3 == float("-inf"), float("nan"), b3), mask=row_ok)


@triton.jit
def _histogram_kernel(ids_ptr, counts_ptr, M, K, BLOCK: tl.constexpr, NUM_BINS: tl.constexpr, LOCAL: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < M
    ids = tl.load(ids_ptr + offs, mask=ok, other=0).to(tl.int32)
    if LOCAL:  # small K: count the block in registers, then one atomic per bin
        h = tl.histogram(ids, NUM_BINS, mask=ok)
        bins = tl.arange(0, NUM_BINS)
        tl.atomic_add(counts_ptr + bins, h, mask=(bins < K) & (h > 0))
    else:  # large K: one atomic per id
        tl.atomic_add(counts_ptr + ids, tl.full([BLOCK], 1, tl.int32), mask=ok)


# The interpreter works only if triton itself was imported under TRITON_INTERPRET=1: its own jit'd helpers
# (tl.zeros, tl.min, ...) are built at its import. A process that imported triton first and set the variable
# later gets interpreted kernels on top of a compiled triton.language, which cannot run (INTERPRETER_BROKEN).
_OURS = bool(_InterpretedFunction) and isinstance(_nearest_kernel, _InterpretedFunction)
_THEIRS = bool(_InterpretedFunction) and isinstance(tl.zeros, _InterpretedFunction)
INTERPRETED: bool = _OURS and _THEIRS
INTERPRETER_BROKEN: bool = _OURS != _THEIRS


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def default_blocks(D: int, topk: int, on_gpu: bool, fp32_dot: bool = True) -> dict:
    """Tile sizes, chosen without a GPU to tune on (no autotune: it needs a GPU even to import-test).

    GPU: tl.dot needs every block >= 16. The x tile stays resident when D fits one BLOCK_D chunk (up to 64
    for fp32, 128 for half operands); larger D streams x in chunks from L2. Interpreter: big tiles, since
    its cost is per numpy call, not per flop."""
    if on_gpu:
        block_d = min(max(16, _pow2(D)), 64 if fp32_dot else 128)
        return dict(BLOCK_N=128 if topk == 1 else 64, BLOCK_K=64, BLOCK_D=block_d,
                    num_warps=8 if block_d >= 128 else 4, num_stages=2)
    return dict(BLOCK_N=256, BLOCK_K=256, BLOCK_D=max(16, min(_pow2(D), 256)))


def nearest_candidates(
    x: torch.Tensor,
    c: torch.Tensor,
    *,
    csq: torch.Tensor | None = None,
    rx: torch.Tensor | None = None,
    rc: torch.Tensor | None = None,
    cos: bool = False,
    topk: int = 1,
    dot_fp32: bool | None = None,
    blocks: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `topk` smallest keys per row of x [N, D] against c [K, D], as (idx [N, topk] int64, key fp32).

    l2 (cos=False) needs csq [K] fp32 = ||c||^2. cos=True with rx [N], rc [K] (fp32 reciprocal norms)
    scales x.c in the kernel; without them x and c must already be unit rows. Ties keep the lowest index;
    NaN keys win (lowest NaN index) and are reported as NaN. Slots past K hold index 0 and key +inf.
    """
    if topk not in (1, 4):
        raise ValueError(f"topk must be 1 or 4, got {topk}")
    if x.dtype not in KERNEL_DTYPES or c.dtype not in KERNEL_DTYPES:
        raise ValueError(f"kernel dtypes are {KERNEL_DTYPES}, got {x.dtype} and {c.dtype}")
    N, D = x.shape
    K = c.shape[0]
    if dot_fp32 is None:
        dot_fp32 = INTERPRETED or x.dtype != c.dtype or x.dtype == torch.float32
    if INTERPRETED:
        dot_fp32 = True
    if not dot_fp32 and (x.dtype not in _HALF or x.dtype != c.dtype):
        raise ValueError("a half-precision dot needs x and c of the same half dtype")
    opts = dict(blocks) if blocks else default_blocks(D, topk, x.is_cuda and not INTERPRETED, dot_fp32)
    idx = torch.empty((N, topk), dtype=torch.int64, device=x.device)
    key = torch.empty((N, topk), dtype=torch.float32, device=x.device)
    if N == 0:
        return idx, key
    dummy = key  # never read when the matching flag is off
    scaled = rx is not None
    grid = (triton.cdiv(N, opts["BLOCK_N"]),)
    _nearest_kernel[grid](
        x, c,
        csq if csq is not None else dummy, rx if scaled else dummy, rc if scaled else dummy,
        idx, key, N, K, D,
        x.stride(0), x.stride(1), c.stride(0), c.stride(1),
        METRIC_COS=cos, SCALED=scaled, TOPK=topk, DOT_FP32=dot_fp32,
        SINGLE_D=D <= opts["BLOCK_D"], **opts,
    )
    return idx, key


def histogram(ids: torch.Tensor, K: int, block: int = 1024) -> torch.Tensor:
    """Counts [K] int64 of ids (any shape, every value in [0, K); the caller checks the range)."""
    flat = ids.reshape(-1)
    if flat.dtype not in (torch.int32, torch.int64):
        flat = flat.long()
    flat = flat.contiguous()
    counts = torch.zeros(K, dtype=torch.int32, device=ids.device)
    M = flat.numel()
    if M and K:
        bins = _pow2(K)
        local = bins <= 512  # Triton's own histogram tests stop at 512 bins
        _histogram_kernel[(triton.cdiv(M, block),)](flat, counts, M, K, BLOCK=block,
                                                    NUM_BINS=bins if local else 1, LOCAL=local)
    return counts.long()
