"""Training sequences from token shards: caption -> span and span -> caption, packed into fixed-size rows.

A span is one sample of the model's modality in the layout's order (mmtok.lm.layout: an image's rows with end of
row, an audio clip's frames with their levels, a motion window's tokens):

    caption -> span:   [bos] caption <img> row eol row eol ... </img>     loss on everything after <img>
    span -> caption:   [bos] <img> row eol ... </img> caption [eos]       loss on the caption and [eos]
    unconditional:     [bos] <img> row eol ... </img>                     a caption -> span sequence whose caption
                                                                          was dropped (classifier-free guidance)
(`<aud> ... </aud>`, `<mot> ... </mot>` for audio and motion; the method names say "image" for any modality.)

With a next-scale layout (`next_scale`, mmtok.lm.layout) a caption -> image sequence is VAR's instead:

    caption -> image:  [bos] caption <img> block 2 ... block K          block k: scale k - 1 upsampled to s_k x s_k;
                                                                        each position predicts scale k's code there

Every target has a kind: CONTEXT (no loss), CODE (a code of the span), STRUCT (end of row, end of span: the span's
weight, reported apart) or TEXT (caption tokens and [eos]). A sequence (`Seq`) gives, per position, the id fed in,
the target predicted there and its kind, and its block (-1 outside a block). Rows are packed whole sequences, never
split; each sequence's positions restart at 0, so Hugging Face's packed-sequence masking (position ids that restart,
no attention mask) keeps sequences from attending to one another; a row with blocks gets a 4-D mask that does the
same (mmtok.lm.attention). The padding after the last sequence is CONTEXT.

Training batches are read from the token shards a few shards at a time (`PackedBatches`), never the whole data
set at once. A batch is a pure function of (seed, batch index, rank): resuming at step s re-creates batch s exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset

from mmtok.errors import DataError
from mmtok.lm.layout import ModalityLayout

CONTEXT, CODE, STRUCT, TEXT = 0, 1, 2, 3
NO_TARGET = -100


@dataclass
class Seq:
    """One sequence: at each position the id fed in, the id predicted there (NO_TARGET for none), the target's kind,
    and the position's block (-1: ordinary causal attention)."""

    ids: list[int]
    targets: list[int]
    kinds: list[int]
    blocks: list[int]

    @classmethod
    def causal(cls, ids: list[int], kinds: list[int]) -> "Seq":
        """An ordinary sequence from its tokens and each token's kind: position t predicts token t + 1."""
        kinds = list(kinds[1:]) + [CONTEXT]
        targets = [i if k != CONTEXT else NO_TARGET for i, k in zip(list(ids[1:]) + [0], kinds)]
        return cls(list(ids), targets, kinds, [-1] * len(ids))


@dataclass
class Pairs:
    """Captions and image spans of a set of samples: `spans` int64 [N, span_length] (vocabulary ids; a list of N
    int64 arrays when clips were kept whole, each as long as its clip), `captions` token-id lists (cut to
    max_caption_tokens), `keys`."""

    spans: np.ndarray | list
    captions: list[list[int]]
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)


def take(ids, rows) -> np.ndarray | list:
    """The rows `rows` (a list of indices) of token-shard ids: an array [N, ...] or a list of whole clips."""
    return ids[rows] if isinstance(ids, np.ndarray) else [ids[i] for i in rows]


