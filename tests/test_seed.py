"""SEED (causal Q-Former): causality of ids and embeddings, staged training with init + freeze, 1-D tokens through
eval, export and mmtok.load, and the refusals."""
from __future__ import annotations

import pytest
import torch

from mmtok import config, families

FAST = ["data.val_samples=8", "data.batch_size=4", "data.num_workers=0", "trainer.val_every=2",
        "trainer.ckpt_every=2", "trainer.log_every=1"]


def _model(num_queries: int = 6, **fields):
    recipe = config.load({"model": {"preset": "test_seed", "num_queries": num_queries, **fields}})
    torch.manual_seed(0)
    return families.build_model(recipe.model, families.get("seed").loss_terms).eval()


def _outputs(model, x, queries=None):
    h, _ = model.queries_out(x, queries)
    out = model(x, queries)
    return h, out.ids, model.embed(model.quantizer.lookup(out.ids))


@pytest.mark.parametrize("num_queries", [1, 5, 9])
def test_perturbing_query_j_leaves_every_position_before_j_unchanged(num_queries):
    model = _model(num_queries)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    h0, ids0, e0 = _outputs(model, x)
    for j in range(num_queries):
        queries = model.qformer.queries.detach().clone()
        queries[:, j] += torch.randn_like(queries[:, j])  # a large change of query j only
        h, ids, e = _outputs(model, x, queries)
        assert torch.equal(h[:, :j], h0[:, :j]) and torch.equal(ids[:, :j], ids0[:, :j])
        assert torch.equal(e[:, :j], e0[:, :j])
        assert not torch.allclose(h[:, j], h0[:, j])  # the perturbation reached position j


def test_perturbing_hidden_states_from_position_j_on_leaves_earlier_positions_unchanged():
    model = _model(8)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    h0, ids0, e0 = _outputs(model, x)
    j = 3

    def poke(module, args, output):
        output = output.clone()
        output[:, j:] += 5.0 * torch.randn_like(output[:, j:])
        return output

    for block in (model.qformer.blocks[1], model.decoder.blocks[0]):
        handle = block.register_forward_hook(poke)
        h, ids, e = _outputs(model, x)
        handle.remove()
        assert torch.equal(ids[:, :j], ids0[:, :j]) and torch.equal(e[:, :j], e0[:, :j])
        assert torch.equal(h[:, :j], h0[:, :j])
        assert not torch.allclose(e[:, j:], e0[:, j:])


def test_the_causality_check_fails_for_a_model_that_is_not_causal():
    model = _model(6)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    for block in model.qformer.blocks:
        block.causal = False  # break it: every query sees every other
    h0, _, _ = _outputs(model, x)
    queries = model.qformer.queries.detach().clone()
    queries[:, 4] += torch.randn_like(queries[:, 4])
    h, _, _ = _outputs(model, x, queries)
    assert not torch.allclose(h[:, :4], h0[:, :4])


