"""Triton nearest-code kernels (mmtok.quantize.kernels.nearest, via lookup.py) against a float64 brute force.

Without CUDA the kernels run on CPU through Triton's interpreter: TRITON_INTERPRET=1 is set here, before
triton is imported. If something in this pytest process imported triton earlier, the interpreter cannot work
in-process (triton builds its own helpers at import), so every test here is skipped in favour of
`test_in_fresh_interpreter_process`, which runs this file in a subprocess with the variable set.
With CUDA the variable is left alone and the same checks run the compiled kernels on the GPU, plus the
realistic sizes marked `gpu`.

Test data is either on a grid of multiples of 1/2 (every fp32 distance is then exact, so fp32 == fp64 and
ties are real ties, of which small grids have many) or Gaussian with the rows whose best two codes lie
within 1e-3 dropped, so that fp32 and fp64 can only disagree at constructed exact ties.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton / the kernel module are imported
pytest.importorskip("triton")

from mmtok.quantize import lookup  # noqa: E402
from mmtok.quantize.kernels import nearest as kn  # noqa: E402
from mmtok.quantize.lookup import LookupBackendError, code_histogram, nearest, nearest_dual  # noqa: E402

RUN_HERE = HAS_CUDA or kn.INTERPRETED


@pytest.fixture(autouse=True)
def _interpreter_or_subprocess(request):
    if not RUN_HERE and request.node.originalname != "test_in_fresh_interpreter_process":
        pytest.skip("triton was imported before TRITON_INTERPRET=1: covered by test_in_fresh_interpreter_process")


@pytest.mark.skipif(RUN_HERE, reason="the kernels run in this process")
def test_in_fresh_interpreter_process():
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout


DEV = "cuda" if HAS_CUDA else "cpu"
SMALL_BLOCKS = dict(BLOCK_N=16, BLOCK_K=16, BLOCK_D=16)  # many programs, K blocks and D chunks


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grid(n: int, d: int, g: torch.Generator, half_width: int = 4) -> torch.Tensor:
    """Multiples of 1/2 in [-2, 2]: exact in bf16/fp16/fp32, and so are all distances up to D=64."""
    return torch.randint(-half_width, half_width + 1, (n, d), generator=g).float() / 2


def dist64(x: torch.Tensor, c: torch.Tensor, metric: str) -> torch.Tensor:
    x, c = x.double().cpu(), c.double().cpu()
    if metric == "cos":
        return 1.0 - torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(c, dim=1).T
    return ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)


def brute(x: torch.Tensor, c: torch.Tensor, metric: str) -> torch.Tensor:
    """float64 argmin; ties (and NaNs) go to the lowest index."""
    return dist64(x, c, metric).argmin(dim=1)


def separated(x: torch.Tensor, c: torch.Tensor, metric: str, tol: float = 1e-3) -> torch.Tensor:
    """The rows of x whose best code beats the second best by more than tol (relative)."""
    if c.shape[0] < 2:
        return x
    two = dist64(x, c, metric).topk(2, dim=1, largest=False).values
    keep = (two[:, 1] - two[:, 0]) > tol * (1 + two[:, 0].abs())
    return x[keep.to(x.device)]


def tri(x, c, metric="l2", **kw):
    return nearest(x.to(DEV), c.to(DEV), metric, backend="triton", **kw)


# ------------------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("metric", ["l2", "cos"])
@pytest.mark.parametrize("n,k,d", [(1, 1, 3), (37, 101, 3), (37, 101, 8), (37, 101, 17), (300, 257, 64)])
def test_ids_equal_float64_and_torch_path(metric, n, k, d):
    g = gen(n * 7 + k * 3 + d)
    if metric == "l2":
        x, c = grid(n, d, g), grid(k, d, g)  # exact arithmetic: ties included, no tolerance anywhere
    else:
        c = torch.randn(k, d, generator=g)
        x = separated(torch.randn(n, d, generator=g), c, metric)
    ids = tri(x, c, metric)
    assert ids.dtype == torch.long and ids.shape == (x.shape[0],)
    assert torch.equal(ids.cpu(), brute(x, c, metric))
    assert torch.equal(ids.cpu(), nearest(x, c, metric, backend="torch"))


def test_larger_l2_case_and_block_shapes():
    g = gen(11)
    x, c = grid(2000, 8, g), grid(1000, 8, g)
    ref = brute(x, c, "l2")
    assert torch.equal(tri(x, c).cpu(), ref)
    csq = (c * c).sum(1)
    idx, _ = kn.nearest_candidates(x[:64].to(DEV), c.to(DEV), csq=csq.to(DEV), blocks=SMALL_BLOCKS)
    assert torch.equal(idx[:, 0].cpu(), ref[:64])


@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_small_blocks_topk_is_lexicographic(metric):
    """Multi-block K, D in two chunks, masked tails: the 4 candidates are the 4 smallest (distance, index)."""
    g = gen(5)
    n, k, d = 37, 101, 17
    if metric == "l2":
        x, c = grid(n, d, g, half_width=1), grid(k, d, g, half_width=1)  # coarse grid: plenty of ties
        c[60:70] = c[3:13]  # duplicates in a later K block
        csq, kw = (c * c).sum(1), {}
    else:
        c = torch.randn(k, d, generator=g)
        c[60:70] = c[3:13]
        x = separated(torch.randn(n, d, generator=g), c, metric)
        csq, kw = None, {}
        x, c = torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(c, dim=1)
    d64 = dist64(x, c, metric)
    order = torch.sort(d64, dim=1, stable=True).indices  # stable: equal distances keep index order
    for topk in (1, 4):
        idx, key = kn.nearest_candidates(x.to(DEV), c.to(DEV), csq=None if csq is None else csq.to(DEV),
                                         cos=metric == "cos", topk=topk, blocks=SMALL_BLOCKS, **kw)
        if metric == "l2":
            assert torch.equal(idx.cpu(), order[:, :topk])
            # the key is ||c||^2 - 2 x.c: exact on the grid
            assert torch.equal(key.cpu().double(), d64.gather(1, order[:, :topk]) - (x.double() ** 2).sum(1, keepdim=True))
        else:
            assert torch.equal(idx[:, 0].cpu(), order[:, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_exact_ties_go_to_lowest_index(metric, dtype):
    g = gen(1)
    base = torch.randn(40, 6, generator=g)
    c = torch.cat([base, base[[1, 3]], base[[1]], base[[39]]])  # 40, 41, 42, 43 duplicate 1, 3, 1, 39
    x = torch.cat([base[[1, 3, 1, 39, 0]], torch.randn(20, 6, generator=g)])
    x = torch.cat([x[:5], separated(x[5:], c, metric)])
    c, x = c.to(dtype), x.to(dtype)
    for blocks in (None, SMALL_BLOCKS):  # duplicates in the same K block and in later blocks
        if blocks is None:
            ids = tri(x, c, metric).cpu()
        else:
            cf = c.float()
            if metric == "l2":
                idx, _ = kn.nearest_candidates(x.to(DEV), c.to(DEV), csq=(cf * cf).sum(1).to(DEV),
                                               topk=4, blocks=blocks)
            else:
                idx, _ = kn.nearest_candidates(torch.nn.functional.normalize(x.float(), dim=1).to(DEV),
                                               torch.nn.functional.normalize(cf, dim=1).to(DEV),
                                               cos=True, topk=4, blocks=blocks)
            ids = idx[:, 0].cpu()
        assert ids[:5].tolist() == [1, 3, 1, 39, 0]
        assert not (ids >= 40).any(), "a duplicate code beat its lower-index twin"
        assert torch.equal(ids, brute(x.float(), c.float(), metric))


def test_all_codes_identical():
    c, x = torch.ones(9, 3), torch.ones(11, 3)
    assert tri(x, c, "l2").tolist() == [0] * 11
    assert tri(x, c, "cos").tolist() == [0] * 11
    assert tri(x.bfloat16(), c.bfloat16(), "l2").tolist() == [0] * 11


@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_non_contiguous_inputs(metric):
    g = gen(2)
    xt = torch.randn(6, 31, generator=g)
    cb = torch.randn(26, 12, generator=g)
    x, c = xt.T, cb[::2, ::2]  # transposed [31, 6] view, strided [13, 6] view
    x = separated(x.contiguous(), c, metric).T.contiguous().T  # keep it transposed
    assert not x.is_contiguous() and not c.is_contiguous()
    ids = tri(x, c, metric)
    assert torch.equal(ids.cpu(), brute(x, c, metric))
    assert torch.equal(ids, tri(x.contiguous(), c.contiguous(), metric))


# ---------------------------------------------------------------------------------------- half inputs
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_half_inputs_equal_fp32_answer_on_rounded_values(metric, dtype):
    g = gen(3)
    n, k, d = 400, 300, 17
    c = torch.randn(k, d, generator=g).to(dtype)
    x = torch.randn(n, d, generator=g).to(dtype)
    x = separated(x.float(), c.float(), metric, tol=1e-4).to(dtype)  # the half values are the truth
    ids, dist = tri(x, c, metric, return_dist=True)
    ref = brute(x.float(), c.float(), metric)
    assert torch.equal(ids.cpu(), ref)
    assert torch.equal(ids.cpu(), nearest(x, c, metric, backend="torch"))
    best = dist64(x, c, metric).gather(1, ref[:, None]).squeeze(1)
    torch.testing.assert_close(dist.cpu().double(), best, rtol=1e-6, atol=1e-6)


def test_half_grid_ties_and_mixed_dtypes():
    g = gen(4)
    x, c = grid(300, 8, g), grid(200, 8, g)
    ref = brute(x, c, "l2")
    for xd, cd in [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
                   (torch.bfloat16, torch.float32), (torch.float32, torch.float16)]:
        assert torch.equal(tri(x.to(xd), c.to(cd)).cpu(), ref), (xd, cd)
    assert torch.equal(tri(x.double(), c.double()).cpu(), ref)  # other dtypes go through fp32


# -------------------------------------------------------------------------------------------- distances
@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_return_dist_matches_torch_path(metric):
    g = gen(6)
    c = torch.randn(19, 6, generator=g) * 3
    x = separated(torch.randn(45, 6, generator=g) * 3, c, metric)
    ids, dist = tri(x, c, metric, return_dist=True)
    t_ids, t_dist = nearest(x, c, metric, return_dist=True, backend="torch")
    assert dist.dtype == torch.float32 and torch.equal(ids.cpu(), t_ids)
    torch.testing.assert_close(dist.cpu(), t_dist, rtol=1e-5, atol=1e-5)
    best = dist64(x, c, metric).gather(1, t_ids[:, None]).squeeze(1)
    torch.testing.assert_close(dist.cpu().double(), best, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------- NaN policy
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_nan_policy(metric, dtype):
    """torch.argmin's rule on both backends: a NaN distance wins, the lowest NaN index first."""
    g = gen(8)
    x, c = torch.randn(30, 5, generator=g), torch.randn(20, 5, generator=g)
    x[3, 2] = float("nan")
    x[7] = float("nan")
    x, c = x.to(dtype), c.to(dtype)
    for backend in ("triton", "torch"):
        ids, dist = nearest(x.to(DEV), c.to(DEV), metric, return_dist=True, backend=backend)
        ids, dist = ids.cpu(), dist.cpu()
        assert ids[3] == 0 and ids[7] == 0 and dist[3].isnan() and dist[7].isnan()
        ok = torch.ones(30, dtype=torch.bool)
        ok[[3, 7]] = False
        assert not dist[ok].isnan().any()
        assert torch.equal(ids, brute(x.float(), c.float(), metric)), backend  # float64 argmin: same rule
    c2 = c.clone()
    c2[9, 1] = float("nan")
    c2[14] = float("nan")
    for backend in ("triton", "torch"):
        ids, dist = nearest(x.to(DEV), c2.to(DEV), metric, return_dist=True, backend=backend)
        assert (ids.cpu()[ok] == 9).all() and ids[3] == 0 and dist.isnan().all(), backend