def make_pairs(ids: np.ndarray | list, captions: list[str], keys: list[str], m: ModalityLayout, tokenizer,
               max_caption_tokens: int) -> Pairs:
    """Pairs from token-shard ids [N, *grid(, levels)] (codebook indices; or a list of clips kept whole,
    [length(, levels)] each, for a 1-D grid) and caption strings; each row's span equals `m.span(row)` (made here
    for the whole array at once), a whole clip's span is begin, its codes (levels innermost), end."""
    encoded = tokenizer(list(captions), add_special_tokens=False)["input_ids"] if len(captions) else []
    texts = [list(c[:max_caption_tokens]) for c in encoded]
    if not isinstance(ids, np.ndarray):
        return Pairs([_whole_span(row, m) for row in ids], texts, list(keys))
    n = len(ids)
    flat = ids.reshape(n, -1).astype(np.int64)
    if flat.shape[1] != m.codes_per_sample or (flat.size and int(flat.max()) >= m.codebook_size):
        raise DataError(f"token ids of shape {tuple(ids.shape[1:])} (max {int(flat.max()) if flat.size else '-'}) do "
                        f"not fit the layout's {m.name} ({m.codes_per_sample} codes of {m.codebook_size})",
                        hint="tokenize with the bundle the model was extended with")
    codes = flat + m.code_offset + (np.arange(flat.shape[1]) % m.levels) * m.codebook_size
    if m.eol_id is not None:  # each row of the grid (each scale of a multi-scale tokenizer) ends with its marker
        parts, at = [], 0
        for length in m.row_lengths:
            parts += [codes[:, at:at + length], np.full((n, 1), m.eol_id, np.int64)]
            at += length
        codes = np.concatenate(parts, 1)
    spans = np.concatenate([np.full((n, 1), m.begin_id, np.int64), codes, np.full((n, 1), m.end_id, np.int64)], 1)
    return Pairs(spans, texts, list(keys))


def _whole_span(row: np.ndarray, m: ModalityLayout) -> np.ndarray:
    flat = row.reshape(-1).astype(np.int64)
    levels = row.shape[1] if row.ndim == 2 else 1
    if m.eol_id is not None or levels != m.levels or (flat.size and int(flat.max()) >= m.codebook_size):
        raise DataError(f"token ids of shape {tuple(row.shape)} do not fit the layout's {m.name} (a 1-D grid of "
                        f"{m.levels} level(s) of {m.codebook_size} codes)",
                        hint="tokenize with the bundle the model was extended with")
    codes = flat + m.code_offset + (np.arange(flat.size) % m.levels) * m.codebook_size
    return np.concatenate([[m.begin_id], codes, [m.end_id]]).astype(np.int64)


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

    def caption_to_image(self, caption: list[int], span: np.ndarray, m: ModalityLayout) -> Seq:
        if m.next_scale:
            return self.caption_to_scales(caption, span, m)
        ids = self.bos + list(caption) + [int(span[0])]
        return Seq.causal(ids + [int(i) for i in span[1:]], [CONTEXT] * len(ids) + self.span_kinds(span, m))

    def caption_to_scales(self, caption: list[int], span: np.ndarray, m: ModalityLayout) -> Seq:
        """VAR's form (module docstring): one block per scale, each position predicting its own code."""
        codes = [int(i) for i in span[1:-1] if i != m.eol_id]  # vocabulary ids, coarse to fine
        inputs = [m.begin_id if j < 0 else codes[j] for j in m.block_sources()]
        blocks = [k for k, s in enumerate(m.scales) for _ in range(s * s)]
        prefix = self.bos + list(caption)
        n = len(prefix)
        return Seq(prefix + inputs, [NO_TARGET] * n + codes, [CONTEXT] * n + [CODE] * len(codes), [-1] * n + blocks)

    def image_to_caption(self, span: np.ndarray, caption: list[int]) -> Seq:
        ids = self.bos + [int(i) for i in span]
        target = list(caption) + [self.eos]
        return Seq.causal(ids + target, [CONTEXT] * len(ids) + [TEXT] * len(target))

    def caption_to_image_length(self, caption_tokens: int, span_length: int, m: ModalityLayout) -> int:
        """Tokens of a caption -> image sequence (a span of `span_length` tokens; its codes in next-scale form)."""
        return len(self.bos) + caption_tokens + (m.codes_per_sample if m.next_scale else span_length)

    def longest(self, m: ModalityLayout, max_caption_tokens: int) -> int:
        return len(self.bos) + max_caption_tokens + m.span_length + 1


