"""TokenFlow's multi-scale residual option (model.scales): ids [B, sum(s*s)] coarse to fine, each scale's ids in
range, the residual really shrinks the quantisation error scale by scale (and the check fails without residual
subtraction), scale drop only in training, deterministic eval, export graphs equal to eager, recipe errors on one
line, k-means / EMA / restarts with raw codes, and the LM stage laying a multi-scale bundle out scale by scale."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmtok import config, families
from mmtok.errors import RecipeError
from mmtok.families.tokenflow.config import DualCodebookConfig
from mmtok.families.tokenflow.multiscale import MultiScaleDualCodebook, down, up

PRESET = "test_tokenflow_multiscale"  # 16 px, 4 x 4 grid, scales [1, 2, 4]: 21 ids, 32 codes


def _model(**model):
    recipe = config.load({"model": {"preset": PRESET, **model}})
    fam = families.get("tokenflow")
    torch.manual_seed(0)
    return fam.build_model(recipe.model, fam.loss_terms)


def _images(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g) * 2 - 1


def test_ids_are_flat_coarse_to_fine_and_in_range():
    m = _model().eval()
    x = _images()
    ids = m.encode(x)
    assert ids.shape == (3, 1 + 4 + 16) and ids.dtype == torch.long
    K = m.cfg.quantizer.codebook_size
    meta = m.meta
    assert meta["layout"] == "multi_scale" and meta["scales"] == [1, 2, 4] and meta["scale_offsets"] == [0, 1, 5, 21]
    assert meta["token_grid"] == [21] and meta["tokens_per_sample"] == 21 and meta["final_grid"] == [4, 4]
    for i, s in enumerate(meta["scales"]):
        part = ids[:, meta["scale_offsets"][i]:meta["scale_offsets"][i + 1]]
        assert part.shape == (3, s * s) and int(part.min()) >= 0 and int(part.max()) < K
    assert m.decode(ids).shape == (3, 3, 16, 16)
    emb = m.semantic_embedding(ids)
    assert emb.shape == (3, 16, m.teacher.dim)  # on the final 4 x 4 grid, not L
    # decode is the eval forward's reconstruction, and the codes decode is built from are exactly f_hat
    out = m(x)
    assert torch.equal(out.ids, ids) and torch.allclose(m.decode(ids), out.recon, atol=1e-5)


def test_single_scale_keeps_its_grid_and_layout():
    recipe = config.load({"model": {"preset": "test_tokenflow_head"}})
    assert recipe.model.scales is None
    fam = families.get("tokenflow")
    m = fam.build_model(recipe.model, fam.loss_terms).eval()
    assert type(m.quantizer).__name__ == "DualCodebook" and m.quantizer.unit_codes
    assert m.meta["layout"] == "shared_index" and m.meta["token_grid"] == [4, 4]
    assert m.encode(_images()).shape == (3, 4, 4)


@pytest.mark.parametrize("scales,match", [
    ([1, 2, 2, 4], r"model\.scales: scales must be strictly increasing \(coarse to fine\) \(got \[1, 2, 2, 4\]\)"),
    ([2, 1, 4], r"model\.scales: scales must be strictly increasing"),
    ([1, 2], r"model\.scales: the last scale must be the token grid 4 \(resolution 16 / downsample 4\), not 2"),
    ([1, 2, 8], r"model\.scales: the last scale must be the token grid 4"),
    ([0, 4], r"model\.scales: scales must be positive \(got \[0, 4\]\)"),
    ([], r"model\.scales: scales is empty"),
])
def test_bad_scales_are_one_line_recipe_errors(scales, match):
    with pytest.raises(RecipeError, match=match) as e:
        config.load({"model": {"preset": PRESET, "scales": scales}})
    assert len(e.value.problems) == 1 and "\n" not in e.value.problems[0]  # one problem, on one line


def test_shipped_multiscale_recipe_and_paper_preset_load():
    r = config.load("tokenflow_multiscale_quickstart")
    assert r.model.scales == [1, 2, 4, 8] and r.model.grid == 8
    p = config.load({"model": {"preset": "tokenflow_siglip_256_multiscale"}})
    assert p.model.scales[-1] == p.model.grid == 16


# ------------------------------------------------------------------------------------------------ the residual


def _smooth_maps(b=6, g=8, seed=0):
    """Feature maps with structure at every scale (a smooth part plus fine noise), [B, C, g, g] per branch."""
    gen = torch.Generator().manual_seed(seed)
    coarse_s = F.interpolate(torch.randn(b, 8, 2, 2, generator=gen), size=(g, g), mode="bilinear")
    coarse_p = F.interpolate(torch.randn(b, 4, 2, 2, generator=gen), size=(g, g), mode="bilinear")
    return (coarse_s + 0.3 * torch.randn(b, 8, g, g, generator=gen),
            coarse_p + 0.3 * torch.randn(b, 4, g, g, generator=gen))


@torch.no_grad()
def _errors_by_scale(q, fs, fp, ids):
    """||f - f_hat_k||^2 (both branches, mean per element) for k = 0 (f_hat = 0), 1, ..., len(scales)."""
    f_s, f_p = q.normalise(fs, fp)
    cs, cp = q.codes()
    b, g = fs.shape[0], q.grid
    hat_s, hat_p = torch.zeros_like(f_s), torch.zeros_like(f_p)
    errs = [float((f_s - hat_s).square().mean() + (f_p - hat_p).square().mean())]
    for i, s in enumerate(q.scales):
        qs, qp = q._code_maps(ids[:, q.offsets[i]:q.offsets[i + 1]].reshape(-1), b, s, cs, cp)
        hat_s, hat_p = hat_s + up(qs, g), hat_p + up(qp, g)
        errs.append(float((f_s - hat_s).square().mean() + (f_p - hat_p).square().mean()))
    return errs


@torch.no_grad()
def _ids_without_residuals(q, fs, fp):
    """What the ids would be if each scale quantised the downsampled features themselves (no residual)."""
    f_s, f_p = q.normalise(fs, fp)
    c = q._joint_codes()
    out = []
    for s in q.scales:
        x = q._joint_rows(down(f_s, s), down(f_p, s))
        out.append(torch.cdist(x, c).argmin(dim=1).reshape(fs.shape[0], s * s))
    return torch.cat(out, dim=1)


def test_each_scale_reduces_the_quantisation_error():
    torch.manual_seed(0)
    q = MultiScaleDualCodebook(DualCodebookConfig(codebook_size=64, sem_dim=8, pix_dim=4, pix_weight=0.5,
                                                  kmeans_init=True), [1, 2, 4, 8], scale_drop=0.0)
    fs, fp = _smooth_maps()
    q.train()
    q(fs, fp)  # k-means init on the residual pyramid of this batch
    assert bool(q.initted)
    q.eval()
    ids = q(fs, fp)[2]
    errs = _errors_by_scale(q, fs, fp, ids)
    assert all(b < a for a, b in zip(errs, errs[1:])), errs  # strictly decreasing, scale by scale
    assert errs[-1] < 0.5 * errs[1], errs
    # f_hat of the eval forward is the f_hat these ids decode to
    with torch.no_grad():
        hat_s, hat_p = q.vectors(ids)
    f_s, f_p = q.normalise(fs, fp)
    assert abs(float((f_s - hat_s).square().mean() + (f_p - hat_p).square().mean()) - errs[-1]) < 1e-6
    # the check has teeth: without subtracting residuals, adding scales makes the error grow again
    bad = _errors_by_scale(q, fs, fp, _ids_without_residuals(q, fs, fp))
    assert not all(b <= a for a, b in zip(bad, bad[1:])), bad


def test_raw_codes_with_kmeans_ema_and_restarts_count_every_scale():
    torch.manual_seed(0)
    q = MultiScaleDualCodebook(DualCodebookConfig(codebook_size=128, sem_dim=8, pix_dim=4, kmeans_init=True,
                                                  ema=True, restart_after=1), [1, 2, 4], scale_drop=0.0).train()
    fs, fp = _smooth_maps(b=4, g=4)
    _, _, ids, losses, stats = q(fs, fp)
    assert set(losses) == {"commitment"}  # EMA: no codebook term
    assert ids.shape == (4, 21)
    norms = q.codebook_sem.norm(dim=1)
    assert float(norms.max() - norms.min()) > 0.1  # raw codes, not unit rows
    used = int((torch.bincount(ids.reshape(-1), minlength=128) > 0).sum())
    assert abs(float(stats["usage"]) - used / 128) < 1e-6  # usage over the ids of all scales
    before = q.codebook_sem.clone()
    _, _, ids2, _, _ = q(fs, fp)  # codes unused in step 1 are dead after 1 step: restarted to residual rows
    assert int(q.restarts) > 0 and not torch.equal(before, q.codebook_sem)
    assert torch.isfinite(q.codebook_sem).all() and torch.isfinite(q.codebook_pix).all()


def test_gradient_codes_get_codebook_and_commitment_gradients():
    torch.manual_seed(0)
    q = MultiScaleDualCodebook(DualCodebookConfig(codebook_size=16, sem_dim=8, pix_dim=4), [1, 2, 4]).train()
    fs, fp = _smooth_maps(b=2, g=4)
    fs.requires_grad_(True)
    fp.requires_grad_(True)
    hat_s, hat_p, _, losses, _ = q(fs, fp)
    assert set(losses) == {"commitment", "codebook"}
    (sum(losses.values()) + hat_s.sum() + hat_p.sum()).backward()
    assert q.codebook_sem.grad is not None and float(q.codebook_sem.grad.abs().sum()) > 0
    assert fs.grad is not None and float(fs.grad.abs().sum()) > 0  # straight-through to the encoder side


# ------------------------------------------------------------------------------------------------ scale drop


def test_scale_drop_only_in_training_and_eval_is_deterministic():
    m = _model(scale_drop=1.0)
    x = _images()
    torch.manual_seed(3)
    m.train()
    seen = set()
    for _ in range(12):
        out = m(x)
        seen.add(out.ids.shape[1])
        assert float(out.stats["scales_used"]) == 2.0
        assert out.recon.shape == x.shape
    assert seen <= {21 - 4, 21 - 16} and len(seen) == 2  # one of the scales but the first, drawn at random
    m.eval()
    a, b = m.encode(x), m.encode(x)
    assert a.shape == (3, 21) and torch.equal(a, b) and torch.equal(m(x).ids, a)
    assert float(m(x).stats["scales_used"]) == 3.0
    m0 = _model(scale_drop=0.0).train()
    assert all(m0(x).ids.shape[1] == 21 for _ in range(3))


# ------------------------------------------------------------------------------------------------ export, LM


def test_export_graphs_equal_eager_after_training_steps(tmp_path):
    from mmtok.export.graphs import check_graphs, export_graphs

    m = _model(quantizer={"codebook_size": 32, "sem_dim": 8, "pix_dim": 4, "pix_weight": 0.5, "ema": True,
                          "kmeans_init": True, "restart_after": 2})
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    m.train()
    for step in range(3):
        out = m(_images(4, seed=step))
        loss = sum(out.losses.values()) + (out.recon - _images(4, seed=step)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    x = _images(3, seed=9)
    export_graphs(m, tmp_path)
    check_graphs(m, tmp_path, x)  # ids exactly, pixels to 1e-5
    enc = torch.export.load(str(tmp_path / "encoder.pt2")).module()
    assert enc(_images(5, seed=10)).shape == (5, 21)  # dynamic batch


def test_lm_stage_lays_out_a_multiscale_bundle_scale_by_scale():
    from mmtok.lm.layout import plan_layout

    m = plan_layout("llm", 100, 128, [("b", "c", _model().meta)]).modalities[0]
    assert m.scales == (1, 2, 4) and m.span_length == 21 + 3 + 2 and "<img_scale>" in m.tokens()