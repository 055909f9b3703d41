"""The layout of an extended language model's vocabulary: which ids are text, which are each modality's codes, and
which are structural tokens (torch-free; written as `mmtok_layout.json` beside the model and read by every
`mmtok lm` command).

Ids below `text_vocab_size` are the LLM's own tokenizer. Then, per tokenized modality (one per bundle, in the
order given to `mmtok lm extend`), a contiguous block:

    <img>  </img>  <img_eol>  <img_00000> ... <img_01023>          (single codebook, 2-D grid; Emu3-style rows)
    <img>  </img>  <img_l0_00000> ... <img_l0_01023> <img_l1_00000> ...   (residual: one range per level)

    <img>  </img>  <img_scale>  <img_00000> ... <img_04095>        (multi-scale, VAR-style next-scale tokens)

A sample's span is `begin, row 0, eol, row 1, eol, ..., end` for a 2-D grid (`begin, codes..., end` for a 1-D
grid; `begin, scale 1, <img_scale>, scale 2, <img_scale>, ..., end` for a multi-scale tokenizer, coarse to fine,
each scale's s x s map row-major, so any causal LM predicts the next scale from every coarser one with ordinary
causal attention); inside a row each grid position holds its levels in order (coarse to fine), each from its own
level's range. `span_length` is fixed per modality, so a sampler knows at every step which token is forced (begin, eol,
end) and which id range the next code must come from (`allowed`).

With `next_scale` (`mmtok lm extend --next-scale`, multi-scale bundles only), a caption -> image sequence is VAR's
instead: its image part holds one block per scale, s x s tokens each, with no markers and no end; block 1 is s_1^2
copies of `<img>`, block k the ids of scale k - 1 upsampled (nearest) to s_k x s_k, and each position of block k
predicts the code at its own place in scale k. A block attends to every coarser block and to itself in full (a 4-D
attention mask, mmtok.lm.attention), so a sampler draws a whole scale per forward pass. Image -> caption sequences
keep the ordinary span.

Ids can exceed 65,535: token shards and sequences use uint32 / int64, never uint16.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from mmtok.errors import CheckpointError, MmtokError

LAYOUT_FILE = "mmtok_layout.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModalityLayout:
    """One bundle's block of ids. `code_offset + level * codebook_size + code` is the id of `code` at `level`."""

    name: str  # "image", or "image_1" for a second image bundle
    prefix: str  # token-string prefix: "img", "img1", "aud", ...
    bundle: str  # the bundle's path when the model was extended (informational)
    bundle_checksum: str  # mmtok.lm.layout.bundle_checksum of that bundle
    family: str
    modality: str
    token_grid: tuple[int, ...]
    id_layout: str  # the bundle's "layout": single, residual, shared_index, 1d_causal
    levels: int  # codes per grid position (residual levels; 1 otherwise)
    codebook_size: int
    begin_id: int
    end_id: int
    eol_id: int | None  # end of row (2-D grids) or end of scale (multi-scale), None for 1-D sequences
    code_offset: int
    scales: tuple[int, ...] | None = None  # multi_scale bundles: the sides, coarse to fine (one row per scale)
    next_scale: bool = False  # multi_scale: caption -> image sequences in VAR's block-causal form (module docstring)

    # ------------------------------------------------------------------------------------ derived sizes

    @property
    def rows(self) -> int:
        return self.token_grid[0] if len(self.token_grid) == 2 else 1

    @property
    def row_codes(self) -> int:
        """Codes per row (per sample for a 1-D grid), levels included."""
        per_position = self.levels
        return (self.token_grid[1] if len(self.token_grid) == 2 else self.token_grid[0]) * per_position

    @property
    def row_lengths(self) -> tuple[int, ...]:
        """Codes of each row of a span, levels included: the grid's rows, or one row per scale (s * s codes)."""
        if self.scales:
            return tuple(s * s * self.levels for s in self.scales)
        return (self.row_codes,) * self.rows

    @property
    def codes_per_sample(self) -> int:
        return sum(self.row_lengths)

    @property
    def span_length(self) -> int:
        """Tokens of one sample's span: begin + codes + one eol per row (2-D; per scale, multi-scale) + end."""
        return self.codes_per_sample + (len(self.row_lengths) if self.eol_id is not None else 0) + 2

    @property
    def first_id(self) -> int:
        return min(i for i in (self.begin_id, self.end_id, self.eol_id, self.code_offset) if i is not None)

    @property
    def end_of_block(self) -> int:
        """One past the last id of this modality's block."""
        return self.code_offset + self.levels * self.codebook_size

    def block_sources(self) -> list[int]:
        """next_scale: for each position of the image blocks (codes_per_sample of them, coarse to fine), the index
        into the flat codes of the code that is its input (scale k - 1 upsampled nearest to s_k x s_k), or -1 for
        the first scale's positions (their input is `<img>`)."""
        out = [-1] * self.scales[0] ** 2
        start = 0
        for s, t in zip(self.scales, self.scales[1:]):
            out += [start + (r * s // t) * s + (c * s // t) for r in range(t) for c in range(t)]
            start += s * s
        return out

    def code_range(self, level: int = 0) -> tuple[int, int]:
        """[lo, hi) ids of the codes of `level`."""
        lo = self.code_offset + level * self.codebook_size
        return lo, lo + self.codebook_size

    def tokens(self) -> list[str]:
        """Every token string of the block, in id order (begin, end, eol, then the codes level by level)."""
        width = max(5, len(str(self.codebook_size - 1)))
        out = [f"<{self.prefix}>", f"</{self.prefix}>"]
        if self.eol_id is not None:
            out.append(f"<{self.prefix}_scale>" if self.scales else f"<{self.prefix}_eol>")
        for level in range(self.levels):
            lv = f"l{level}_" if self.levels > 1 else ""
            out += [f"<{self.prefix}_{lv}{c:0{width}d}>" for c in range(self.codebook_size)]
        return out

    # ------------------------------------------------------------------------------------ spans

    def allowed(self, j: int) -> tuple[int, int]:
        """What may stand at position `j` of a span (0 = begin): [lo, hi) ids. A forced token has hi == lo + 1."""
        if j == 0:
            return self.begin_id, self.begin_id + 1
        if j == self.span_length - 1:
            return self.end_id, self.end_id + 1
        k = j - 1  # position in the body (codes and eols)
        marked = 1 if self.eol_id is not None else 0
        for length in self.row_lengths:
            if k < length:
                return self.code_range(k % self.levels)
            if marked and k == length:
                return self.eol_id, self.eol_id + 1
            k -= length + marked
        raise ValueError(f"{self.name}: position {j} is past the span's {self.span_length} tokens")

    def span(self, codes: Sequence[int]) -> list[int]:
        """The span ids of one sample's codes (flat, row-major, levels innermost, each in [0, codebook_size))."""
        codes = [int(c) for c in codes]
        if len(codes) != self.codes_per_sample:
            raise ValueError(f"{self.name}: expected {self.codes_per_sample} codes, got {len(codes)}")
        out, at = [self.begin_id], 0
        for length in self.row_lengths:
            row = codes[at:at + length]
            at += length
            out += [self.code_offset + (i % self.levels) * self.codebook_size + c for i, c in enumerate(row)]
            if self.eol_id is not None:
                out.append(self.eol_id)
        out.append(self.end_id)
        return out

    def codes(self, span: Sequence[int]) -> list[int]:
        """Inverse of `span`: the flat codes of a span (ValueError naming the first malformed position)."""
        span = [int(i) for i in span]
        if len(span) != self.span_length:
            raise ValueError(f"{self.name}: a span has {self.span_length} tokens, got {len(span)}")
        out = []
        for j, i in enumerate(span):
            lo, hi = self.allowed(j)
            if not lo <= i < hi:
                raise ValueError(f"{self.name}: token {i} at span position {j} is outside [{lo}, {hi})")
            if hi - lo == self.codebook_size:
                out.append((i - self.code_offset) % self.codebook_size)
        return out


@dataclass(frozen=True)
class Layout:
    """The whole extended vocabulary. `tokenizer_size` = len(tokenizer) after extension; `model_vocab_size` =
    the model's embedding rows (>= tokenizer_size: a padded vocabulary is never shrunk)."""

    base_model: str
    text_vocab_size: int
    tokenizer_size: int
    model_vocab_size: int
    modalities: tuple[ModalityLayout, ...]
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def modality(self, name: str = "image") -> ModalityLayout:
        for m in self.modalities:
            if m.name == name:
                return m
        raise CheckpointError(f"the model's layout has no modality {name!r}",
                              hint="it has: " + ", ".join(m.name for m in self.modalities))

    def for_bundle(self, checksum: str) -> ModalityLayout | None:
        return next((m for m in self.modalities if m.bundle_checksum == checksum), None)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Layout":
        data = json.loads(text)
        mods = tuple(ModalityLayout(**{**m, "token_grid": tuple(m["token_grid"]),
                                       "scales": tuple(m["scales"]) if m.get("scales") else None})
                     for m in data.pop("modalities"))
        return cls(**data, modalities=mods)

    def save(self, directory: str | os.PathLike) -> Path:
        from mmtok.files import write_text

        path = write_text(Path(directory) / LAYOUT_FILE, self.to_json())
        return path

    def check(self) -> None:
        """ValueError unless the blocks are contiguous, start at text_vocab_size, do not overlap, and fit in
        tokenizer_size <= model_vocab_size."""
        at = self.text_vocab_size
        for m in self.modalities:
            ids = [m.begin_id, m.end_id] + ([m.eol_id] if m.eol_id is not None else [])
            if ids != list(range(at, at + len(ids))) or m.code_offset != at + len(ids):
                raise ValueError(f"modality {m.name}: ids do not continue at {at}")
            at = m.end_of_block
        if at != self.tokenizer_size:
            raise ValueError(f"the blocks end at {at}, but tokenizer_size is {self.tokenizer_size}")
        if self.model_vocab_size < self.tokenizer_size:
            raise ValueError(f"model_vocab_size {self.model_vocab_size} < tokenizer_size {self.tokenizer_size}")


def bundle_spec(path, meta: dict):
    """The token spec of a bundle's tokenizer.json `meta`, if the LM stage can lay it out; CheckpointError naming
    the bundle and the problem otherwise (a malformed spec, or a layout the LM stage does not build)."""
    from mmtok.contract import TokenSpec

    try:
        spec = TokenSpec.from_meta(meta)
    except ValueError as e:
        raise CheckpointError(f"bundle {path} has a malformed tokenizer.json ({e})",
                              hint="re-export it with `mmtok export`") from None
    if spec.multi_scale and spec.levels:
        raise MmtokError(f"bundle {path} has several levels per position on top of its scales, which the LM stage "
                         "cannot lay out", hint="extend the LM with a multi-scale tokenizer of one id per position")
    return spec


def check_next_scale(multi_scale: list[bool]) -> None:
    """MmtokError unless one of the bundles (their `multi_scale` flags) is multi-scale, as next-scale needs."""
    if not any(multi_scale):
        raise MmtokError("next-scale sequences need a multi-scale tokenizer, and no bundle given is one",
                         hint="leave out --next-scale, or extend with a multi-scale bundle (family var, tokenflow)")


def plan_layout(base_model: str, text_vocab_size: int, model_rows: int, bundles: Iterable[tuple[str, str, dict]],
                pad_to_multiple_of: int | None = None, next_scale: bool = False) -> Layout:
    """The layout for extending a tokenizer of `text_vocab_size` entries (model with `model_rows` embedding rows)
    by `bundles`: (path, checksum, tokenizer.json meta) each. The model keeps at least `model_rows` rows (never
    shrunk), rounded up to `pad_to_multiple_of` when given. `next_scale`: every multi-scale bundle's caption ->
    image sequences take VAR's block-causal form (module docstring)."""
    from mmtok import modalities

    mods, at, seen = [], text_vocab_size, {}
    for path, checksum, meta in bundles:
        spec = bundle_spec(path, meta)
        modality = spec.modality
        n = seen.get(modality, 0)
        seen[modality] = n + 1
        prefix = modalities.get(modality).lm_prefix + (str(n) if n else "")
        grid = spec.token_grid
        levels = max(spec.levels, 1)
        marked = len(grid) == 2 or spec.multi_scale  # rows end with <img_eol>, scales with <img_scale>
        begin, end = at, at + 1
        eol = at + 2 if marked else None
        offset = at + (3 if marked else 2)
        mods.append(ModalityLayout(
            name=modality + (f"_{n}" if n else ""), prefix=prefix, bundle=str(path), bundle_checksum=checksum,
            family=spec.family, modality=modality, token_grid=grid,
            id_layout=spec.layout, levels=levels, codebook_size=spec.codebook_size,
            begin_id=begin, end_id=end, eol_id=eol, code_offset=offset,
            scales=tuple(spec.scales) if spec.multi_scale else None, next_scale=next_scale and spec.multi_scale))
        at = mods[-1].end_of_block
    if next_scale:
        check_next_scale([m.scales is not None for m in mods])
    rows = max(model_rows, at)
    if pad_to_multiple_of:
        rows = -(-rows // pad_to_multiple_of) * pad_to_multiple_of
    layout = Layout(base_model=base_model, text_vocab_size=text_vocab_size, tokenizer_size=at,
                    model_vocab_size=rows, modalities=tuple(mods))
    layout.check()
    return layout


def read_layout(model_dir: str | os.PathLike) -> Layout:
    """The layout of an extended model directory; CheckpointError when missing or malformed."""
    path = Path(model_dir) / LAYOUT_FILE
    if not path.is_file():
        raise CheckpointError(f"{model_dir} has no {LAYOUT_FILE}: not a model extended by mmtok",
                              hint="make one with `mmtok lm extend --llm LLM_DIR --tokenizer BUNDLE --out DIR`")
    try:
        layout = Layout.from_json(path.read_text())
        layout.check()
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path} is malformed ({e})", hint="re-run `mmtok lm extend`") from None
    if layout.format_version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has layout format {layout.format_version}; this mmtok reads {FORMAT_VERSION}")
    return layout


def bundle_checksum(bundle: str | os.PathLike) -> str:
    """sha256 over the sha256 of the files that decide a bundle's tokens (config.json, model.safetensors,
    tokenizer.json), computed from the files themselves: two bundles with this checksum give the same ids."""
    import hashlib

    from mmtok.export.load import CONFIG_FILE, META_FILE, WEIGHTS_FILE, sha256

    h = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE, META_FILE):
        path = Path(bundle) / name
        if not path.is_file():
            raise CheckpointError(f"bundle {bundle} has no {name}", hint="give a directory made by `mmtok export`")
        h.update(f"{name}:{sha256(path)}\n".encode())
    return h.hexdigest()