# -------------------------------------------------------------------------------------------- histogram
@pytest.mark.parametrize("k", [1, 7, 100, 512, 5000])
def test_code_histogram_equals_bincount(k):
    g = gen(k)
    ids = torch.randint(0, k, (3, 1111), generator=g)
    ids[0, :200] = k - 1  # a hot code
    ref = torch.bincount(ids.flatten(), minlength=k)
    for t in (ids, ids.int(), ids.T):  # int32 and non-contiguous views too
        out = code_histogram(t.to(DEV), k, backend="triton")
        assert out.dtype == torch.int64 and torch.equal(out.cpu(), ref)
    assert torch.equal(code_histogram(ids, k, backend="torch"), ref)
    assert torch.equal(code_histogram(ids[:0], k, backend="triton").cpu(), torch.zeros(k, dtype=torch.long))


def test_code_histogram_rejects_out_of_range():
    for bad in (torch.tensor([0, 5]), torch.tensor([-1, 2]), torch.tensor([0.0, 1.0])):
        for backend in ("triton", "torch"):
            with pytest.raises(ValueError):
                code_histogram(bad, 5, backend=backend)


# ------------------------------------------------------------------------------------------------- dual
def dual_brute(xs, cs, xp, cp, ws, wp, normalize):
    f = (lambda a: torch.nn.functional.normalize(a.double(), dim=1)) if normalize else (lambda a: a.double())
    return ws * dist64(f(xs), f(cs), "l2") + wp * dist64(f(xp), f(cp), "l2")