def pack(seqs: list[Seq], block_size: int, pad_id: int) -> dict:
    """Whole sequences packed into one row: {"input_ids", "position_ids", "targets", "kinds", "blocks"} int64
    [block_size] (targets and kinds: what each position predicts; blocks numbered apart across the sequences)."""
    ids, targets, kinds, blocks, pos, base = [], [], [], [], [], 0
    for s in seqs:
        ids += s.ids
        targets += s.targets
        kinds += s.kinds
        blocks += [b + base if b >= 0 else -1 for b in s.blocks]
        base += max(s.blocks) + 1
        pos += range(len(s.ids))
    if len(ids) > block_size:
        raise ValueError(f"{len(ids)} tokens do not fit a block of {block_size}")
    pad = block_size - len(ids)
    return {"input_ids": torch.tensor(ids + [pad_id] * pad), "position_ids": torch.tensor(pos + list(range(pad))),
            "targets": torch.tensor(targets + [NO_TARGET] * pad), "kinds": torch.tensor(kinds + [CONTEXT] * pad),
            "blocks": torch.tensor(blocks + [-1] * pad)}


def collate(rows: list[dict]) -> dict:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


class TokenPairs:
    """The training pairs of a token directory (mmtok.lm.tokens.TokenShards), one shard at a time: `pairs(n)` reads
    shard n, keeps its training samples (`train_masks[n]`, bool [count]; held-out ones removed) and makes their
    Pairs. `counts[n]`: training samples of shard n (known without reading ids)."""

    def __init__(self, shards, m: ModalityLayout, tokenizer, max_caption_tokens: int,
                 train_masks: dict[int, np.ndarray] | None = None):
        self.shards, self.m, self.tokenizer, self.max_caption_tokens = shards, m, tokenizer, max_caption_tokens
        self.train_masks = train_masks or {}
        self.counts = [int(self.train_masks[n].sum()) if n in self.train_masks else shards.count(n)
                       for n in range(len(shards))]

    def __len__(self) -> int:
        return sum(self.counts)

    def pairs(self, n: int) -> Pairs:
        z = self.shards.load(n)
        keep = np.flatnonzero(self.train_masks[n]) if n in self.train_masks else np.arange(len(z["keys"]))
        return make_pairs(take(z["ids"], list(keep)), [z["captions"][i] for i in keep], [z["keys"][i] for i in keep],
                          self.m, self.tokenizer, self.max_caption_tokens)


def concat_pairs(parts: list[Pairs], width: int) -> Pairs:
    if not parts:
        return Pairs(np.zeros((0, width), np.int64), [], [])
    spans = (np.concatenate([p.spans for p in parts]) if all(isinstance(p.spans, np.ndarray) for p in parts)
             else [s for p in parts for s in p.spans])
    return Pairs(spans, [c for p in parts for c in p.captions], [k for p in parts for k in p.keys])


