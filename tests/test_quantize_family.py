"""The quantizer family beyond plain VQ: residual VQ, FSQ, LFQ; their configs and their use in VQGAN."""
from __future__ import annotations

import datetime
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mmtok import config, families
from mmtok.quantize.config import FSQConfig, LFQConfig, QuantizerConfig, ResidualVQConfig
from mmtok.errors import MmtokError, RecipeError
from mmtok.quantize import FSQ, LFQ, QuantizeOutput, ResidualVQ, VectorQuantizer, build_quantizer
from mmtok.registry import QUANTIZERS

CONFIGS = {
    "vq": QuantizerConfig(codebook_size=16, dim=4),
    "rvq": ResidualVQConfig(levels=3, codebook_size=16, dim=4),
    "fsq": FSQConfig(levels=[8, 5, 3]),
    "lfq": LFQConfig(dim=5),
}
LOSSES = {"vq": {"commitment", "codebook"}, "rvq": {"commitment", "codebook"}, "fsq": set(),
          "lfq": {"commitment", "entropy"}}


def make(kind, input_dim=6, seed=0, **fields):
    torch.manual_seed(seed)
    cfg = CONFIGS[kind].model_copy(update=fields)
    return build_quantizer(input_dim, type(cfg).model_validate(cfg.model_dump()), entropy_loss=kind == "lfq")


def randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def level_shape(kind, shape):
    return (*shape, 3) if kind == "rvq" else shape


# ----------------------------------------------------------------------------------------------- contract


def test_registry_and_builder_pick_the_class_by_kind():
    assert {"vq", "rvq", "fsq", "lfq"} <= set(QUANTIZERS.names())
    classes = {"vq": VectorQuantizer, "rvq": ResidualVQ, "fsq": FSQ, "lfq": LFQ}
    for kind, cls in classes.items():
        q = make(kind)
        assert type(q) is cls
        cfg = CONFIGS[kind]
        assert (q.codebook_size, q.dim, q.num_codebooks) == (cfg.codebook_size, cfg.dim, cfg.num_codebooks)
    assert (CONFIGS["rvq"].num_codebooks, CONFIGS["fsq"].codebook_size, CONFIGS["fsq"].dim) == (3, 120, 3)
    assert CONFIGS["lfq"].codebook_size == 32


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_shapes_dtypes_losses_and_stats(kind):
    q = make(kind)
    z = randn(2, 3, 5, 6)
    out = q(z)
    assert isinstance(out, QuantizeOutput)
    assert out.z_q.shape == z.shape and out.z_q.dtype == torch.float32
    assert out.ids.shape == level_shape(kind, (2, 3, 5)) and out.ids.dtype == torch.long
    assert 0 <= int(out.ids.min()) and int(out.ids.max()) < q.codebook_size
    assert set(out.losses) == LOSSES[kind]
    assert all(v.dim() == 0 and v.dtype == torch.float32 and torch.isfinite(v) for v in out.losses.values())
    assert {"usage", "perplexity", "entropy_bits"} <= set(out.stats)
    assert not any(v.requires_grad for v in out.stats.values())
    out_bf16 = q(z.bfloat16())
    assert out_bf16.z_q.dtype == torch.bfloat16 and out_bf16.ids.shape == out.ids.shape
    with pytest.raises(ValueError):
        q(torch.zeros(3, 5))


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_gradient_reaches_the_input(kind):
    q = make(kind)
    z = randn(4, 6).requires_grad_()
    out = q(z)
    (out.z_q * randn(4, 6, seed=2)).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    if out.losses:  # the losses alone also reach the input
        z.grad = None
        q(z).losses["commitment"].backward()
        assert z.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_lookup_of_ids_is_forward_z_q_in_eval(kind):
    q = make(kind).eval()
    z = randn(2, 4, 4, 6)
    with torch.no_grad():
        out = q(z)
        assert torch.equal(q.lookup(out.ids), out.z_q)
    out = q(z)  # with grad enabled too (straight-through forward values are exact for fsq/lfq)
    assert torch.allclose(q.lookup(out.ids), out.z_q, atol=1e-6)


def _numpy_usage(ids: np.ndarray, k: int) -> dict[str, float]:
    counts = np.bincount(ids.reshape(-1), minlength=k).astype(np.float64)
    p = counts / counts.sum()
    h = -(p[p > 0] * np.log(p[p > 0])).sum()
    return {"usage": (counts > 0).mean(), "perplexity": math.exp(h), "entropy_bits": h / math.log(2)}