@pytest.mark.parametrize("ws,wp,normalize", [(1.0, 1.0, True), (0.3, 2.0, True), (1.0, 0.5, False), (0.0, 1.0, True)])
def test_nearest_dual_equals_weighted_sum(ws, wp, normalize):
    g = gen(9)
    n, k = 200, 150
    xs, cs = torch.randn(n, 12, generator=g), torch.randn(k, 12, generator=g)
    xp, cp = torch.randn(n, 5, generator=g), torch.randn(k, 5, generator=g)
    d = dual_brute(xs, cs, xp, cp, ws, wp, normalize)
    two = d.topk(2, dim=1, largest=False).values
    keep = (two[:, 1] - two[:, 0]) > 1e-3 * (1 + two[:, 0])
    xs, xp, d = xs[keep], xp[keep], d[keep]
    ref = d.argmin(1)
    ids, dist = nearest_dual(xs.to(DEV), cs.to(DEV), xp.to(DEV), cp.to(DEV), ws, wp,
                             normalize=normalize, return_dist=True, backend="triton")
    assert torch.equal(ids.cpu(), ref)
    assert torch.equal(ids.cpu(), nearest_dual(xs, cs, xp, cp, ws, wp, normalize=normalize, backend="torch"))
    torch.testing.assert_close(dist.cpu().double(), d.gather(1, ref[:, None]).squeeze(1), rtol=1e-4, atol=1e-4)


