"""TokenFlow: the shared index is argmin(w_sem d_sem + w_pix d_pix) exactly, codebook state (k-means init, EMA,
restarts, gradient codes) behaves, a tiny preset trains through mmtok's trainer, exports, and loads with the
semantic branch described in tokenizer.json and `semantic_embedding` working on the loaded model."""
from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F

import mmtok
from mmtok import config, families
from mmtok.families.tokenflow.config import DualCodebookConfig
from mmtok.families.tokenflow.dual import DualCodebook

FAST = {"data": {"batch_size": 4, "num_workers": 0, "val_samples": 8},
        "trainer": {"max_steps": 4, "val_every": 2, "ckpt_every": 2, "log_every": 1}}


def brute_force_ids(xs, cs, xp, cp, ws, wp):
    """argmin_k ws ||n(xs) - n(cs_k)||^2 + wp ||n(xp) - n(cp_k)||^2 in float64 (n: l2-normalise)."""
    n = lambda a: F.normalize(a.double(), dim=1)  # noqa: E731
    d = ws * torch.cdist(n(xs), n(cs)).square() + wp * torch.cdist(n(xp), n(cp)).square()
    return d.argmin(dim=1), d


@pytest.mark.parametrize("pix_weight", [1.0, 0.3, 4.0])
def test_shared_index_is_the_brute_force_weighted_argmin(pix_weight):
    torch.manual_seed(0)
    dual = DualCodebook(DualCodebookConfig(codebook_size=64, sem_dim=8, pix_dim=4, sem_weight=1.0,
                                           pix_weight=pix_weight)).eval()
    xs, xp = torch.randn(300, 8) * 3, torch.randn(300, 4) * 0.2  # unnormalised on purpose
    cs, cp = dual.codebook_sem.detach(), dual.codebook_pix.detach()
    want, d = brute_force_ids(xs, cs, xp, cp, 1.0, pix_weight)
    top2 = d.topk(2, dim=1, largest=False).values
    assert float((top2[:, 1] - top2[:, 0]).min()) > 1e-5  # no near-ties: fp32 must agree exactly
    _, _, ids, _, _ = dual(xs, xp)
    assert torch.equal(ids, want)
    assert torch.equal(dual.export_ids(xs, xp), want)
    # both branches matter: the semantic-only and pixel-only argmins differ from the shared one somewhere
    sem_only, _ = brute_force_ids(xs, cs, xp, cp, 1.0, 0.0)
    assert not torch.equal(sem_only, want)


def test_duplicate_codes_tie_to_the_lowest_index():
    torch.manual_seed(1)
    dual = DualCodebook(DualCodebookConfig(codebook_size=8, sem_dim=4, pix_dim=2)).eval()
    with torch.no_grad():
        dual.codebook_sem[5] = dual.codebook_sem[2]
        dual.codebook_pix[5] = dual.codebook_pix[2]
    xs, xp = dual.codebook_sem[5:6].repeat(3, 1) * 2, dual.codebook_pix[5:6].repeat(3, 1)
    assert dual(xs, xp)[2].tolist() == [2, 2, 2] and dual.export_ids(xs, xp).tolist() == [2, 2, 2]


def test_codebook_state_kmeans_ema_restart_and_usage():
    torch.manual_seed(2)
    cfg = DualCodebookConfig(codebook_size=16, sem_dim=4, pix_dim=3, ema=True, kmeans_init=True, restart_after=1)
    dual = DualCodebook(cfg).train()
    xs, xp = torch.randn(64, 4), torch.randn(64, 3)
    qs, qp, ids, losses, stats = dual(xs, xp)
    assert bool(dual.initted) and set(losses) == {"commitment"}  # EMA: no codebook term
    assert torch.allclose(dual.codebook_sem.norm(dim=1), torch.ones(16), atol=1e-5)
    assert torch.allclose(qs.norm(dim=1), torch.ones(64), atol=1e-5) and qp.shape == (64, 3)
    assert float(stats["usage"]) == pytest.approx(ids.unique().numel() / 16)
    assert 1 <= float(stats["perplexity"]) <= 16
    used = ids.unique().numel()
    assert int(dual.restarts) == 16 - used  # restart_after=1: codes unused in this batch restart at once
    # a batch of one repeated row uses one code: the other 15 restart, in both codebooks, to that row
    _, _, ids2, _, _ = dual(xs[:1].repeat(8, 1), xp[:1].repeat(8, 1))
    assert int(dual.restarts) == 16 - used + 15
    sem, pix = dual.codes()
    dead = torch.arange(16) != ids2[0]
    assert torch.allclose(sem[dead], F.normalize(xs[:1], dim=1).expand(15, -1), atol=1e-6)
    assert torch.allclose(pix[dead], F.normalize(xp[:1], dim=1).expand(15, -1), atol=1e-6)


def test_restart_below_restarts_rarely_used_shared_ids():
    # the same rule as the vq quantizer's (one helper): a shared id used once among many rows is restarted in both
    # codebooks at restart_below 0.5 although it was used; restart_after alone (0 here) would keep it
    cfg = DualCodebookConfig(codebook_size=4, sem_dim=2, pix_dim=2, ema=True, ema_decay=0.5, restart_below=0.5)
    dual = DualCodebook(cfg).train()
    codes = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]), dim=1)
    dual._set_codes(torch.ones(4, dtype=torch.bool), codes, codes)
    dual.initted.fill_(True)
    rows = torch.cat([codes[:3].repeat_interleave(30, 0), codes[3:]])
    _, _, ids, _, _ = dual(rows, rows)
    assert torch.bincount(ids, minlength=4).tolist() == [30, 30, 30, 1]
    assert int(dual.restarts) == 1
    with pytest.raises(ValueError, match="restart_below reads the EMA"):
        DualCodebookConfig(codebook_size=4, restart_below=0.5)