@pytest.mark.parametrize("kind", ["fsq", "lfq", "rvq"])
def test_usage_stats_match_numpy(kind):
    q = make(kind).train()
    out = q(randn(64, 6))
    ids = out.ids.numpy()
    if kind == "rvq":
        per_level = [_numpy_usage(ids[:, i], q.codebook_size) for i in range(3)]
        for i, ref in enumerate(per_level):
            assert out.stats[f"usage_l{i}"].item() == pytest.approx(ref["usage"], abs=1e-6)
        expected = {k: np.mean([r[k] for r in per_level]) for k in per_level[0]}
    else:
        expected = _numpy_usage(ids, q.codebook_size)
    for name, value in expected.items():
        assert out.stats[name].item() == pytest.approx(value, rel=1e-5), name


# ----------------------------------------------------------------------------------------------- residual VQ


def test_rvq_residual_shrinks_with_levels_and_levels_code_the_residual():
    q = make("rvq", input_dim=4, levels=4, l2_norm=False, kmeans_init=True)
    z = randn(512, 4)
    q.train()(z)  # k-means init of every level on its own residual
    q.eval()
    with torch.no_grad():
        ids = q(z).ids
        errors = [(z - q.lookup(ids[:, :n])).pow(2).sum().item() for n in range(1, 5)]
        assert z.pow(2).sum().item() > errors[0] > errors[1] > errors[2] > errors[3]
        for i in range(1, 4):  # level i quantizes what the first i levels left
            assert torch.equal(q.quantizers[i](z - q.lookup(ids[:, :i])).ids, ids[:, i])


