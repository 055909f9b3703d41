"""The `var` family (VAR's multi-scale residual VQ-VAE): ids coarse to fine and in range, VAR's quantizer arithmetic
(area-down, bicubic-up, phi, residual, the loss averaged over scales) against a plain re-implementation here, phi
sharing as VAR's ticks, dead-code revival, decode from the first scales, and `mmtok train` -> `mmtok eval` with the
per-scale table and picture."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _fixtures import FAST, make_images
from typer.testing import CliRunner

from mmtok import config, families
from mmtok.errors import MmtokError, RecipeError
from mmtok.families.var.quant import phi_choice

PRESET = "test_var"  # 16 px, 4 x 4 grid, scales [1, 2, 4]: 21 ids, 16 codes of dim 4


def _model(**model):
    torch.manual_seed(0)
    return families.build_model(config.load({"model": {"preset": PRESET, **model}}).model)


def _images(n=3, seed=1):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _reference(q, f):
    """VAR's VectorQuantizer2.forward written out plainly: (f_hat, ids per scale, mean loss over scales)."""
    b, c, g, _ = f.shape
    codes = q.embedding.detach()
    rest, f_hat, loss, out = f.clone(), torch.zeros_like(f), 0.0, []
    for i, s in enumerate(q.scales):
        r = F.interpolate(rest, size=(s, s), mode="area") if s != g else rest
        rows = r.permute(0, 2, 3, 1).reshape(-1, c)
        d = (rows ** 2).sum(1, keepdim=True) + (codes ** 2).sum(1) - 2 * rows @ codes.T
        ids = d.argmin(1)
        h = codes[ids].reshape(b, s, s, c).permute(0, 3, 1, 2)
        h = F.interpolate(h, size=(g, g), mode="bicubic") if s != g else h
        conv = q.phis[q.choice[i]]
        h = h * 0.5 + F.conv2d(h, conv.weight, conv.bias, padding=1) * 0.5
        f_hat, rest = f_hat + h, rest - h
        loss = loss + 0.25 * F.mse_loss(f_hat, f) + F.mse_loss(f_hat, f)
        out.append(ids.reshape(b, s * s))
    return f_hat, torch.cat(out, 1), loss / len(q.scales)


def test_quantizer_is_vars_arithmetic_and_ids_are_coarse_to_fine():
    m = _model().eval()
    q = m.quantizer
    f = torch.randn(3, 4, 4, 4) * 0.1
    f_hat, ids, losses, stats = q(f)
    ref_hat, ref_ids, ref_loss = _reference(q, f)
    assert torch.equal(ids, ref_ids) and torch.allclose(f_hat, ref_hat, atol=1e-6)
    assert torch.allclose(0.25 * losses["commitment"] + losses["codebook"], ref_loss, atol=1e-6)
    assert ids.shape == (3, 21) and int(ids.max()) < 16 and {"usage_s1", "usage_s2", "usage_s4"} <= set(stats)
    spec = m.spec
    assert spec.layout == "multi_scale" and spec.scales == (1, 2, 4) and spec.scale_offsets == (0, 1, 5, 21)
    x = _images()
    ids = m.encode(x)
    assert torch.allclose(m.decode(ids), m.decode_scales(ids, 3)) and m.decode_scales(ids, 1).shape == x.shape
    with torch.no_grad():
        coarse = [float(F.mse_loss(m.quantizer.vectors(ids, k), m.quantizer.vectors(ids))) for k in (1, 2, 3)]
    assert coarse[0] > 0 and coarse[2] == 0  # each prefix is a partial sum of the full f_hat
    with pytest.raises(MmtokError, match=r"expected ids \[B, 21\]"):
        m.decode(ids[:, :5])
    with pytest.raises(MmtokError, match=r"expected images \[B, 3, 16, 16\]"):
        m.encode(torch.zeros(1, 3, 32, 32))


def test_gradients_reach_the_encoder_codebook_and_phi():
    m = _model().train()
    out = m(_images())
    (out.recon.square().mean() + out.losses["codebook"] + out.losses["commitment"]).backward()
    assert m.encoder.conv_in.weight.grad.abs().sum() > 0  # straight-through from the decoder
    assert m.quantizer.embedding.grad.abs().sum() > 0 and m.quantizer.phis[0].weight.grad.abs().sum() > 0


def test_entropy_term_is_taken_per_scale_and_reaches_the_encoder():
    """loss.weights.entropy (an active term): the quantizer's entropy loss on each scale's own rows (mean over
    scales, the batch part weighed by entropy_diversity), with the encoder's gradient; without the weight the
    quantizer computes none."""
    from mmtok.quantize.vq import code_entropy

    assert "entropy" not in _model().train()(_images()).losses
    torch.manual_seed(0)
    cfg = config.load({"model": {"preset": PRESET, "quantizer": {"entropy_temperature": 0.05,
                                                                 "entropy_diversity": 2.0}}})
    m = families.build_model(cfg.model, active_terms=("entropy",)).train()
    q = m.quantizer
    f = torch.randn(3, 4, 4, 4) * 0.1
    _, ids, losses, _ = q(f)

    def rows(x, s):  # area-downsampled rows [B s s, 4]
        return F.interpolate(x, size=(s, s), mode="area").permute(0, 2, 3, 1).reshape(-1, 4)

    with torch.no_grad():  # scale i searches f minus the first i scales' vectors
        per_scale = [rows(f - q.vectors(ids, i), s) for i, s in enumerate(q.scales)]
        ref = [code_entropy(r, q.embedding, 0.05, diversity=2.0) for r in per_scale]
        pooled = code_entropy(torch.cat(per_scale), q.embedding, 0.05, diversity=2.0)
        one = per_scale[1]  # diversity weighs the batch part: H(rows) - d H(mean)
        by_part = 2 * code_entropy(one, q.embedding, 0.05) - code_entropy(one, q.embedding, 0.05, diversity=0.0)
        assert float(ref[1]) == pytest.approx(float(by_part), abs=1e-5)
    got = float(losses["entropy"].detach())
    assert got == pytest.approx(float(sum(ref) / 3), abs=1e-5)
    assert abs(got - float(pooled)) > 1e-3  # not one distribution over all scales' rows
    m.zero_grad()
    m(_images()).losses["entropy"].backward()
    assert m.encoder.conv_in.weight.grad.abs().sum() > 0 and q.embedding.grad.abs().sum() > 0


