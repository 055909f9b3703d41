"""VAR's block-causal next-scale sequences in the LLM stage (`mmtok lm extend --next-scale`): each scale's block is
the coarser scale upsampled, predicts its own scale's codes, and sees every coarser block and itself; a tiny random
Llama trains on them, the sampler's block-by-block cached passes give the training pass's logits, and one forward
pass per scale draws samples the bundle decodes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_lm_layout import _meta, make_bundle, make_llm, make_pairs_folder
from test_lm_train import _recipe as lm_recipe

import mmtok
from mmtok.errors import MmtokError
from mmtok.lm.layout import Layout, plan_layout

SCALES = (1, 2, 4)  # test_var: 21 ids per image


def _layout(next_scale=True):
    meta = {**_meta([21], 16, "multi_scale"), "scales": list(SCALES), "scale_offsets": [0, 1, 5, 21]}
    return plan_layout("llm", 100, 128, [("b", "c", meta)], next_scale=next_scale)


def test_each_block_is_the_coarser_scale_upsampled_and_predicts_its_own_scale():
    layout = _layout()
    m = layout.modalities[0]
    assert m.next_scale and Layout.from_json(layout.to_json()) == layout
    src = m.block_sources()
    assert src[:5] == [-1, 0, 0, 0, 0]  # 1x1 <- <img>; 2x2 <- the 1x1 code everywhere
    # 4x4 <- 2x2 (codes 1..4), nearest: rows 0, 0, 1, 1 and columns 0, 0, 1, 1 of the 2x2 map
    assert src[5:] == [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]
    with pytest.raises(MmtokError, match="multi-scale"):
        plan_layout("llm", 100, 128, [("b", "c", _meta([4, 4], 16, "single"))], next_scale=True)

    from mmtok.lm.sequences import CODE, CONTEXT, NO_TARGET, Sequences, pack

    class Tok:
        bos_token_id, eos_token_id = 1, 2

    codes = list(range(16)) + [3, 1, 4, 1, 5]
    seq = Sequences(Tok()).caption_to_image([7, 8], np.array(m.span(codes)), m)
    ids = [m.code_offset + c for c in codes]
    assert seq.ids == [1, 7, 8, m.begin_id] + [ids[0]] * 4 + [ids[j] for j in src[5:]]
    assert seq.targets == [NO_TARGET] * 3 + ids and seq.kinds == [CONTEXT] * 3 + [CODE] * 21
    assert seq.blocks == [-1] * 3 + [0] + [1] * 4 + [2] * 16
    row = pack([seq, seq], 60, 0)
    assert row["blocks"].tolist()[24:48] == [-1] * 3 + [3] + [4] * 4 + [5] * 16  # numbered apart per sequence

    from mmtok.lm.attention import packed_block_mask

    allowed = packed_block_mask(row["position_ids"][None], row["blocks"][None], torch.float32)[0, 0] == 0
    assert allowed[4, 7] and not allowed[4, 8] and allowed[8, 23] and allowed[23, 8]  # a whole block, not the next
    assert allowed[8, 0] and allowed[8, 3] and not allowed[3, 4]  # coarser blocks and the caption, causally
    assert not allowed[24:48, :24].any() and not allowed[:24, 24:].any()  # packed sequences stay apart


@pytest.fixture(scope="module")
def next_scale_lm(tmp_path_factory):
    from mmtok.lm.extend import extend
    from mmtok.lm.tokens import tokenize

    root = tmp_path_factory.mktemp("nextscale")
    bundle = make_bundle(root, name="var", model={"preset": "test_var"})
    ext, tokens = root / "ext", root / "tokens"
    extend(make_llm(root), [bundle], ext, next_scale=True)
    tokenize(bundle, str(make_pairs_folder(root)), tokens, progress=False)
    return bundle, ext, tokens


def test_sampling_block_by_block_gives_the_training_logits(next_scale_lm):
    """The sampler's cached passes (prompt + first block, then one block per scale) reproduce, position for
    position, the logits of the whole sequence under the training mask; a later block never changes them."""
    from mmtok.lm.attention import chunk_mask, packed_block_mask
    from mmtok.lm.llm import load_extended
    from mmtok.lm.sequences import Sequences, pack

    _, ext, _ = next_scale_lm
    model, tok, layout = load_extended(ext)
    m = layout.modality("image")
    codes = [int(c) for c in torch.randint(0, 16, (21,), generator=torch.Generator().manual_seed(0))]
    caption = tok("a red cat", add_special_tokens=False)["input_ids"]
    seq = Sequences(tok).caption_to_image(caption, np.array(m.span(codes)), m)
    row = pack([seq], len(seq.ids), tok.pad_token_id)
    ids, pos = row["input_ids"][None], row["position_ids"][None]

    def full(ids):
        with torch.no_grad():
            mask = packed_block_mask(pos, row["blocks"][None], torch.float32)
            return model(input_ids=ids, position_ids=pos, attention_mask=mask).logits[0]

    whole = full(ids)
    from transformers import DynamicCache

    cache, got = DynamicCache(), []
    prefix = len(seq.ids) - 21
    for side, (lo, hi) in zip(SCALES, [(0, prefix + 1), (prefix + 1, prefix + 5), (prefix + 5, prefix + 21)]):
        with torch.no_grad():
            out = model(input_ids=ids[:, lo:hi], position_ids=pos[:, lo:hi], cache=cache, use_cache=True,
                        attention_mask=chunk_mask(torch.ones(1, hi, dtype=torch.bool), hi - lo, side * side,
                                                  torch.float32))
        got.append(out.logits[0, -side * side:])
    torch.testing.assert_close(torch.cat(got), whole[prefix:], rtol=1e-4, atol=1e-5)
    changed = ids.clone()
    changed[0, prefix + 5:] = m.code_offset  # the finest block's inputs: the coarser blocks' logits stay
    torch.testing.assert_close(full(changed)[:prefix + 5], whole[:prefix + 5])
    changed = ids.clone()
    changed[0, prefix + 1] = m.code_offset + 15  # one token of block 2: its whole block sees it
    assert not torch.allclose(full(changed)[prefix + 1], whole[prefix + 1])


def test_next_scale_trains_and_draws_each_scale_in_one_forward_pass(next_scale_lm, tmp_path):
    from mmtok.lm.generate import generate_images
    from mmtok.lm.llm import load_extended
    from mmtok.lm.train import train

    bundle, ext, tokens = next_scale_lm
    summary = train(lm_recipe(ext, tokens, data__block_size=128, trainer__max_steps=4), tmp_path / "run",
                    save_model=False)
    assert summary["status"] == "finished" and np.isfinite(summary["final"]["val/image_loss"])
    assert np.isfinite(summary["final"]["val/caption_loss"])  # image -> caption keeps the ordinary span
    model, tok, layout = load_extended(ext)
    calls = []
    model.register_forward_pre_hook(lambda mod, args: calls.append(1))
    codes = generate_images(model, tok, layout, ["a red cat", "sun"], cfg_scale=2.0, temperature=1.5, seed=0)
    assert len(calls) == len(SCALES)  # one pass per scale, not one per token
    assert codes.shape == (2, 21) and 0 <= int(codes.min()) and int(codes.max()) < 16
    images = mmtok.load(bundle).decode(codes)
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()
    again = generate_images(model, tok, layout, ["a red cat", "sun"], cfg_scale=2.0, temperature=1.5, seed=0)
    assert torch.equal(codes, again)


def test_next_scale_is_refused_for_attention_that_ignores_the_mask_and_for_one_scale(next_scale_lm, tmp_path):
    from mmtok.lm.attention import check_block_attention
    from mmtok.lm.extend import extend
    from mmtok.lm.llm import load_extended

    with pytest.raises(MmtokError, match="multi-scale"):  # a VQGAN bundle: refused before the LLM loads
        extend(make_llm(tmp_path), [make_bundle(tmp_path)], tmp_path / "ext", next_scale=True)
    model, _, _ = load_extended(next_scale_lm[1])
    check_block_attention(model)
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(MmtokError, match="4-D attention mask"):
        check_block_attention(model)