def test_stage_1_then_stage_2_from_it_with_the_qformer_frozen_then_eval_export_and_load(tmp_path):
    from mmtok.export.bundle import export_bundle
    from mmtok.evaluation import evaluate
    from mmtok.model_io import load_model
    from mmtok.train.run import train

    stage1 = config.load({"model": {"preset": "test_seed"}, "loss": {"weights": {
        "distill": 1.0, "codebook": 0, "commitment": 0, "reconstruct": 0, "generation": 0, "l1": 0}},
        "optim": {"freeze": ["down.*", "up.*", "quantizer.*", "decoder.*", "generation_head.*", "pixel_*"]},
        "trainer": {"max_steps": 3}}, FAST)
    s1 = train(stage1, tmp_path / "s1")
    assert s1["status"] == "finished" and s1["frozen"]["tensors"] > 0
    stage2 = config.load({"model": {"preset": "test_seed"}, "init": {"path": str(tmp_path / "s1")},
                          "optim": {"freeze": ["qformer.*", "distill_head.*"]}, "trainer": {"max_steps": 3}}, FAST)
    s2 = train(stage2, tmp_path / "s2")
    assert s2["init"]["loaded"] > 0 and "val/semantic_cosine" in s2["final"] and "val/psnr" in s2["final"]
    a, _, _ = load_model(tmp_path / "s1")
    b, _, _ = load_model(tmp_path / "s2", ema=False)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items() if k.startswith("qformer."))
    assert any(not torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items() if k.startswith("up."))

    result = evaluate(tmp_path / "s2", "demo", num_samples=8, batch_size=4, num_workers=0, rfid=False,
                      classifier=None, progress=False)
    m = result["metrics"]
    assert m["tokens_per_sample"] == 6 and 0 < m["codebook_usage_pct"] <= 100 and -1 <= m["semantic_cosine"] <= 1
    assert isinstance(m["psnr"], float)
    bundle = export_bundle(tmp_path / "s2", tmp_path / "bundle", graphs=True)
    import mmtok

    tok = mmtok.load(bundle["out"])
    assert tok.meta["layout"] == "1d_causal" and tok.meta["ids"]["shape"] == ["B", 6]
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    ids = tok.encode(x)
    assert ids.shape == (2, 6)
    assert tok.decode(ids).shape == (2, 3, 16, 16) and tok.decode(ids[0]).shape == (1, 3, 16, 16)
    assert tok.semantic_embedding(ids).shape == (2, 6, 16)
    assert tok.generation_embedding(ids).shape == (2, tok.meta["semantic"]["dim"])
    from mmtok.errors import MmtokError

    with pytest.raises(MmtokError, match="grid is 6"):
        tok.decode(torch.zeros(2, 5, dtype=torch.long))


def test_without_a_pixel_decoder_pixel_terms_are_refused_and_eval_reports_tokens_only(tmp_path):
    from mmtok.errors import RecipeError
    from mmtok.evaluation import evaluate
    from mmtok.train.run import train

    with pytest.raises(RecipeError, match="need pixels"):
        families.get("seed").build_objective(config.load({"model": {"preset": "test_seed", "pixel_decoder": False}}))
    recipe = config.load({"model": {"preset": "test_seed", "pixel_decoder": False},
                          "loss": {"weights": {"l1": 0}}, "trainer": {"max_steps": 2}}, FAST)
    summary = train(recipe, tmp_path / "run")
    assert "val/psnr" not in summary["final"] and "val/semantic_cosine" in summary["final"]
    result = evaluate(tmp_path / "run", "demo", num_samples=8, batch_size=4, num_workers=0, progress=False)
    m = result["metrics"]
    assert m["psnr"] == "unavailable" and m["rfid"] == "unavailable" and "semantic_cosine" in m
    assert "no pixel decoder" in result["unavailable"]["psnr"]


def test_the_patch_term_gives_every_query_output_a_target_where_distill_targets_only_the_last():
    """`patches` (the teacher's patch features rebuilt from all query outputs) sends a gradient into the first
    query's output directly; `distill` into the last one's only. Weighted without the head: refused."""
    from mmtok.errors import RecipeError

    recipe = config.load({"model": {"preset": "test_seed", "patch_decoder_depth": 1}})
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    first = {}
    for term in ("distill", "patches"):
        torch.manual_seed(0)
        model = families.build_model(recipe.model, (term,)).train()
        seen = {}

        def keep(module, inputs, h, seen=seen):  # returns None: the output is left as it is
            h.retain_grad()
            seen["h"] = h

        model.qformer.register_forward_hook(keep)
        out = model(x)
        assert term in out.losses and torch.isfinite(out.losses[term])
        out.losses[term].backward()
        first[term] = seen["h"].grad[:, 0].abs().max().item()  # d loss / d (output of query 0)
    assert first["distill"] == 0.0 and first["patches"] > 0.0
    with pytest.raises(RecipeError, match="patch_decoder_depth is 0"):
        families.get("seed").build_objective(config.load({"model": {"preset": "test_seed"},
                                                          "loss": {"weights": {"patches": 1.0}}}))


def test_a_problem_across_two_sections_is_reported_by_print_config_before_any_work():
    from typer.testing import CliRunner

    from mmtok.cli.main import app

    res = CliRunner().invoke(app, ["train", "seed_quickstart_stage1", "--print-config",
                                   "--set", "model.patch_decoder_depth=0"])
    assert res.exit_code == 2
    assert "loss.weights.patches needs the patch head, but model.patch_decoder_depth is 0" in res.stderr