def test_phi_sharing_follows_vars_ticks():
    ten = phi_choice(10, 4)  # VAR's release: 4 convs over 10 scales, by position i / 9 against linspace(1/12, 11/12)
    ticks = np.linspace(1 / 12, 11 / 12, 4)
    assert ten == [int(np.argmin(np.abs(ticks - i / 9))) for i in range(10)] and ten[0] == 0 and ten[-1] == 3
    assert ten == sorted(ten) and set(ten) == {0, 1, 2, 3}
    assert phi_choice(6, 0) == list(range(6))


def test_dead_codes_are_revived_from_residual_rows():
    m = _model(quantizer={"restart_after": 1, "codebook_size": 16})
    q = m.quantizer.train()
    q.embedding.data += 100.0  # every code far from every residual: most go unused
    before = q.embedding.detach().clone()
    _, ids, _, _ = q(torch.randn(2, 4, 4, 4))
    unused = sorted(set(range(16)) - set(ids.unique().tolist()))
    assert int(q.restarts) == len(unused) > 0  # unused for restart_after = 1 step
    changed = (q.embedding.detach() != before).any(1)
    assert changed[unused].all() and not changed[ids.unique()].any()


def test_revival_draws_every_scale_alike():
    """revive_per_scale: a revived code comes from a scale drawn uniformly, so the 1 x 1 scale (2 of 42 rows here)
    gets about a third of the revived codes; drawn from all rows alike, about 1 in 21."""
    torch.manual_seed(0)
    for per_scale, lo, hi in ((True, 0.2, 0.5), (False, 0.0, 0.12)):
        q = _model(quantizer={"restart_after": 1, "codebook_size": 512, "revive_per_scale": per_scale}).quantizer
        q.train().initted.fill_(True)
        q.embedding.data += 100.0
        before = q.embedding.detach().clone()
        f = torch.randn(2, 4, 4, 4)
        q(f)
        revived = q.embedding.detach()[(q.embedding.detach() != before).any(1)]
        coarse = f.mean((2, 3))  # [2, 4]: the 1 x 1 scale's rows (area-downsampled maps) are exactly these
        from_coarse = (torch.cdist(revived, coarse).min(1).values < 1e-4).float().mean()
        assert lo < float(from_coarse) < hi, (per_scale, float(from_coarse))


def test_recipe_errors_and_shipped_recipe():
    r = config.load("var_quickstart")
    assert r.model.quantizer.scales == [1, 2, 3, 4, 6, 8] and r.model.grid == 8
    paper = config.load({"model": {"preset": "var_paper"}}).model
    assert paper.quantizer.scales == [1, 2, 3, 4, 5, 6, 8, 10, 13, 16] and paper.ch == 160 and paper.z_channels == 32
    with pytest.raises(RecipeError, match="the last scale must be the token grid 4"):
        config.load({"model": {"preset": PRESET, "quantizer": {"scales": [1, 2]}}})


def test_train_then_eval_reports_every_scale(tmp_path):
    from mmtok.cli.main import app
    from mmtok.train.run import train

    images = make_images(tmp_path)
    run = tmp_path / "run"
    sets = [*FAST, f"data.train={images}", f"data.val={images}"]
    train(config.load({"name": "v", "model": {"preset": PRESET}}, sets), run)
    result = CliRunner().invoke(app, ["eval", str(run), "--data", str(images), "--out", str(tmp_path / "ev"),
                                      "--no-rfid", "--classifier", "none", "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    assert "decoding from the first scales" in result.stdout
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    rows = metrics["by_scales"]
    assert list(rows) == ["1", "2", "4"] and [r["tokens"] for r in rows.values()] == [1, 5, 21]
    assert rows["4"]["psnr"] == pytest.approx(metrics["psnr"], abs=1e-6)  # all scales: the headline PSNR
    assert all(r["used_codes"] <= r["possible_codes"] == min(16, 12 * r["tokens_in_scale"]) for r in rows.values())
    assert rows["1"]["usage_of_possible_pct"] == pytest.approx(100 * rows["1"]["used_codes"] / 12)
    # 12 tokens drawn uniformly from 16 codes hit 16 (1 - (15/16)^12) = 8.62 distinct codes on average
    assert rows["1"]["uniform_codes"] == pytest.approx(8.6248, abs=1e-3)
    assert rows["1"]["usage_of_uniform_pct"] == pytest.approx(100 * rows["1"]["used_codes"] / 8.6248, rel=1e-4)
    assert (tmp_path / "ev" / "scales.png").is_file()
    assert "Scale by scale" in (tmp_path / "ev" / "report.md").read_text()
