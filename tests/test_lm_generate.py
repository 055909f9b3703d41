"""`mmtok lm generate`: constrained sampling, classifier-free guidance in one doubled batch, captions, the CLI."""
from __future__ import annotations

import json

import pytest
import torch
from test_lm_layout import make_bundle, make_extended, tiny_bundle  # noqa: F401
from typer.testing import CliRunner

import mmtok
from mmtok.cli.main import app
from mmtok.lm.generate import caption_images, generate_images, generate_spans
from mmtok.lm.llm import load_extended

PROMPTS = ["a red cat", "the big blue dog on a small boat", "sun"]  # different lengths: left padding


@pytest.fixture(scope="module")
def lm(tiny_bundle, tmp_path_factory):  # noqa: F811
    ext, _ = make_extended(tmp_path_factory.getbasetemp(), tiny_bundle)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a width-32 model: one thread is many times faster than two sharing a busy CPU
    yield (ext, *load_extended(ext))
    torch.set_num_threads(threads)


def test_sampling_never_leaves_the_image_range_and_every_sample_decodes(lm, tiny_bundle):  # noqa: F811
    ext, model, tok, layout = lm
    m = layout.modality("image")
    # unconstrained, this random model would put most of its mass outside the image codes
    with torch.no_grad():
        first = model(input_ids=torch.tensor([[tok.bos_token_id, m.begin_id]])).logits[0, -1].softmax(-1)
    lo, hi = m.code_range()
    assert first[lo:hi].sum() < 0.9
    for seed in range(3):
        spans = generate_spans(model, tok, m, PROMPTS, cfg_scale=2.0, temperature=1.5, seed=seed)
        assert spans.shape == (3, m.span_length)
        for row in spans.tolist():
            for j, i in enumerate(row):
                a, b = m.allowed(j)
                assert a <= i < b
    codes = generate_images(model, tok, layout, PROMPTS, cfg_scale=3.0, top_k=5, top_p=0.9, seed=0)
    assert codes.shape == (3, 4, 4) and int(codes.min()) >= 0 and int(codes.max()) < m.codebook_size
    images = mmtok.load(tiny_bundle).decode(codes)
    assert images.shape == (3, 3, 16, 16)


def test_guidance_scale_one_equals_plain_sampling_and_other_scales_differ(lm):
    _, model, tok, layout = lm
    m = layout.modality("image")
    plain = generate_spans(model, tok, m, PROMPTS, cfg_scale=None, seed=7)
    doubled = generate_spans(model, tok, m, PROMPTS, cfg_scale=1.0, seed=7)
    assert torch.equal(plain, doubled)
    assert not torch.equal(plain, generate_spans(model, tok, m, PROMPTS, cfg_scale=20.0, seed=7))
    assert not torch.equal(plain, generate_spans(model, tok, m, PROMPTS, cfg_scale=None, seed=8))
    greedy = generate_spans(model, tok, m, PROMPTS[:1], cfg_scale=None, temperature=0)
    assert torch.equal(greedy, generate_spans(model, tok, m, PROMPTS[:1], cfg_scale=None, temperature=0, seed=9))


def test_captions_use_text_tokens_only(lm):
    _, model, tok, layout = lm
    codes = torch.randint(0, 32, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    texts = caption_images(model, tok, layout, codes, max_new_tokens=6)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert not any("<img" in t for t in texts)


def test_cli_writes_images_grid_and_record_and_refuses_another_bundle(lm, tiny_bundle, tmp_path):  # noqa: F811
    ext = lm[0]
    runner = CliRunner()
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (20, 20), (200, 10, 10)).save(img)
    result = runner.invoke(app, ["lm", "generate", str(ext), "--prompt", "a red cat", "--prompt", "sun", "--num", "2",
                                 "--image", str(img), "--out", str(tmp_path / "g"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "g" / "generated.json").read_text())
    assert [r["file"] for r in record["images"]] == ["prompt00_00.png", "prompt00_01.png", "prompt01_00.png",
                                                     "prompt01_01.png"]
    assert Image.open(tmp_path / "g" / "prompt01_01.png").size == (16, 16)
    assert (tmp_path / "g" / "grid.png").is_file() and len(record["captions"]) == 1
    other = make_bundle(tmp_path, seed=1)
    result = runner.invoke(app, ["lm", "generate", str(ext), "--prompt", "x", "--tokenizer", str(other),
                                 "--out", str(tmp_path / "h")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "not the one the model was extended" in \
        result.stderr
    assert not (tmp_path / "h").exists()
