"""Training sequences from token shards: caption -> image and image -> caption, packed into fixed-size rows.

    caption -> image:  [bos] caption <img> row eol row eol ... </img>     loss on everything after <img>
    image -> caption:  [bos] <img> row eol ... </img> caption [eos]       loss on the caption and [eos]
    unconditional:     [bos] <img> row eol ... </img>                     a caption -> image sequence whose caption
                                                                          was dropped (classifier-free guidance)

Every token has a kind: CONTEXT (no loss), CODE (an image code), STRUCT (end of row, end of image: image
weight, reported apart) or TEXT (caption tokens and [eos]). Rows are packed whole sequences, never split; each
sequence's positions restart at 0, so Hugging Face's packed-sequence masking (position ids that restart, no
attention mask) keeps sequences from attending to one another. The padding after the last sequence is CONTEXT.

A batch is a pure function of (seed, batch index, rank): resuming at step s re-creates batch s exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset

from mmtok.errors import DataError
from mmtok.lm.layout import ModalityLayout

CONTEXT, CODE, STRUCT, TEXT = 0, 1, 2, 3


@dataclass
class Pairs:
    """Captions and image spans of a set of samples: `spans` int64 [N, span_length] (vocabulary ids),
    `captions` token-id lists (cut to max_caption_tokens), `keys`."""

    spans: np.ndarray
    captions: list[list[int]]
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, index) -> "Pairs":
        index = list(index)
        return Pairs(self.spans[index], [self.captions[i] for i in index], [self.keys[i] for i in index])


def make_pairs(ids: np.ndarray, captions: list[str], keys: list[str], m: ModalityLayout, tokenizer,
               max_caption_tokens: int) -> Pairs:
    """Pairs from token-shard ids [N, *grid(, levels)] (codebook indices) and caption strings."""
    flat = ids.reshape(len(ids), -1).astype(np.int64)
    if flat.shape[1] != m.codes_per_sample or (flat.size and int(flat.max()) >= m.codebook_size):
        raise DataError(f"token ids of shape {tuple(ids.shape[1:])} (max {int(flat.max()) if flat.size else '-'}) do "
                        f"not fit the layout's {m.name} ({m.codes_per_sample} codes of {m.codebook_size})",
                        hint="tokenize with the bundle the model was extended with")
    spans = np.array([m.span(row) for row in flat], dtype=np.int64).reshape(len(flat), m.span_length)
    encoded = tokenizer(list(captions), add_special_tokens=False)["input_ids"] if captions else []
    return Pairs(spans, [list(c[:max_caption_tokens]) for c in encoded], list(keys))


class Sequences:
    """Builds the three kinds of sequence (module docstring) as (ids, kinds) lists."""

    def __init__(self, tokenizer):
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise DataError("the LLM's tokenizer has no end-of-sequence token",
                            hint="set tokenizer.eos_token before extending the model")

    def span_kinds(self, span: np.ndarray, m: ModalityLayout) -> list[int]:
        """Kinds of a span's tokens after <img>: codes CODE, end of row and </img> STRUCT."""
        lo, hi = m.code_offset, m.end_of_block
        return [CODE if lo <= int(i) < hi else STRUCT for i in span[1:]]

    def caption_to_image(self, caption: list[int], span: np.ndarray, m: ModalityLayout) -> tuple[list, list]:
        ids = self.bos + list(caption) + [int(span[0])]
        return ids + [int(i) for i in span[1:]], [CONTEXT] * len(ids) + self.span_kinds(span, m)

    def image_to_caption(self, span: np.ndarray, caption: list[int]) -> tuple[list, list]:
        ids = self.bos + [int(i) for i in span]
        target = list(caption) + [self.eos]
        return ids + target, [CONTEXT] * len(ids) + [TEXT] * len(target)

    def longest(self, m: ModalityLayout, max_caption_tokens: int) -> int:
        return len(self.bos) + max_caption_tokens + m.span_length + 1


def pack(seqs: list[tuple[list, list]], block_size: int, pad_id: int) -> dict:
    """Whole sequences packed into one row: {"input_ids", "kinds", "position_ids"} int64 [block_size]."""
    ids, kinds, pos = [], [], []
    for s, k in seqs:
        ids += s
        kinds += k
        pos += range(len(s))
    if len(ids) > block_size:
        raise ValueError(f"{len(ids)} tokens do not fit a block of {block_size}")
    pad = block_size - len(ids)
    return {"input_ids": torch.tensor(ids + [pad_id] * pad), "kinds": torch.tensor(kinds + [CONTEXT] * pad),
            "position_ids": torch.tensor(pos + list(range(pad)))}


def collate(rows: list[dict]) -> dict:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


class PackedBatches(IterableDataset):
    """An endless stream of training batches {"input_ids", "kinds", "position_ids"} int64 [B, block_size].

    Batch b is drawn from numpy's generator seeded by (seed, b, rank): pairs at random, each in direction
    caption -> image with probability `t2i_fraction` (its caption dropped with probability `caption_dropout`),
    else image -> caption; rows filled with whole sequences in turn. `start` is the first batch index (set on
    resume)."""

    def __init__(self, pairs: Pairs, m: ModalityLayout, seqs: Sequences, *, block_size: int, batch_size: int,
                 t2i_fraction: float, caption_dropout: float, seed: int, pad_id: int, rank: int = 0):
        if len(pairs) == 0:
            raise DataError("no training pairs", hint="tokenize more data, or lower data.holdout_fraction")
        self.pairs, self.m, self.seqs = pairs, m, seqs
        self.block_size, self.batch_size = block_size, batch_size
        self.t2i_fraction, self.caption_dropout = t2i_fraction, caption_dropout
        self.seed, self.pad_id, self.rank = seed, pad_id, rank
        self.start = 0

    def batch(self, b: int) -> dict:
        rng = np.random.default_rng([self.seed, b, self.rank])
        rows, current, used = [], [], 0
        while len(rows) < self.batch_size:
            i = int(rng.integers(len(self.pairs)))
            span, caption = self.pairs.spans[i], self.pairs.captions[i]
            if rng.random() < self.t2i_fraction:
                dropped = rng.random() < self.caption_dropout
                seq = self.seqs.caption_to_image([] if dropped else caption, span, self.m)
            else:
                seq = self.seqs.image_to_caption(span, caption)
            if used + len(seq[0]) > self.block_size:
                rows.append(pack(current, self.block_size, self.pad_id))
                current, used = [], 0
            current.append(seq)
            used += len(seq[0])
        return collate(rows)

    def __iter__(self):
        b = self.start
        while True:
            yield self.batch(b)
            b += 1


def validation_batches(pairs: Pairs, m: ModalityLayout, seqs: Sequences, batch_size: int, pad_id: int) -> list[dict]:
    """Every held-out pair in both directions (caption -> image with its caption, image -> caption), one
    sequence per row, right-padded to the longest: a fixed list of batches."""
    all_seqs = [seqs.caption_to_image(pairs.captions[i], pairs.spans[i], m) for i in range(len(pairs))]
    all_seqs += [seqs.image_to_caption(pairs.spans[i], pairs.captions[i]) for i in range(len(pairs))]
    width = max(len(s) for s, _ in all_seqs)
    rows = [pack([s], width, pad_id) for s in all_seqs]
    return [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
