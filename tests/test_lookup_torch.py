"""nearest() on the PyTorch path against a float64 brute force: ids, ties, chunk edges, strided views."""
from __future__ import annotations

import pytest
import torch

from mmtok.quantize.lookup import nearest


def brute(x: torch.Tensor, c: torch.Tensor, metric: str):
    """(ids, distances) by float64 brute force; argmin ties go to the lowest index."""
    x, c = x.double(), c.double()
    if metric == "cos":
        d = 1.0 - torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(c, dim=1).T
    else:
        d = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    best, ids = d.min(dim=1)
    return ids, best, d


def assert_ids_match(ids, x, c, metric, tol=1e-5):
    """ids equal the float64 argmin, except where the best two distances lie within `tol` (fp32 noise)."""
    ref_ids, best, d = brute(x, c, metric)
    differ = ids != ref_ids
    if differ.any():
        gap = d[differ, ids[differ]] - best[differ]
        assert (gap.abs() <= tol * (1 + best[differ].abs())).all(), f"{int(differ.sum())} ids differ beyond ties"
    return ref_ids


@pytest.mark.parametrize("metric", ["l2", "cos"])
@pytest.mark.parametrize("n,k,d", [(1, 1, 1), (29, 13, 3), (50, 7, 8), (7, 40, 5), (64, 21, 16)])
def test_ids_match_float64(metric, n, k, d):
    g = torch.Generator().manual_seed(n * 1000 + k * 10 + d)
    x, c = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    ids = nearest(x, c, metric, chunk=7)
    assert ids.dtype == torch.long and ids.shape == (n,)
    ref = assert_ids_match(ids, x, c, metric)
    # random gaussian data has no near-ties at these sizes: demand exact agreement
    assert torch.equal(ids, ref)
    # the chunk size must not change the answer
    assert torch.equal(nearest(x, c, metric, chunk=1), ids)
    assert torch.equal(nearest(x, c, metric), ids)


@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_exact_ties_go_to_lowest_index(metric):
    g = torch.Generator().manual_seed(1)
    base = torch.randn(5, 4, generator=g)
    # codes 0..4, then exact duplicates of codes 1 and 3 (at 5, 6), then code 1 again at 7
    c = torch.cat([base, base[[1, 3]], base[[1]]])
    x = torch.cat([base[[1, 3, 1]], torch.randn(20, 4, generator=g)])
    ids = nearest(x, c, metric, chunk=7)
    ref_ids, _, _ = brute(x, c, metric)  # torch.argmin on float64: lowest index among equals
    assert torch.equal(ids, ref_ids)
    assert ids[:3].tolist() == [1, 3, 1]
    assert not ((ids >= 5) & (ids <= 7)).any(), "a duplicate code beat its lower-index twin"


def test_identical_codes_and_zero_distance():
    c = torch.ones(9, 3)
    x = torch.ones(11, 3)
    assert nearest(x, c, "l2", chunk=7).tolist() == [0] * 11
    assert nearest(x, c, "cos", chunk=7).tolist() == [0] * 11


@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_non_contiguous_inputs(metric):
    g = torch.Generator().manual_seed(2)
    xt = torch.randn(6, 31, generator=g)  # x = xt.T is a transposed [31, 6] view
    cb = torch.randn(26, 12, generator=g)
    x, c = xt.T, cb[::2, ::2]  # c is a strided [13, 6] view
    assert not x.is_contiguous() and not c.is_contiguous()
    ids = nearest(x, c, metric, chunk=7)
    assert torch.equal(ids, nearest(x.contiguous(), c.contiguous(), metric, chunk=7))
    assert torch.equal(ids, brute(x, c, metric)[0])


@pytest.mark.parametrize("metric", ["l2", "cos"])
def test_return_dist_close_to_float64(metric):
    g = torch.Generator().manual_seed(3)
    x, c = torch.randn(45, 6, generator=g) * 3, torch.randn(19, 6, generator=g) * 3
    ids, dist = nearest(x, c, metric, return_dist=True, chunk=7)
    ref_ids, best, _ = brute(x, c, metric)
    assert dist.dtype == torch.float32 and dist.shape == (45,)
    assert torch.equal(ids, ref_ids)
    torch.testing.assert_close(dist.double(), best, rtol=1e-4, atol=1e-4)


def test_low_precision_inputs_use_fp32_distances():
    g = torch.Generator().manual_seed(4)
    x, c = torch.randn(40, 8, generator=g).bfloat16(), torch.randn(17, 8, generator=g).bfloat16()
    ids, dist = nearest(x, c, "l2", return_dist=True, chunk=7)
    assert dist.dtype == torch.float32
    # the bf16 values are exact in fp32/fp64, so the answer is the float64 one on the same values
    assert_ids_match(ids, x.float(), c.float(), "l2")


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        nearest(torch.randn(2, 3, 4), torch.randn(5, 4))
    with pytest.raises(ValueError):
        nearest(torch.randn(2, 3), torch.randn(5, 4))