def test_nearest_dual_rejects_mismatched_parts():
    with pytest.raises(ValueError):
        nearest_dual(torch.randn(4, 3), torch.randn(6, 3), torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError):
        nearest_dual(torch.randn(4, 3), torch.randn(6, 3), torch.randn(4, 2), torch.randn(6, 2), w_sem=-1.0)


# ---------------------------------------------------------------------------------------------- dispatch
def test_backend_dispatch(monkeypatch):
    x, c = torch.randn(5, 4), torch.randn(3, 4)
    with pytest.raises(ValueError):
        nearest(x, c, backend="cuda")
    if not HAS_CUDA:
        # auto never takes the kernel for CPU tensors
        monkeypatch.setattr(lookup, "_nearest_triton", lambda *a: pytest.fail("auto took Triton on CPU"))
        nearest(x, c)
        monkeypatch.undo()
        # without the interpreter, backend="triton" on CPU tensors is a clear ValueError
        monkeypatch.setattr(kn, "INTERPRETED", False)
        with pytest.raises(LookupBackendError, match="TRITON_INTERPRET=1"):
            nearest(x, c, backend="triton")
        with pytest.raises(ValueError):
            code_histogram(torch.tensor([0, 1]), 3, backend="triton")


def test_auto_falls_back_to_torch_when_the_kernel_fails(monkeypatch):
    calls = []

    def broken(*a):
        calls.append(1)
        raise RuntimeError("simulated compile failure")

    monkeypatch.setattr(lookup, "_AUTO_FAILURE", None)
    monkeypatch.setattr(lookup, "_use_triton", lambda b, d: b != "torch" and lookup._AUTO_FAILURE is None)
    monkeypatch.setattr(lookup, "_nearest_triton", broken)
    x, c = torch.randn(9, 4), torch.randn(5, 4)
    with pytest.warns(RuntimeWarning, match="simulated compile failure"):
        ids = nearest(x, c)
    assert torch.equal(ids, nearest(x, c, backend="torch"))
    nearest(x, c)  # auto now stays on torch
    assert len(calls) == 1
    with pytest.raises(RuntimeError):  # an explicit backend="triton" shows the error
        monkeypatch.setattr(lookup, "_AUTO_FAILURE", None)
        nearest(x, c, backend="triton")