def test_gradient_codebooks_get_gradients_and_inputs_get_straight_through():
    torch.manual_seed(3)
    dual = DualCodebook(DualCodebookConfig(codebook_size=16, sem_dim=4, pix_dim=3)).train()
    xs, xp = torch.randn(32, 4, requires_grad=True), torch.randn(32, 3, requires_grad=True)
    qs, qp, _, losses, _ = dual(xs, xp)
    assert set(losses) == {"codebook", "commitment"}
    (qs.sum() + qp.sum() + losses["codebook"]).backward()
    assert dual.codebook_sem.grad is not None and dual.codebook_sem.grad.abs().sum() > 0
    assert dual.codebook_pix.grad.abs().sum() > 0 and xs.grad.abs().sum() > 0 and xp.grad.abs().sum() > 0


@pytest.mark.parametrize("preset", ["test_tokenflow_copy", "test_tokenflow_head"])
def test_model_parts_shapes_and_meta(preset):
    recipe = config.load({"model": {"preset": preset}})
    fam = families.get("tokenflow")
    torch.manual_seed(0)
    model = fam.build_model(recipe.model, fam.loss_terms)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = model(x)
    assert set(out.losses) >= {"commitment", "semantic"} and 0 <= float(out.losses["semantic"]) <= 2
    assert {"usage", "perplexity", "sem_commitment", "pix_commitment"} <= set(out.stats)
    assert float(out.stats["semantic_cosine"]) == pytest.approx(1 - float(out.losses["semantic"]), abs=1e-6)
    model.eval()
    ids = model.encode(x)
    assert ids.shape == (2, 4, 4)
    feats = model.teacher_features(x)
    emb = model.semantic_embedding(ids)
    assert feats.shape == emb.shape == (2, 16, model.teacher.dim)
    assert torch.equal(model.semantic_embedding(ids.reshape(2, 16)), emb)
    meta = model.meta
    assert meta["layout"] == "shared_index"
    assert meta["codebooks"]["semantic"]["size"] == recipe.model.quantizer.codebook_size
    assert meta["semantic"]["teacher"]["resolution"] == 64 and meta["semantic"]["embedding_dim"] == model.teacher.dim
    # the teacher stays frozen (the semantic target); a 'copy' encoder is trainable and starts equal to it
    assert not any(p.requires_grad for p in model.teacher.parameters())
    if preset == "test_tokenflow_copy":
        assert all(p.requires_grad for p in model.semantic_encoder.parameters())
        assert torch.equal(model.semantic_encoder(x).patches, model.teacher(x).patches)
    else:
        assert model.semantic_encoder is None


def test_semantic_term_is_skipped_when_not_weighted():
    recipe = config.load({"model": {"preset": "test_tokenflow_head"}})
    model = families.get("tokenflow").build_model(recipe.model, ("l2", "commitment"))
    assert "semantic" not in model(torch.rand(2, 3, 16, 16) * 2 - 1).losses


def test_trains_exports_and_loads(tmp_path):
    from mmtok.export.bundle import export_bundle
    from mmtok.train.run import train

    recipe = config.load({"model": {"preset": "test_tokenflow_head"}, **FAST})
    assert recipe.loss.weights["semantic"] == 1.0
    summary = train(recipe, tmp_path / "run")
    assert summary["status"] == "finished" and summary["step"] == 4
    assert 0 < summary["final"]["val/usage"] <= 1 and "val/psnr" in summary["final"]
    assert -1 <= summary["final"]["val/semantic_cosine"] <= 1
    with open(next((tmp_path / "run" / "logs").glob("version_*/metrics.csv"))) as f:
        header = next(csv.reader(f))
    assert {"train/semantic", "train/commitment", "train/usage", "train/restarts"} <= set(header)

    export_bundle(tmp_path / "run", tmp_path / "bundle", graphs=True)
    meta = json.loads((tmp_path / "bundle" / "tokenizer.json").read_text())
    assert meta["family"] == "tokenflow" and meta["layout"] == "shared_index"
    assert meta["semantic"]["teacher"]["config"]["arch"] == "efficientnet_lite0"
    assert meta["semantic"]["teacher"]["mean"] and meta["codebooks"]["pixel"]["dim"] == 4
    tok = mmtok.load(tmp_path / "bundle")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    ids = tok.encode(x)
    assert ids.shape == (2, 4, 4) and int(ids.max()) < 16
    assert tok.decode(ids).shape == (2, 3, 16, 16)
    emb = tok.semantic_embedding(ids)
    assert emb.shape == (2, 16, 112) and torch.equal(emb, tok.model.semantic_embedding(ids))
    enc = torch.export.load(str(tmp_path / "bundle" / "encoder.pt2")).module()
    assert torch.equal(enc(x), ids)


def test_teacher_grid_other_than_the_token_grid_is_resized_and_exports(tmp_path):
    from mmtok.export.graphs import check_graphs, export_graphs

    recipe = config.load({"model": {"preset": "test_tokenflow_copy", "teacher": {"preset": "efficientnet_lite0",
                                                                                  "resolution": 128}}})
    torch.manual_seed(0)
    model = families.get("tokenflow").build_model(recipe.model, ("l2", "semantic")).eval()
    assert model.teacher.grid == (8, 8) and model.grid == 4
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert model.teacher_features(x).shape == (2, 16, 112)
    assert model(x).ids.shape == (2, 4, 4)
    export_graphs(model, tmp_path)
    check_graphs(model, tmp_path, x)
