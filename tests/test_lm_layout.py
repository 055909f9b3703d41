"""The LM layout (torch-free) and the builders every LM test shares: a tiny random Llama with a word-level
tokenizer made here, and a tiny VQGAN bundle (4x4 grid, 32 codes), each made once per session."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mmtok.lm.layout import Layout, plan_layout

WORDS = ("a the of photo cat dog bird red blue green yellow big small on in with and sky tree house car boat "
         "flower sun moon star fish apple ball hat").split()
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
PADDED_ROWS = 48  # the tiny Llama's embedding rows: more than its 34 tokenizer entries (a padded vocabulary)


def make_tokenizer():
    """A word-level tokenizer (whitespace split) over WORDS, with <s>, </s>, <pad>, <unk>."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def make_llm(root: Path, tied: bool = False, seed: int = 0) -> Path:
    """A tiny random Llama (2 layers, width 32) with the word-level tokenizer, saved to root/tiny-llm[-tied]."""
    out = root / ("tiny-llm-tied" if tied else "tiny-llm")
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = LlamaConfig(vocab_size=PADDED_ROWS, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=tied, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def make_bundle(root: Path, seed: int = 0, name: str = "tiny", model: dict | None = None) -> Path:
    """A bundle of random weights (default: a tiny VQGAN, preset test_f4: 16 px, 4x4 grid, 32 codes; `model` gives
    any family's model section), exported once under root from a checkpoint written here (an untrained tokenizer
    still maps its inputs to ids deterministically)."""
    out = root / f"{name}-bundle-{seed}"
    if (out / "checksums.json").is_file():
        return out
    import torch

    from mmtok import config, families
    from mmtok.export.bundle import export_bundle

    recipe = config.load({"name": name, "seed": seed, "model": model or {"preset": "test_f4"}})
    torch.manual_seed(seed)
    net = families.build_model(recipe.model, pretrained=False)
    ckpt = root / f"{name}-{seed}.ckpt"
    torch.save({"state_dict": {f"tokenizer.{k}": v for k, v in net.state_dict().items()}, "global_step": 0,
                "mmtok": {"recipe": recipe.model_dump(mode="json"), "version": "test"}}, ckpt)
    export_bundle(ckpt, out)
    return out


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> Path:
    return make_llm(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.getbasetemp())


# --------------------------------------------------------------------------------------------- layout tests


def _meta(grid, k, layout="single", levels=1, modality="image"):
    """A whole token spec (tokenizer.json's fields) of the given grid, codebook size and id layout."""
    return {"modality": modality, "family": "toy", "token_grid": list(grid), "codebook_size": k, "layout": layout,
            "num_codebooks": levels, "input_size": [3, 16, 16], "value_range": [-1.0, 1.0],
            "tokens_per_sample": math.prod(grid), "downsample": 4, "codebook_dim": 8, "quantizer": "vq",
            "l2_norm": True, "flattening": "row-major"}


def test_layout_blocks_follow_the_text_vocab_and_round_trip_through_json():
    layout = plan_layout("llm", 100, 128, [("a", "c1", _meta([2, 3], 5)), ("b", "c2", _meta([2, 2], 4, "residual", 2)),
                                           ("c", "c3", _meta([7], 6, "1d_causal"))])
    img, img1, one_d = layout.modalities
    assert (img.name, img.prefix, img.begin_id, img.end_id, img.eol_id, img.code_offset) == ("image", "img", 100, 101,
                                                                                             102, 103)
    assert img1.name == "image_1" and img1.prefix == "img1" and img1.begin_id == img.end_of_block == 108
    assert img1.code_range(1) == (img1.code_offset + 4, img1.code_offset + 8)
    assert one_d.eol_id is None and one_d.span_length == 7 + 2
    assert layout.tokenizer_size == one_d.end_of_block and layout.model_vocab_size == 128
    assert [len(m.tokens()) for m in layout.modalities] == [m.end_of_block - m.first_id for m in layout.modalities]
    assert img1.tokens()[3] == "<img1_l0_00000>" and img.tokens()[:3] == ["<img>", "</img>", "<img_eol>"]
    again = Layout.from_json(layout.to_json())
    assert again == layout
    json.loads(layout.to_json())  # plain JSON


def test_spans_are_rows_with_end_of_line_and_invert_exactly():
    layout = plan_layout("llm", 10, 10, [("a", "c", _meta([2, 2], 4, "residual", 2))])
    m = layout.modalities[0]
    codes = [0, 1, 2, 3, 3, 2, 1, 0]  # row 0: (0,1) (2,3); row 1: (3,2) (1,0)  -- levels innermost
    span = m.span(codes)
    lo0, lo1 = m.code_range(0)[0], m.code_range(1)[0]
    assert span == [m.begin_id, lo0 + 0, lo1 + 1, lo0 + 2, lo1 + 3, m.eol_id,
                    lo0 + 3, lo1 + 2, lo0 + 1, lo1 + 0, m.eol_id, m.end_id]
    assert len(span) == m.span_length and m.codes(span) == codes
    for j, i in enumerate(span):  # `allowed` describes exactly this span
        lo, hi = m.allowed(j)
        assert lo <= i < hi
    bad = list(span)
    bad[5] = lo0  # a code where the end of row belongs
    with pytest.raises(ValueError, match="position 5"):
        m.codes(bad)


def test_ids_above_65535_and_a_padded_vocabulary_is_never_shrunk():
    layout = plan_layout("llm", 60_000, 70_000, [("a", "c", _meta([4, 4], 8192))])
    m = layout.modalities[0]
    assert m.end_of_block - 1 > 65_535 and layout.model_vocab_size == 70_000  # rows kept: 60003 + 8192 < 70000
    assert max(m.span([8191] * 16)) == 60_003 + 8191
    padded = plan_layout("llm", 60_000, 60_000, [("a", "c", _meta([4, 4], 8192))], pad_to_multiple_of=64)
    assert padded.model_vocab_size % 64 == 0 and padded.model_vocab_size >= padded.tokenizer_size


def make_pairs_folder(root: Path, n: int = 24, seed: int = 0) -> Path:
    """n images with two-to-four-word captions: the colour word in the caption is the image's colour, so
    captions and images are related (a model can learn it)."""
    import numpy as np
    from PIL import Image

    out = root / f"pairs-{n}-{seed}"
    if out.is_dir():
        return out
    out.mkdir(parents=True)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 220, 30)}
    things = ["cat", "dog", "bird", "house", "car", "boat"]
    rng = np.random.default_rng(seed)
    for i in range(n):
        colour = list(colours)[i % 4]
        img = np.full((20, 20, 3), colours[colour], np.uint8) + rng.integers(0, 25, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(img).save(out / f"p{i:03d}.png")
        (out / f"p{i:03d}.txt").write_text(f"a {colour} {things[i % 6]}")
    return out


def make_extended(root: Path, bundle: Path, tied: bool = False) -> tuple[Path, Path]:
    """(extended tiny Llama, token shards of make_pairs_folder) under root, made once."""
    from mmtok.lm.extend import extend
    from mmtok.lm.tokens import tokenize

    ext, tok = root / f"ext-{int(tied)}", root / "pair-tokens"
    if not (ext / "mmtok_layout.json").is_file():
        extend(make_llm(root, tied=tied), [bundle], ext)
    if not (tok / "rank-0.json").is_file():
        tokenize(bundle, str(make_pairs_folder(root)), tok, progress=False)
    return ext, tok


def make_gguf(root: Path) -> Path:
    """A tiny random Llama with a byte-level BPE tokenizer as a float32 GGUF file (root/tiny-gguf/tiny.gguf),
    written with the `gguf` package the way llama.cpp lays one out."""
    path = root / "tiny-gguf" / "tiny.gguf"
    if path.is_file():
        return path
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    V, D, L, F, H, KV = 64, 32, 2, 64, 4, 2
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(128)
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(D // H)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(V)
    merges = [("c", "a"), ("ca", "t"), ("d", "o"), ("do", "g"), ("Ġ", "cat"), ("Ġ", "dog")]
    tokens = ["<unk>", "<s>", "</s>"] + [chr(c) for c in range(97, 123)] + ["Ġ"] + [a + b for a, b in merges]
    tokens += [f"<x{i}>" for i in range(V - len(tokens))]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([1] * len(tokens))
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    rng = np.random.default_rng(0)

    def t(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    w.add_tensor("token_embd.weight", t(V, D))
    w.add_tensor("output_norm.weight", np.ones(D, np.float32))
    w.add_tensor("output.weight", t(V, D))
    for i in range(L):
        for name, shape in (("attn_q", (D, D)), ("attn_k", (D * KV // H, D)), ("attn_v", (D * KV // H, D)),
                            ("attn_output", (D, D)), ("ffn_gate", (F, D)), ("ffn_up", (F, D)), ("ffn_down", (D, F))):
            w.add_tensor(f"blk.{i}.{name}.weight", t(*shape))
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(D, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(D, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
