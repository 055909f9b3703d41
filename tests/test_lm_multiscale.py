"""The LLM stage with a multi-scale (VAR-style) tokenizer: the layout marks the end of every scale (`<img_scale>`),
spans run coarse to fine and invert exactly, `mmtok lm extend` takes the bundle, a tiny random Llama trains on the
sequences with ordinary causal attention, and every generated sample is a well-formed span that the bundle decodes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_lm_layout import _meta, make_bundle, make_llm, make_pairs_folder
from test_lm_train import _recipe as lm_recipe

import mmtok
from mmtok.lm.layout import Layout, plan_layout

SCALES = (1, 2, 4)  # test_var: 21 ids per image


def test_multiscale_spans_end_every_scale_with_a_marker_and_invert():
    meta = {**_meta([21], 16, "multi_scale"), "scales": list(SCALES), "scale_offsets": [0, 1, 5, 21]}
    layout = plan_layout("llm", 100, 128, [("b", "c", meta)])
    m = layout.modalities[0]
    assert m.scales == SCALES and m.eol_id == 102 and m.code_offset == 103 and m.tokens()[:3] == ["<img>", "</img>",
                                                                                                  "<img_scale>"]
    assert m.span_length == 21 + 3 + 2
    codes = list(range(16)) + [3, 1, 4, 1, 5]
    span = m.span(codes)
    markers = [j for j, i in enumerate(span) if i == m.eol_id]
    assert markers == [2, 7, 24] and span[0] == m.begin_id and span[-1] == m.end_id  # after 1, 4 and 16 codes
    assert m.codes(span) == codes
    assert [m.allowed(j) for j in markers] == [(m.eol_id, m.eol_id + 1)] * 3
    assert m.allowed(1) == m.code_range() and m.allowed(25) == (m.end_id, m.end_id + 1)
    with pytest.raises(ValueError, match="position 3"):
        bad = list(span)
        bad[3] = m.eol_id  # a marker where scale 2's first code belongs
        m.codes(bad)
    assert Layout.from_json(layout.to_json()) == layout

    from mmtok.lm.sequences import make_pairs

    class Tok:
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[1, 2] for _ in texts]}

    pairs = make_pairs(np.array([codes, codes[::-1]]), ["a", "b"], ["k0", "k1"], m, Tok(), 8)
    assert pairs.spans.tolist() == [span, m.span(codes[::-1])]  # the vectorised path equals span()


@pytest.fixture(scope="module")
def var_lm(tmp_path_factory):
    from mmtok.lm.extend import extend
    from mmtok.lm.tokens import tokenize

    root = tmp_path_factory.mktemp("varlm")
    bundle = make_bundle(root, name="var", model={"preset": "test_var"})
    ext, tokens = root / "ext", root / "tokens"
    extend(make_llm(root), [bundle], ext)
    tokenize(bundle, str(make_pairs_folder(root)), tokens, progress=False)
    return bundle, ext, tokens


def test_a_multiscale_bundle_trains_and_generates_decodable_samples(var_lm, tmp_path):
    from mmtok.lm.generate import generate_images, generate_spans
    from mmtok.lm.llm import load_extended
    from mmtok.lm.train import train

    bundle, ext, tokens = var_lm
    summary = train(lm_recipe(ext, tokens, data__block_size=128, trainer__max_steps=4), tmp_path / "run",
                    save_model=False)
    assert summary["status"] == "finished" and np.isfinite(summary["final"]["val/image_loss"])
    model, tok, layout = load_extended(ext)
    m = layout.modality("image")
    assert m.scales == SCALES
    spans = generate_spans(model, tok, m, ["a red cat", "sun"], cfg_scale=2.0, temperature=1.5, seed=0)
    for row in spans.tolist():
        assert all(m.allowed(j)[0] <= i < m.allowed(j)[1] for j, i in enumerate(row))
    codes = generate_images(model, tok, layout, ["a red cat", "sun"], cfg_scale=2.0, seed=1)
    assert codes.shape == (2, 21) and int(codes.max()) < 16
    images = mmtok.load(bundle).decode(codes)
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()