def test_rvq_lookup_of_n_levels_is_the_sum_of_their_codes():
    q = make("rvq", levels=3).eval()
    ids = torch.randint(16, (2, 5, 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        parts = [q.quantizers[i].lookup(ids[..., i]) for i in range(3)]
        assert torch.equal(q.lookup(ids[..., :1]), parts[0])
        assert torch.allclose(q.lookup(ids[..., :2]), parts[0] + parts[1])
        assert torch.allclose(q.lookup(ids), parts[0] + parts[1] + parts[2])
    for bad in (ids[..., :0], torch.randint(16, (2, 5, 4))):
        with pytest.raises(ValueError, match="1 <= n <= 3"):
            q.lookup(bad)


def test_rvq_quantizer_dropout_uses_fewer_levels_in_training_only():
    q = make("rvq", levels=4, quantizer_dropout=1.0).train()
    z = randn(32, 6)
    used = []
    for _ in range(12):
        out = q(z)
        n = int(out.stats["levels_used"])
        used.append(n)
        assert out.ids.shape == (32, 4)  # every level still reports its ids
        assert torch.allclose(out.z_q, q.lookup(out.ids[:, :n]), atol=1e-5)
        (out.z_q.sum() + sum(out.losses.values())).backward()
        # every parameter stays in the graph (DDP without find_unused_parameters)
        assert all(p.grad is not None for p in q.parameters())
        q.zero_grad()
    assert min(used) < 4 and set(used) <= {1, 2, 3, 4} and len(set(used)) > 1
    q.eval()
    assert int(q(z).stats["levels_used"]) == 4
    # the draws come from saved state: a copy loaded from the state_dict draws the same sequence
    q.train()
    state = {k: v.clone() for k, v in q.state_dict().items()}
    first = [int(q(z).stats["levels_used"]) for _ in range(6)]
    q.load_state_dict(state)
    assert [int(q(z).stats["levels_used"]) for _ in range(6)] == first
    # without dropout, training uses every level
    assert int(make("rvq", levels=4).train()(z).stats["levels_used"]) == 4


def test_rvq_dropped_levels_add_no_loss():
    q = make("rvq", levels=3, quantizer_dropout=1.0).train()
    z = randn(16, 6)
    for _ in range(50):
        out = q(z)
        if int(out.stats["levels_used"]) == 1:
            break
    assert int(out.stats["levels_used"]) == 1
    level0 = q.quantizers[0].eval()(z)  # eval: same codes, no state change
    q.eval()
    assert torch.allclose(out.losses["commitment"], level0.losses["commitment"])


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    try:
        results = {}
        for kind in ("rvq", "fsq", "lfq"):
            # different seeds per rank: different weights, dropout seeds and data; n and stats must still agree
            q = make(kind, seed=10 + rank, levels=4, quantizer_dropout=0.7) if kind == "rvq" else make(kind, seed=rank)
            q.train()
            stats = []
            for step in range(6):
                out = q(randn(40, 6, seed=100 * rank + step) + rank)
                stats.append({k: v.clone() for k, v in out.stats.items()})
            results[kind] = stats
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # both ranks past every collective before either tears gloo down
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes each import torch: several seconds on 2 shared cores
def test_dropout_draw_and_stats_identical_across_ranks(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for kind in ("rvq", "fsq", "lfq"):
        for step, (a, b) in enumerate(zip(r0[kind], r1[kind])):
            assert a.keys() == b.keys()
            for k in a:
                assert torch.equal(a[k], b[k]), f"{kind} step {step}: stat {k} differs across ranks"
    used = [int(s["levels_used"]) for s in r0["rvq"]]
    assert min(used) < 4, used  # dropout really happened


# ----------------------------------------------------------------------------------------------- FSQ


def _fsq_preimage(q: FSQ, levels_int: torch.Tensor) -> torch.Tensor:
    """Inputs whose bounded value is exactly the integer level (the inverse of FSQ.bound)."""
    levels = q.levels.double()
    half_l = (levels - 1) * (1 + 1e-3) / 2
    offset = torch.where(q.levels % 2 == 0, 0.5, 0.0).double()
    return (torch.atanh((levels_int.double() + offset) / half_l) - torch.atanh(offset / half_l)).float()


def test_fsq_ids_and_codes_are_a_bijection_over_the_whole_grid():
    q = make("fsq", input_dim=3).eval()  # identity projections
    K = q.codebook_size
    codes = q.ids_to_codes(torch.arange(K))
    assert codes.shape == (K, 3) and torch.unique(codes, dim=0).shape[0] == K
    assert codes.min() >= -1 and codes.max() <= 1
    assert torch.equal(q.lookup(torch.arange(K)), codes)
    ints = codes * q.half_width  # the integer levels, exact
    with torch.no_grad():
        out = q(_fsq_preimage(q, ints))
    assert torch.equal(out.ids, torch.arange(K))
    assert torch.equal(out.z_q, codes)
    assert out.stats["usage"] == 1.0
    with pytest.raises(ValueError, match=r"\[0, 120\)"):
        q.lookup(torch.tensor([120]))


def test_fsq_even_levels_have_the_half_level_offset():
    q = make("fsq", input_dim=4, levels=[8, 6, 5, 3]).eval()
    with torch.no_grad():
        top, bottom, zero = q(torch.full((1, 4), 50.0)), q(torch.full((1, 4), -50.0)), q(torch.zeros(1, 4))
    # even L: integer levels -L/2 .. L/2 - 1 (codes -1 .. 1 - 2/L); odd L: -(L-1)/2 .. (L-1)/2 (codes -1 .. 1)
    assert torch.allclose(top.z_q, torch.tensor([[3 / 4, 2 / 3, 1.0, 1.0]]))
    assert torch.allclose(bottom.z_q, torch.full((1, 4), -1.0))
    assert torch.equal(zero.z_q, torch.zeros(1, 4))  # bound(0) == 0 for every level count
    assert int(top.ids) == q.codebook_size - 1 and int(bottom.ids) == 0
    # every channel reaches exactly L values
    x = torch.linspace(-6, 6, 2001).unsqueeze(1).expand(-1, 4)
    with torch.no_grad():
        codes = q(x).z_q
    for c, L in enumerate([8, 6, 5, 3]):
        values = torch.unique(codes[:, c] * (L // 2)).tolist()
        expected = list(range(-(L // 2), L // 2)) if L % 2 == 0 else list(range(-(L // 2), L // 2 + 1))
        assert values == expected, (L, values)


def test_fsq_runs_in_fp32_under_bf16_autocast():
    q = make("fsq", input_dim=6).eval()
    z = randn(256, 6) * 3
    with torch.no_grad():
        ref = q(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = q(z)
    assert torch.equal(auto.ids, ref.ids) and auto.z_q.dtype == torch.float32
    assert torch.equal(auto.z_q, ref.z_q)


def test_fsq_has_no_entropy_loss():
    with pytest.raises(MmtokError, match="no entropy loss"):
        FSQ(6, FSQConfig(), entropy_loss=True)


# ----------------------------------------------------------------------------------------------- LFQ


def test_lfq_ids_are_the_binary_number_of_the_signs():
    q = make("lfq", input_dim=5, codebook_scale=0.5).eval()
    z = randn(100, 5)
    out = q(z)
    bits = (z > 0).long()
    expected = sum(bits[:, d] * 2 ** (4 - d) for d in range(5))  # channel 0 most significant
    assert torch.equal(out.ids, expected)
    assert torch.equal(out.z_q, torch.where(z > 0, 0.5, -0.5))
    assert out.losses["commitment"].item() == pytest.approx(F.mse_loss(z, out.z_q).item(), rel=1e-6)
    assert torch.equal(q.lookup(torch.arange(32)), q.ids_to_codes(torch.arange(32)))
    assert torch.unique(q.ids_to_codes(torch.arange(32)), dim=0).shape[0] == 32


def _dense_entropy(x: torch.Tensor, scale: float, temperature: float) -> torch.Tensor:
    """Reference: softmax over all 2**dim explicit codes (MSB-first ids), as MAGVIT-v2 writes it."""
    dim = x.shape[1]
    bits = (torch.arange(2**dim).unsqueeze(1) >> torch.arange(dim - 1, -1, -1)) & 1
    codes = (bits * 2 - 1).to(x.dtype) * scale
    logits = -torch.cdist(x, codes).pow(2) / temperature
    logp = torch.log_softmax(logits, dim=1)
    p = logp.exp()
    avg = p.mean(0)
    return -(p * logp).sum(1).mean() + (avg * torch.log(avg.clamp_min(1e-300))).sum()


@pytest.mark.parametrize("dim", [1, 5, 6])
def test_lfq_chunked_entropy_equals_dense_reference(dim):
    q = make("lfq", input_dim=dim, dim=dim, codebook_scale=0.7, entropy_temperature=0.5)
    q.entropy_chunk = 7
    x = (randn(50, dim) * 0.6).double().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    got = q.entropy(x)
    ref = _dense_entropy(x_ref, 0.7, 0.5)
    assert got.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    got.backward()
    ref.backward()
    assert torch.allclose(x.grad, x_ref.grad, rtol=1e-8, atol=1e-12)
    with torch.no_grad():  # the no-grad path (no checkpointing) gives the same value
        assert q.entropy(x).item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)


class _SizeRecorder(TorchDispatchMode):
    """Records the shape of every tensor any op produces (forward, checkpoint recompute and backward)."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def test_lfq_entropy_memory_stays_bounded_by_the_chunk():
    n, dim, chunk = 300, 8, 7  # K = 256: a dense N x K table would be 76,800 entries
    q = make("lfq", input_dim=dim, dim=dim)
    q.entropy_chunk = chunk
    x = randn(n, dim).requires_grad_()

    def check(shapes):
        # row-wise per-bit tensors are O(N x dim); everything else O(chunk x 2^ceil(dim/2) + 2^dim)
        bound_rows, bound_rest = 2 * n * dim, max(chunk * 2 ** (dim - dim // 2), 2**dim)
        for s in shapes:
            numel = math.prod(s)
            assert numel <= (bound_rows if s and s[0] == n else bound_rest), s

    with _SizeRecorder() as rec:
        q.entropy(x).backward()
    check(rec.shapes)
    assert (chunk, 16) in rec.shapes and (16, 16) in rec.shapes  # the per-group chunk tables and the accumulator
    with _SizeRecorder() as rec:  # the check can fail: the dense reference breaks it
        _dense_entropy(x, 1.0, 0.01)
    with pytest.raises(AssertionError):
        check(rec.shapes)


def test_lfq_entropy_gradient_reaches_the_input_and_the_default_chunk_is_large():
    q = make("lfq", input_dim=6)
    z = randn(40, 6).requires_grad_()
    q(z).losses["entropy"].backward()
    assert z.grad.abs().sum() > 0
    assert LFQ.entropy_chunk >= 1024


# ----------------------------------------------------------------------------------------------- config


def test_config_union_dispatches_on_kind_and_round_trips():
    for q in [{"kind": "fsq", "levels": [5, 5, 5]}, {"kind": "rvq", "levels": 3, "codebook_size": 16},
              {"kind": "lfq", "dim": 6}, {"kind": "vq", "dim": 3}, {"dim": 3}]:
        recipe = config.load({"model": {"preset": "test_f4", "quantizer": q}})
        cfg = recipe.model.quantizer
        assert cfg.kind == q.get("kind", "vq")
        assert config.load(__import__("yaml").safe_load(config.dump(recipe))) == recipe
    # a kind other than the preset's starts afresh; the same kind merges over the preset's fields
    assert config.load({"model": {"preset": "test_f4", "quantizer": {"kind": "fsq"}}}).model.quantizer == FSQConfig()
    merged = config.load({"model": {"preset": "test_f4", "quantizer": {"kind": "vq", "dim": 3}}}).model.quantizer
    assert (merged.codebook_size, merged.dim) == (32, 3)
    from mmtok.families.vqgan.config import VQGANConfig

    assert isinstance(VQGANConfig().quantizer, QuantizerConfig)


@pytest.mark.parametrize("kind,typo,fix", [
    ("fsq", "levls", "levels"), ("rvq", "quantizer_dropuot", "quantizer_dropout"),
    ("lfq", "codebook_scal", "codebook_scale"), ("vq", "codebok_size", "codebook_size")])
def test_did_you_mean_inside_each_quantizer_kind(kind, typo, fix):
    with pytest.raises(RecipeError) as e:
        config.load({"model": {"preset": "test_f4", "quantizer": {"kind": kind, typo: 1}}})
    assert f"model.quantizer.{typo}: unknown key (did you mean {fix!r}?)" in str(e.value)


def test_quantizer_config_errors_are_clear():
    with pytest.raises(RecipeError, match="quantizer kind must be one of 'vq', 'rvq', 'fsq', 'lfq'"):
        config.load({"model": {"family": "vqgan", "quantizer": {"kind": "fqs"}}})
    with pytest.raises(RecipeError, match=r"model\.quantizer\.levels\.1: Input should be greater than or equal to 2"):
        config.load({"model": {"family": "vqgan", "quantizer": {"kind": "fsq", "levels": [5, 1]}}})
    with pytest.raises(RecipeError, match="at most 1048576"):
        config.load({"model": {"family": "vqgan", "quantizer": {"kind": "fsq", "levels": [8] * 7}}})
    with pytest.raises(RecipeError, match=r"model\.quantizer\.dim: Input should be less than or equal to 20"):
        config.load({"model": {"family": "vqgan", "quantizer": {"kind": "lfq", "dim": 24}}})
    with pytest.raises(RecipeError, match="did you mean 'levels'"):
        config.load("quickstart", ["model.quantizer.kind=fsq", "model.quantizer.levls=[5,5]"])


# ----------------------------------------------------------------------------------------------- VQGAN


@pytest.mark.parametrize("quantizer", [{"kind": "rvq", "levels": 3, "codebook_size": 16, "dim": 4,
                                        "quantizer_dropout": 0.5},
                                       {"kind": "fsq", "levels": [5, 5, 5]}, {"kind": "lfq", "dim": 6}])
def test_vqgan_with_each_kind_trains_and_round_trips(quantizer):
    cfg = config.load({"model": {"preset": "test_f4", "quantizer": quantizer}}).model
    torch.manual_seed(0)
    model = families.build_model(cfg, ["entropy"] if quantizer["kind"] == "lfq" else [])
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = model(x)
    g, levels = 4, (3,) if quantizer["kind"] == "rvq" else ()
    assert out.recon.shape == x.shape and out.ids.shape == (2, g, g, *levels)
    (out.recon.pow(2).mean() + sum(out.losses.values())).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    model.eval()
    ids = model.encode(x)
    assert torch.equal(ids, model(x).ids)
    assert torch.allclose(model.decode(ids), model(x).recon, atol=1e-5)
    meta = model.meta
    assert (meta["quantizer"], meta["codebook_size"], meta["num_codebooks"], meta["codebook_dim"]) == (
        cfg.quantizer.kind, cfg.quantizer.codebook_size, cfg.quantizer.num_codebooks, cfg.quantizer.dim)
    if levels:  # decode from the first level only
        assert model.decode(ids[..., :1]).shape == x.shape
