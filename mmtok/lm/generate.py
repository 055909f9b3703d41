"""Sampling from an extended LM: captions -> images with classifier-free guidance, images -> captions.

    model, tokenizer, layout = load_extended("runs/lm/model")
    codes = generate_images(model, tokenizer, layout, ["a red apple"] * 4, cfg_scale=3.0, top_k=100, seed=0)
    images = mmtok.load(bundle).decode(codes)                    # float [4, 3, R, R] in [-1, 1]
    texts = caption_images(model, tokenizer, layout, codes)     # list of 4 strings

Text -> image: the conditional prompts `[bos] caption <img>` and the unconditional prompt `[bos] <img>` (what a
dropped caption looks like in training) run as one doubled batch, left-padded; at every code position the
guided logits are `uncond + s * (cond - uncond)` (computed as `cond + (s - 1) * (cond - uncond)`, the same
number, exactly `cond` at s = 1). Only the image's code range is ever sampled (for a residual layout, the range
of that position's level), and the structural tokens (end of row, end of image) are forced where the layout puts
them, so every sample is a well-formed span that decodes. Top-k, top-p and temperature use transformers' logits
warpers. `cfg_scale=None` samples without guidance (a batch of conditional rows only).

A next-scale layout (mmtok.lm.layout, `next_scale`) is sampled as VAR samples: one forward pass per scale. The
prompt ends with the first scale's block (copies of `<img>`); each pass returns the logits of a whole block, all of
its codes are drawn at once, and scale k's codes upsampled to s_(k+1) x s_(k+1) are the next block, attending to the
cache and to itself (mmtok.lm.attention.chunk_mask). The codes come back as an ordinary span.
"""
from __future__ import annotations

import torch

from mmtok.lm.layout import Layout, ModalityLayout


def _warpers(temperature: float, top_k: int | None, top_p: float | None):
    from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                        TopKLogitsWarper, TopPLogitsWarper)

    out = LogitsProcessorList()
    if temperature and temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k:
        out.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    return out


