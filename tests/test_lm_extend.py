"""`mmtok lm extend`: a tiny random Llama with a tokenizer made in the test, extended by a tiny VQGAN bundle."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_lm_layout import PADDED_ROWS, make_llm, tiny_bundle, tiny_llm  # noqa: F401

from mmtok.errors import CheckpointError
from mmtok.lm.extend import extend
from mmtok.lm.layout import LAYOUT_FILE, bundle_checksum, read_layout
from mmtok.lm.llm import load_extended

TEXT = ["a photo of a red cat", "the big dog on a small boat with a hat"]


def _logits(model, tok, texts):
    ids = tok(texts, return_tensors="pt", padding=len(texts) > 1)
    with torch.no_grad():
        return model(**ids).logits


@pytest.mark.parametrize("tied", [False, True])
def test_extension_keeps_text_outputs_and_writes_a_layout(tied, tiny_bundle, tmp_path_factory, tmp_path):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = make_llm(tmp_path_factory.getbasetemp(), tied=tied)
    before_model = AutoModelForCausalLM.from_pretrained(str(llm)).eval()
    before_tok = AutoTokenizer.from_pretrained(str(llm))
    layout = extend(llm, [tiny_bundle], tmp_path / "ext")

    model, tok, again = load_extended(tmp_path / "ext")
    assert again == layout == read_layout(tmp_path / "ext")
    img = layout.modality("image")
    assert layout.text_vocab_size == len(before_tok) == 34
    assert img.begin_id == 34 and img.codebook_size == 32 and img.token_grid == (4, 4)
    assert img.bundle_checksum == bundle_checksum(tiny_bundle)
    assert len(tok) == layout.tokenizer_size == 34 + 3 + 32
    assert model.get_input_embeddings().num_embeddings == layout.model_vocab_size == max(PADDED_ROWS, 69)
    assert tok.convert_ids_to_tokens([img.begin_id, img.eol_id, img.code_offset + 31]) == ["<img>", "<img_eol>",
                                                                                           "<img_00031>"]
    # text is tokenised the same and its logits over the text vocabulary are unchanged
    assert tok(TEXT)["input_ids"] == before_tok(TEXT)["input_ids"]
    old, new = _logits(before_model, before_tok, TEXT), _logits(model, tok, TEXT)
    torch.testing.assert_close(new[..., :PADDED_ROWS], old, rtol=0, atol=1e-6)
    # new rows are initialised around the mean of the old ones, not left at zero
    emb = model.get_input_embeddings().weight
    assert emb[img.code_offset:].abs().sum(-1).min() > 0
    # the image tokens are single tokens when written as text
    assert tok("<img> <img_00007>", add_special_tokens=False)["input_ids"] == [img.begin_id, img.code_offset + 7]


def test_bad_inputs_fail_before_loading(tiny_llm, tiny_bundle, tmp_path):  # noqa: F811
    no_tok = tmp_path / "no-tok"
    shutil.copytree(tiny_llm, no_tok)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tok / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="has no tokenizer"):
        extend(no_tok, [tiny_bundle], tmp_path / "a")
    with pytest.raises(CheckpointError, match="no config.json and no .gguf"):
        extend(tmp_path, [tiny_bundle], tmp_path / "b")
    with pytest.raises(CheckpointError, match="no bundle"):
        extend(tiny_llm, [tmp_path / "missing"], tmp_path / "c")
    ext = tmp_path / "ext"
    extend(tiny_llm, [tiny_bundle], ext)
    with pytest.raises(CheckpointError, match="already extended"):
        extend(ext, [tiny_bundle], tmp_path / "d")
    with pytest.raises(CheckpointError, match="not empty"):
        extend(tiny_llm, [tiny_bundle], ext)
    # a layout that does not match the model's vocabulary
    data = json.loads((ext / LAYOUT_FILE).read_text())
    data["model_vocab_size"] += 64
    data["tokenizer_size"] += 64
    data["modalities"][0]["codebook_size"] += 64
    (ext / LAYOUT_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="embedding rows"):
        load_extended(ext)


def test_two_bundles_get_two_blocks(tiny_llm, tiny_bundle, tmp_path):  # noqa: F811
    from test_lm_layout import make_bundle

    other = make_bundle(tmp_path, seed=1)
    layout = extend(tiny_llm, [tiny_bundle, other], tmp_path / "ext")
    a, b = layout.modalities
    assert (a.name, b.name) == ("image", "image_1") and b.begin_id == a.end_of_block
    assert a.bundle_checksum != b.bundle_checksum == bundle_checksum(other)
    _, tok, _ = load_extended(tmp_path / "ext")
    assert tok.convert_ids_to_tokens([b.begin_id, b.end_of_block - 1]) == ["<img1>", "<img1_00031>"]


def test_a_gguf_file_is_extended_into_a_plain_model(tiny_bundle, tmp_path):  # noqa: F811
    from test_lm_layout import make_gguf

    from mmtok.lm.llm import load_model, load_tokenizer

    gguf = make_gguf(tmp_path)
    before_model, before_tok = load_model(gguf.parent, gguf.name), load_tokenizer(gguf.parent, gguf.name)
    layout = extend(gguf, [tiny_bundle], tmp_path / "ext")  # the .gguf file itself
    assert extend(gguf.parent, [tiny_bundle], tmp_path / "ext2") == layout  # or its folder
    model, tok, _ = load_extended(tmp_path / "ext")
    assert not (tmp_path / "ext" / "tiny.gguf").exists() and getattr(model, "hf_quantizer", None) is None
    assert layout.text_vocab_size == len(before_tok) and len(tok) == layout.tokenizer_size
    assert tok(TEXT)["input_ids"] == before_tok(TEXT)["input_ids"]
    rows = before_model.get_input_embeddings().num_embeddings
    torch.testing.assert_close(_logits(model, tok, TEXT[:1])[..., :rows], _logits(before_model, before_tok, TEXT[:1]),
                               rtol=0, atol=1e-6)


def test_hugging_face_progress_bars_are_off_when_stderr_is_a_file(tiny_llm, monkeypatch):  # noqa: F811
    """Loading (and writing) weights in a log file would draw a tqdm line per redraw: off unless on a terminal."""
    import io
    import sys

    from transformers.utils import logging as hf_logging

    from mmtok.lm.llm import load_model

    hf_logging.enable_progress_bar()
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    try:
        load_model(tiny_llm)
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
