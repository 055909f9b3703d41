"""VectorQuantizer on one CPU process: contract, gradient estimators, losses, EMA, k-means, restarts, state."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmtok.quantize import QuantizeOutput, VectorQuantizer, code_counts, usage_stats
from mmtok.quantize.config import QuantizerConfig
from mmtok.quantize.vq import rotate_to


def make(input_dim=6, seed=0, entropy_loss=False, **cfg):
    torch.manual_seed(seed)
    fields = dict(codebook_size=16, dim=4)
    fields.update(cfg)
    return VectorQuantizer(input_dim, QuantizerConfig(**fields), entropy_loss=entropy_loss)


def randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- contract


@pytest.mark.parametrize("input_dim,ema", [(6, False), (4, True)])
def test_shapes_dtypes_and_keys(input_dim, ema):
    vq = make(input_dim, ema=ema, entropy_loss=True)
    assert (vq.codebook_size, vq.dim, vq.num_codebooks, vq.input_dim) == (16, 4, 1, input_dim)
    assert isinstance(vq.proj_in, torch.nn.Identity) == (input_dim == 4)
    z = randn(2, 3, 5, input_dim)
    out = vq(z)
    assert isinstance(out, QuantizeOutput)
    assert out.z_q.shape == z.shape and out.z_q.dtype == torch.float32
    assert out.ids.shape == (2, 3, 5) and out.ids.dtype == torch.long
    assert 0 <= int(out.ids.min()) and int(out.ids.max()) < 16
    expected = {"commitment", "entropy"} | (set() if ema else {"codebook"})
    assert set(out.losses) == expected
    assert all(v.dim() == 0 and v.dtype == torch.float32 for v in out.losses.values())
    assert set(out.stats) == {"usage", "perplexity", "entropy_bits", "restarts"}
    assert not any(v.requires_grad for v in out.stats.values())
    out_bf16 = vq(z.bfloat16())
    assert out_bf16.z_q.dtype == torch.bfloat16 and out_bf16.ids.shape == (2, 3, 5)


def test_bad_input_raises_value_error():
    vq = make(6)
    with pytest.raises(ValueError, match=r"\[\.\.\., 6\]"):
        vq(torch.randn(3, 5))
    with pytest.raises(ValueError):
        vq(torch.zeros(3, 6, dtype=torch.long))


def test_non_contiguous_input_matches_contiguous():
    vq = make(6).eval()
    z = randn(2, 6, 3, 5).permute(0, 2, 3, 1)  # channel-last view of a channel-first tensor
    assert not z.is_contiguous()
    with torch.no_grad():
        a, b = vq(z), vq(z.contiguous())
    assert torch.equal(a.ids, b.ids) and torch.equal(a.z_q, b.z_q)


@pytest.mark.parametrize("l2_norm", [True, False])
def test_lookup_equals_forward_in_eval(l2_norm):
    vq = make(6, l2_norm=l2_norm).eval()
    z = randn(3, 4, 6)
    with torch.no_grad():
        out = vq(z)
        assert torch.equal(vq.lookup(out.ids), out.z_q)
    # the ids really are the nearest codes in the (normalised) projected space
    x = vq.proj_in(z.reshape(-1, 6))
    codes = vq.codebook.detach()
    if l2_norm:
        x, codes = F.normalize(x, dim=1), F.normalize(codes, dim=1)
    ref = torch.cdist(x.double(), codes.double()).argmin(1)
    assert torch.equal(out.ids.reshape(-1), ref)


def test_bf16_autocast_keeps_fp32_math():
    vq = make(6).eval()
    z = randn(4, 8, 6)
    with torch.no_grad():
        ref = vq(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = vq(z)
            lk = vq.lookup(ref.ids)
        # bf16 inputs are upcast first: same answer as fp32 on the same (rounded) values
        zb = z.bfloat16()
        from_bf16, ref_b = vq(zb), vq(zb.float())
    assert torch.equal(auto.ids, ref.ids) and auto.z_q.dtype == torch.float32
    assert torch.equal(auto.z_q, ref.z_q)  # a bf16 projection would not be bitwise equal
    assert lk.dtype == torch.float32 and torch.equal(lk, ref.z_q)
    assert torch.equal(from_bf16.ids, ref_b.ids)
    # ...and the bf16 model would differ: show this test can see the difference
    with torch.no_grad():
        bf16_proj = F.linear(z.bfloat16(), vq.proj_in.weight.bfloat16(), vq.proj_in.bias.bfloat16()).float()
    assert not torch.equal(bf16_proj, vq.proj_in(z))


# ----------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("gradient", ["ste", "rotation"])
def test_gradients_reach_encoder_input(gradient):
    vq = make(6, gradient=gradient)
    z = randn(2, 5, 6).requires_grad_(True)
    out = vq(z)
    with torch.no_grad():
        q = vq.lookup(out.ids)
    torch.testing.assert_close(out.z_q, q, rtol=1e-5, atol=1e-6)  # forward value is the code
    (out.z_q * randn(2, 5, 6, seed=9)).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert vq.proj_in.weight.grad.abs().sum() > 0 and vq.proj_out.weight.grad.abs().sum() > 0


def test_rotation_trick_is_a_scaled_rotation():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    q = torch.randn(7, 5, generator=g, dtype=torch.float64)
    out = rotate_to(x, q)
    torch.testing.assert_close(out, q)
    lam = (q.norm(dim=1) / x.norm(dim=1)).unsqueeze(1)
    u, qh = (x / x.norm(dim=1, keepdim=True)).detach(), q / q.norm(dim=1, keepdim=True)
    # R is orthogonal with R u = qh, so the gradient of <out, qh> is lam * u, and |grad| = lam |g|
    (gx,) = torch.autograd.grad((out * qh).sum(), x, retain_graph=True)
    torch.testing.assert_close(gx, lam * u)
    gout = torch.randn(7, 5, generator=g, dtype=torch.float64)
    (gx,) = torch.autograd.grad((out * gout).sum(), x)
    torch.testing.assert_close(gx.norm(dim=1), lam.squeeze(1) * gout.norm(dim=1))
    assert not torch.allclose(gx, gout), "rotation gradient must differ from straight-through"


def test_commitment_and_codebook_losses_grad_different_things():
    vq = make(6, l2_norm=False)
    z = randn(3, 7, 6).requires_grad_(True)
    out = vq(z)
    c, k = out.losses["commitment"], out.losses["codebook"]
    torch.testing.assert_close(c, k)  # same value, different stop-gradients
    gz, gcb, gw = torch.autograd.grad(c, [z, vq.codebook, vq.proj_in.weight], retain_graph=True, allow_unused=True)
    assert gz.abs().sum() > 0 and gw.abs().sum() > 0
    assert gcb is None or gcb.abs().sum() == 0
    gz, gcb, gw = torch.autograd.grad(k, [z, vq.codebook, vq.proj_in.weight], allow_unused=True)
    assert gcb.abs().sum() > 0
    assert gz is None or gz.abs().sum() == 0
    assert gw is None or gw.abs().sum() == 0
    # only used codes get a codebook gradient
    used = torch.zeros(16, dtype=torch.bool)
    used[out.ids.unique()] = True
    assert (gcb[~used] == 0).all() and (gcb[used].abs().sum(1) > 0).all()


def test_entropy_loss_matches_dense_reference_and_chunks():
    vq = make(4, entropy_loss=True, entropy_temperature=0.5)
    z = randn(37, 4).requires_grad_(True)
    vq.entropy_chunk = 5
    loss = vq(z).losses["entropy"]
    x = F.normalize(z.double(), dim=1)
    codes = F.normalize(vq.codebook.detach().double(), dim=1)
    p = torch.softmax(-torch.cdist(x, codes) ** 2 / 0.5, dim=1)
    avg = p.mean(0)
    ref = -(p * p.log()).sum(1).mean() + (avg * avg.log()).sum()
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-5)
    (g,) = torch.autograd.grad(loss, z)
    vq.entropy_chunk = 4096
    (g_full,) = torch.autograd.grad(vq(z).losses["entropy"], z)
    assert g.abs().sum() > 0
    torch.testing.assert_close(g, g_full, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------- state updates


def test_ema_moves_codes_to_assigned_means():
    vq = make(3, codebook_size=4, dim=3, l2_norm=False, ema=True, ema_decay=0.5)
    centres = torch.tensor([[5.0, 0, 0], [0, 5, 0], [0, 0, 5], [-5, 0, 0]])
    with torch.no_grad():
        vq.codebook.copy_(centres)
        vq.ema_sum.copy_(centres)
    z = centres[[0, 0, 1, 2, 2, 2]] + 0.5 + randn(6, 3) * 0.1  # no input near code 3
    out = vq.train()(z)
    assert out.ids.tolist() == [0, 0, 1, 2, 2, 2]
    counts = torch.tensor([2.0, 1, 3, 0])
    sums = torch.zeros(4, 3).index_add_(0, out.ids, z)
    count = 0.5 * 1 + 0.5 * counts
    n = count.sum()
    smoothed = (count + 1e-5) / (n + 4 * 1e-5) * n
    expected = (0.5 * centres + 0.5 * sums) / smoothed[:, None]
    torch.testing.assert_close(vq.codebook, expected)
    torch.testing.assert_close(vq.ema_count, count)
    means = sums[:3] / counts[:3, None]
    assert ((vq.codebook[:3] - means).norm(dim=1) < (centres[:3] - means).norm(dim=1)).all()
    # eval mode never updates
    before = vq.codebook.clone()
    vq.eval()(z)
    assert torch.equal(vq.codebook, before)


@pytest.mark.parametrize("l2_norm", [False, True])
def test_kmeans_init_draws_codes_from_data(l2_norm):
    vq = make(2, codebook_size=4, dim=2, l2_norm=l2_norm, kmeans_init=True, kmeans_iters=5)
    assert not bool(vq.initted)
    centres = torch.tensor([[3.0, 3], [-3, 3], [-3, -3], [3, -3]])
    z = centres.repeat(50, 1) + randn(200, 2) * 0.05
    vq.eval()(z)
    assert not bool(vq.initted), "eval must not initialise"
    vq.train()(z)
    assert bool(vq.initted)
    target = F.normalize(centres, dim=1) if l2_norm else centres
    dist_to_centre = torch.cdist(vq.codebook.detach(), target).min(1).values
    assert (dist_to_centre < 0.1).all(), dist_to_centre
    # a second training batch does not re-initialise
    snapshot = vq.codebook.detach().clone()
    vq(z + 10)
    assert torch.equal(vq.codebook.detach(), snapshot)


@pytest.mark.parametrize("ema", [False, True])
def test_dead_code_restart_revives_codes(ema):
    vq = make(2, codebook_size=16, dim=2, l2_norm=False, ema=ema, restart_after=2).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.full((16, 2), 100.0) + torch.arange(16.0)[:, None])
        vq.codebook[0] = 0.0
        if ema:
            vq.ema_sum.copy_(vq.codebook)
    z = randn(64, 2) * 2.0
    first = vq(z)
    assert first.ids.unique().tolist() == [0]
    assert vq.steps_unused.tolist() == [0] + [1] * 15 and int(vq.restarts) == 0
    vq(z)  # 15 codes reach restart_after=2: replaced by inputs of this batch
    assert int(vq.restarts) == 15 and (vq.steps_unused == 0).all()
    revived = vq.codebook.detach()[1:]
    exact = (revived[:, None, :] == z[None, :, :]).all(-1).any(1)
    assert exact.all(), "restarted codes must be inputs of the batch"
    if ema:
        assert torch.equal(vq.ema_count[1:], torch.ones(15)) and torch.equal(vq.ema_sum[1:], revived)
    third = vq(z)
    assert third.stats["usage"] > first.stats["usage"] and float(third.stats["restarts"]) >= 15


def test_restart_after_zero_never_restarts():
    vq = make(2, codebook_size=8, dim=2, l2_norm=False).train()
    with torch.no_grad():
        vq.codebook.fill_(100.0)
        vq.codebook[0] = 0.0
    for _ in range(3):
        vq(randn(16, 2))
    assert int(vq.restarts) == 0 and (vq.codebook.detach()[1:] == 100).all()


@pytest.mark.parametrize("below,restarted", [(0.0, 0), (0.05, 0), (0.2, 1)])
def test_restart_below_replaces_rarely_used_codes(below, restarted):
    # codes at x = 0, 10, 20, 30; the batch puts 30 rows on each of the first three and one row on the last: after
    # the EMA step (decay 0.5) its count is 1.0 against a mean of 11.9, so restart_below 0.2 replaces it although
    # it was used this step (restart_after cannot: it only sees codes with no use at all)
    vq = make(2, codebook_size=4, dim=2, l2_norm=False, ema=True, ema_decay=0.5, restart_below=below).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]]))
        vq.ema_sum.copy_(vq.codebook)
    z = torch.cat([c + 0.1 * randn(30, 2, seed=i) for i, c in enumerate(vq.codebook.detach()[:3])]
                  + [vq.codebook.detach()[3:] + 0.1])
    vq(z)
    assert int(vq.restarts) == restarted
    moved = not torch.allclose(vq.codebook.detach()[3], torch.tensor([30.05, 0.05]), atol=1e-4)
    assert moved == bool(restarted)


def test_restart_below_needs_ema():
    with pytest.raises(ValueError, match="restart_below reads the EMA"):
        QuantizerConfig(restart_below=0.1)


# ----------------------------------------------------------------------------------------------- stats


def test_usage_stats_match_numpy():
    vq = make(6, codebook_size=32).eval()
    out = vq(randn(5, 9, 6))
    ids = out.ids.numpy().ravel()
    counts = np.bincount(ids, minlength=32)
    p = counts[counts > 0] / counts.sum()
    entropy = -(p * np.log(p)).sum()
    assert math.isclose(float(out.stats["usage"]), (counts > 0).mean(), rel_tol=1e-6)
    assert math.isclose(float(out.stats["perplexity"]), math.exp(entropy), rel_tol=1e-5)
    assert math.isclose(float(out.stats["entropy_bits"]), entropy / math.log(2), rel_tol=1e-5)
    assert torch.equal(code_counts(out.ids, 32), torch.from_numpy(counts))


def test_code_counts_and_usage_edge_cases():
    assert code_counts(torch.tensor([[0, 2], [2, 2]]), 4).tolist() == [1, 0, 3, 0]
    with pytest.raises(ValueError):
        code_counts(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError):
        code_counts(torch.tensor([-1, 0]), 4)
    s = usage_stats(torch.zeros(8, dtype=torch.long))
    assert float(s["usage"]) == 0 and float(s["perplexity"]) == 1 and float(s["entropy_bits"]) == 0
    s = usage_stats(torch.full((8,), 3))
    assert float(s["usage"]) == 1 and math.isclose(float(s["perplexity"]), 8, rel_tol=1e-6)
    assert math.isclose(float(s["entropy_bits"]), 3, rel_tol=1e-6)


# ----------------------------------------------------------------------------------------------- checkpoints


def test_state_dict_round_trip_and_exact_resume():
    cfg = dict(ema=True, kmeans_init=True, kmeans_iters=2, restart_after=1, ema_decay=0.9)
    a = make(6, seed=0, **cfg).train()
    for step in range(3):
        a(randn(4, 5, 6, seed=10 + step))
    keys = set(a.state_dict())
    assert {"codebook", "ema_count", "ema_sum", "steps_unused", "initted", "restarts"} <= keys
    assert bool(a.initted) and int(a.restarts) > 0
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = make(6, seed=123, **cfg)
    b.load_state_dict(torch.load(buf, weights_only=True))
    z = randn(3, 5, 6, seed=50)
    with torch.no_grad():
        oa, ob = a.eval()(z), b.eval()(z)
    assert torch.equal(oa.ids, ob.ids) and torch.equal(oa.z_q, ob.z_q)
    # resuming: the same next training step on both gives bitwise identical state (no re-init)
    a.train(), b.train()
    for m in (a, b):
        torch.manual_seed(7)
        m(randn(4, 5, 6, seed=60))
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_raw_code_output_searches_normalised_codes_and_returns_raw_rows():
    """code_output "raw" (DAC): ids from the l2-normalised search, outputs the raw codebook rows through proj_out,
    lookup equal to forward; refused with an EMA codebook or without l2_norm."""
    from mmtok.errors import RecipeError
    from mmtok.quantize.config import QuantizerConfig
    from mmtok.quantize.vq import VectorQuantizer

    torch.manual_seed(0)
    cfg = QuantizerConfig(codebook_size=16, dim=4, l2_norm=True, code_output="raw")
    vq = VectorQuantizer(6, cfg).eval()
    with torch.no_grad():
        vq.codebook.mul_(torch.rand(16, 1) * 3 + 0.5)  # rows of different lengths
    z = torch.randn(50, 6)
    with torch.no_grad():
        out = vq(z)
        x = torch.nn.functional.normalize(vq.proj_in(z), dim=1)
    expected = (x @ torch.nn.functional.normalize(vq.codebook, dim=1).T).argmax(1)
    assert torch.equal(out.ids, expected)
    with torch.no_grad():
        assert torch.allclose(out.z_q, vq.proj_out(vq.codebook[expected]), atol=1e-6)
        assert torch.equal(vq.lookup(out.ids), out.z_q)
        normalized = VectorQuantizer(6, QuantizerConfig(codebook_size=16, dim=4, l2_norm=True)).eval()
        normalized.load_state_dict(vq.state_dict())
        assert torch.equal(normalized(z).ids, out.ids) and not torch.allclose(normalized(z).z_q, out.z_q)
    from mmtok import config

    for bad in ("model.quantizer.ema=true", "model.quantizer.l2_norm=false"):
        with pytest.raises(RecipeError, match="code_output"):
            config.load("test_tiny", ["model.quantizer.code_output=raw", bad])