class PackedBatches(IterableDataset):
    """An endless stream of training batches (`pack`'s keys, int64 [B, block_size]),
    read from the token shards a few at a time.

    Batches come in groups of `batches_per_group`; group g holds `group_shards` shards in memory: the next ones of
    an endless sequence of shard orders (a fresh permutation of the shards with training samples per pass,
    seeded by (seed, pass, rank)). Inside a group, numpy's generator seeded by (seed, g, rank) walks the group's
    samples in a random permutation (a new one when they run out), each in direction caption -> span with
    probability `t2i_fraction` (its caption dropped with probability `caption_dropout`), else span -> caption;
    rows are filled with whole sequences in turn. `batches_per_group` is chosen so a group uses its samples about
    once. So batch b is a pure function of (seed, b, rank) and the data: resuming at batch b reads only b's group's
    shards and re-creates b exactly. `start` is the first batch index (set on resume)."""

    def __init__(self, pairs: TokenPairs, m: ModalityLayout, seqs: Sequences, *, block_size: int, batch_size: int,
                 t2i_fraction: float, caption_dropout: float, seed: int, pad_id: int, rank: int = 0,
                 group_shards: int = 4):
        self.shard_pool = [n for n, c in enumerate(pairs.counts) if c > 0]
        if not self.shard_pool:
            raise DataError("no training pairs", hint="tokenize more data, or lower data.holdout_fraction")
        self.pairs, self.m, self.seqs = pairs, m, seqs
        self.block_size, self.batch_size = block_size, batch_size
        self.t2i_fraction, self.caption_dropout = t2i_fraction, caption_dropout
        self.seed, self.pad_id, self.rank = seed, pad_id, rank
        self.group_shards = max(1, min(group_shards, len(self.shard_pool)))
        per_shard = len(pairs) / len(self.shard_pool)
        per_batch = batch_size * max(1, block_size // (m.span_length + 2))  # sequences a batch holds, about
        self.batches_per_group = max(1, math.ceil(self.group_shards * per_shard / per_batch))
        self.start = 0
        self._orders: dict[tuple[int, int], np.ndarray] = {}
        self._group: tuple[tuple[int, int], Pairs, list] | None = None

    def group_of(self, g: int) -> list[int]:
        """The shards of group g (each once, in order)."""
        out = []
        for p in range(g * self.group_shards, (g + 1) * self.group_shards):
            epoch, j = divmod(p, len(self.shard_pool))
            key = (epoch, self.rank)  # the rank is set after construction (LMTask.setup): part of every cache key
            if key not in self._orders:
                self._orders = {key: np.random.default_rng([self.seed, epoch, self.rank, 1]).permutation(
                    self.shard_pool)}
            n = int(self._orders[key][j])
            if n not in out:
                out.append(n)
        return out

    def _plan(self, g: int) -> tuple[Pairs, list]:
        """(the group's pairs, its batches: rows of (pair index, direction, caption dropped) each)."""
        if self._group is not None and self._group[0] == (g, self.rank):
            return self._group[1], self._group[2]
        self._group = None  # the previous group's shards are released before the next ones are read
        pool = concat_pairs([self.pairs.pairs(n) for n in self.group_of(g)], self.m.span_length)
        rng = np.random.default_rng([self.seed, g, self.rank, 2])
        order, at = rng.permutation(len(pool)), 0
        batches, rows, current, used = [], [], [], 0
        while len(batches) < self.batches_per_group:
            if at == len(order):
                order, at = rng.permutation(len(pool)), 0
            i = int(order[at])
            at += 1
            span_len = len(pool.spans[i])
            if rng.random() < self.t2i_fraction:
                dropped = bool(rng.random() < self.caption_dropout)
                caption = 0 if dropped else len(pool.captions[i])
                seq, length = (i, True, dropped), self.seqs.caption_to_image_length(caption, span_len, self.m)
            else:
                seq, length = (i, False, False), len(self.seqs.bos) + span_len + len(pool.captions[i]) + 1
            if used + length > self.block_size:
                rows.append(current)
                current, used = [], 0
                if len(rows) == self.batch_size:
                    batches.append(rows)
                    rows = []
            current.append(seq)
            used += length
        self._group = ((g, self.rank), pool, batches)
        return pool, batches

    def batch(self, b: int) -> dict:
        g, r = divmod(b, self.batches_per_group)
        pool, batches = self._plan(g)
        out = []
        for row in batches[r]:
            seqs = []
            for i, to_span, dropped in row:
                span, caption = pool.spans[i], pool.captions[i]
                if to_span:
                    seqs.append(self.seqs.caption_to_image([] if dropped else caption, span, self.m))
                else:
                    seqs.append(self.seqs.image_to_caption(span, caption))
            out.append(pack(seqs, self.block_size, self.pad_id))
        return collate(out)

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
    width = max(len(s.ids) for s in all_seqs)
    rows = [pack([s], width, pad_id) for s in all_seqs]
    return [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