# ------------------------------------------------------------------------------------- GPU, real sizes
def _agree_up_to_near_ties(ids, ref, x, c, metric, tol=1e-5):
    """ids == ref except where both codes are within fp32 rounding of each other (checked in float64)."""
    differ = (ids != ref).nonzero().squeeze(1)
    assert differ.numel() <= max(1, ids.numel() // 2000), f"{differ.numel()} ids differ"
    if differ.numel():
        xd = x[differ].double()
        a, b = c[ids[differ]].double(), c[ref[differ]].double()
        if metric == "cos":
            xd = torch.nn.functional.normalize(xd, dim=1)
            da = 1 - (xd * torch.nn.functional.normalize(a, dim=1)).sum(1)
            db = 1 - (xd * torch.nn.functional.normalize(b, dim=1)).sum(1)
        else:
            da, db = ((xd - a) ** 2).sum(1), ((xd - b) ** 2).sum(1)
        assert ((da - db).abs() <= tol * (1 + db.abs())).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("metric", ["l2", "cos"])
@pytest.mark.parametrize("d", [8, 256])
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_gpu_realistic_sizes_match_torch_path(d, metric, dtype):
    g = torch.Generator(device="cuda").manual_seed(d)
    x = torch.randn(262144, d, device="cuda", generator=g).to(dtype)
    c = torch.randn(16384, d, device="cuda", generator=g).to(dtype)
    ids = nearest(x, c, metric, backend="triton")
    ref = nearest(x, c, metric, backend="torch")
    _agree_up_to_near_ties(ids, ref, x, c, metric)
    assert torch.equal(code_histogram(ids, 16384, backend="triton"), torch.bincount(ids, minlength=16384))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_gpu_tokenflow_dual_and_duplicates():
    g = torch.Generator(device="cuda").manual_seed(0)
    n, k = 65536, 32768
    xs, cs = torch.randn(n, 32, device="cuda", generator=g), torch.randn(k, 32, device="cuda", generator=g)
    xp, cp = torch.randn(n, 8, device="cuda", generator=g), torch.randn(k, 8, device="cuda", generator=g)
    cs[k // 2 :], cp[k // 2 :] = cs[: k // 2], cp[: k // 2]  # every code duplicated half a codebook later
    ids = nearest_dual(xs, cs, xp, cp, 1.0, 1.0, backend="triton")
    assert (ids < k // 2).all(), "a duplicate beat its lower-index twin"
    ref = nearest_dual(xs, cs, xp, cp, 1.0, 1.0, backend="torch")
    x = torch.cat([torch.nn.functional.normalize(xs, dim=1), torch.nn.functional.normalize(xp, dim=1)], 1)
    c = torch.cat([torch.nn.functional.normalize(cs, dim=1), torch.nn.functional.normalize(cp, dim=1)], 1)
    _agree_up_to_near_ties(ids, ref, x, c, "l2")