def sample(logits: torch.Tensor, warpers, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Indices [B] drawn from logits [B, K] (greedy when temperature is 0)."""
    if not temperature:
        return logits.argmax(-1)
    scores = warpers(None, logits.float())
    probs = torch.softmax(scores, -1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(logits.device)


def _left_padded(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids) [B, L] for prompts of different lengths, padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def _prompts(tokenizer, captions: list[str], start: list[int], cfg_scale: float | None, device):
    """(input_ids, attention_mask, position_ids), left-padded: `[bos] caption start` per caption, then, with
    guidance, `[bos] start` per caption (what a dropped caption looks like in training)."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    cond = [bos + tokenizer(c, add_special_tokens=False)["input_ids"] + start for c in captions]
    prompts = cond + ([bos + start] * len(cond) if cfg_scale is not None else [])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return _left_padded(prompts, pad, device)


def _guided(logits: torch.Tensor, b: int, cfg_scale: float | None) -> torch.Tensor:
    """The logits to sample from: the conditional rows, moved away from the unconditional ones (rows b:) by
    cfg_scale (module docstring); as they are without guidance."""
    if cfg_scale is None:
        return logits
    c, u = logits[:b], logits[b:]
    return c + (cfg_scale - 1.0) * (c - u)


@torch.no_grad()
def generate_spans(model, tokenizer, m: ModalityLayout, captions: list[str], *, cfg_scale: float | None = 3.0,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   seed: int = 0) -> torch.Tensor:
    """Image spans (vocabulary ids, int64 [B, span_length], begin to end) for `captions` (module docstring)."""
    from transformers import DynamicCache

    if m.next_scale:
        return _spans_by_scale(model, tokenizer, m, captions, cfg_scale=cfg_scale, temperature=temperature,
                               top_k=top_k, top_p=top_p, seed=seed)
    device = model.device
    ids, mask, pos = _prompts(tokenizer, captions, [m.begin_id], cfg_scale, device)
    generator = torch.Generator().manual_seed(seed)
    warpers = _warpers(temperature, top_k, top_p)
    b = len(captions)
    cache = DynamicCache()
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                logits_to_keep=1)
    span = [torch.full((b,), m.begin_id, device=device)]
    for j in range(1, m.span_length):
        lo, hi = m.allowed(j)
        if hi - lo == 1:  # a structural token: forced
            token = torch.full((b,), lo, device=device)
        else:
            logits = _guided(out.logits[:, -1, lo:hi].float(), b, cfg_scale)
            token = lo + sample(logits, warpers, temperature, generator)
        span.append(token)
        if j == m.span_length - 1:
            break
        step = token.repeat(len(ids) // b)[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        pos = pos[:, -1:] + 1
        out = model(input_ids=step, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
    return torch.stack(span, 1)


def _spans_by_scale(model, tokenizer, m: ModalityLayout, captions: list[str], *, cfg_scale, temperature, top_k,
                    top_p, seed) -> torch.Tensor:
    """`generate_spans` for a next-scale layout: a whole scale per forward pass (module docstring)."""
    from transformers import DynamicCache

    from mmtok.lm.attention import check_block_attention, chunk_mask

    check_block_attention(model)
    device, dtype = model.device, model.dtype
    ids, keys, pos = _prompts(tokenizer, captions, [m.begin_id] * m.scales[0] ** 2, cfg_scale, device)
    generator = torch.Generator().manual_seed(seed)
    warpers = _warpers(temperature, top_k, top_p)
    sources = torch.tensor(m.block_sources(), device=device)
    lo, hi = m.code_range()
    b, rows, cache = len(captions), len(ids), DynamicCache()
    codes = torch.empty(b, 0, dtype=torch.long, device=device)  # vocabulary ids, coarse to fine
    block, at = ids, 0  # the prompt, then each scale's block
    for k, side in enumerate(m.scales):
        n = side * side
        mask = chunk_mask(keys.bool(), block.shape[1], n, dtype)
        out = model(input_ids=block, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                    logits_to_keep=n)
        logits = _guided(out.logits[:, -n:, lo:hi].float(), b, cfg_scale)
        drawn = lo + sample(logits.reshape(b * n, -1), warpers, temperature, generator).reshape(b, n)
        codes = torch.cat([codes, drawn], 1)
        at += n
        if at == m.codes_per_sample:
            break
        block = codes[:, sources[at:at + m.scales[k + 1] ** 2]].repeat(rows // b, 1)
        keys = torch.cat([keys, torch.ones_like(block)], 1)
        pos = pos[:, -1:] + 1 + torch.arange(block.shape[1], device=device)
    flat = (codes - lo).tolist()
    return torch.tensor([m.span(row) for row in flat], device=device)


def spans_to_codes(spans: torch.Tensor, m: ModalityLayout) -> torch.Tensor:
    """Codebook indices int64 [B, *grid(, levels)] of well-formed spans [B, span_length]."""
    codes = torch.tensor([m.codes(s.tolist()) for s in spans.cpu()])
    shape = m.token_grid + ((m.levels,) if m.levels > 1 else ())
    return codes.reshape(len(spans), *shape)


def generate_images(model, tokenizer, layout: Layout, captions: list[str], *, modality: str = "image",
                    **kwargs) -> torch.Tensor:
    """Codebook indices int64 [B, *grid(, levels)] for `captions`, ready for the bundle's `decode`; keyword
    arguments as `generate_spans` (cfg_scale, temperature, top_k, top_p, seed)."""
    m = layout.modality(modality)
    return spans_to_codes(generate_spans(model, tokenizer, m, captions, **kwargs), m)


@torch.no_grad()
def caption_images(model, tokenizer, layout: Layout, codes, *, modality: str = "image", max_new_tokens: int = 32,
                   temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                   seed: int = 0) -> list[str]:
    """A caption per image for codebook indices [B, *grid(, levels)] (as the bundle's `encode` gives them):
    `[bos] <img> ... </img>` continued with text tokens only (image ids suppressed), greedy unless a
    temperature is given, until end of sequence."""
    from transformers import GenerationConfig

    m = layout.modality(modality)
    flat = torch.as_tensor(codes).reshape(len(codes), -1).tolist()
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = torch.tensor([bos + m.span(c) for c in flat], device=model.device)
    torch.manual_seed(seed)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=bool(temperature),
                              temperature=temperature or None, top_k=top_k or None, top_p=top_p,
                              eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                              else tokenizer.eos_token_id,
                              suppress_tokens=list(range(layout.text_vocab_size, layout.model_vocab_size)))
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return [t.strip() for t in tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)]
