"""Modalities: what the core needs to know about one kind of data, in one module per modality.

`mmtok/modalities/<name>/` (or a module of that name) defines `MODALITY = Modality(...)`; a modality defined
elsewhere is made known with `register(Modality(...))`. Families name their modality (`Family.modality`); `get(name)`
imports the module, so no central file lists the modalities. The package
also holds everything else modality-specific that its families share: reading and decoding, streams, packing,
objectives and metric suites, samples and plots (e.g. mmtok.modalities.image.objective).

Fields (callables, or "module:attribute" strings imported on first use, so declaring a modality imports no torch):
  sources {kind: builder}         data sources by kind ("demo", "folder", "shards"; see mmtok.data.sources):
                                  builder(source, split, spec, *, seed, max_samples, shuffle_buffer, holdout)
  evaluate(model_path, data, *, out, force, num_samples, batch_size, devices, accelerator, num_workers, ema,
           console, progress, **modality_options) -> dict   `mmtok eval` (see mmtok.evaluation.evaluate)
  tokenizer   a mmtok.export.tokenizer.BaseTokenizer subclass: what `mmtok.load(bundle)` returns
  bundle_meta(meta) -> dict       keys merged into tokenizer.json: "input", "ids", "vocab_size",
                                  "special_tokens" (and any flattening orders the modality offers)
  card(cfg, meta, evaluation, recipe_yaml, info, *, graphs, name, onnx) -> str   the bundle's README.md
  lm_prefix                       the LM stage's token prefix (mmtok.lm.layout): "img" gives <img> ... </img>
  lm_inputs(tok, source, kind) or None   `mmtok tokenize`'s reader of this modality's data (mmtok.lm.inputs)
  pack(...) or None               `mmtok data pack` for this modality (see mmtok.cli.data): into shards,
                                  pack(src, out_pattern, shard_size=, val_fraction=, seed=, progress=, ...) ->
                                  mmtok.data.pack.PackReport; or into a folder, pack(src, out, ...) -> a report that
                                  pack_summary(report) turns into the lines printed
  find_files(folder) or None      the modality's files in a folder; `--modality auto` chooses among the modalities
                                  that declare it and pack into shards
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Mapping

from mmtok.errors import MmtokError


@dataclass(frozen=True)
class Modality:
    name: str
    sources: Mapping[str, str | Callable]
    evaluate: str | Callable
    tokenizer: str | Callable
    bundle_meta: str | Callable
    card: str | Callable
    lm_prefix: str  # the LM stage's token prefix: <img>, <img_00042>, ... (a second bundle adds a digit)
    lm_inputs: str | Callable | None = None
    pack: str | Callable | None = None
    pack_summary: str | Callable | None = None  # report -> lines, for a packer that writes a folder, not shards
    find_files: str | Callable | None = None  # folder -> its files of this modality (`data pack --modality auto`)

    def resolve(self, field: str):
        """The callable behind `field` (imported when given as "module:attribute")."""
        return _resolve(getattr(self, field))

    def source(self, kind: str) -> Callable:
        """The data source builder of `kind`; DataError naming the kinds this modality has."""
        if kind not in self.sources:
            from mmtok.errors import DataError

            raise DataError(f"no {kind} data source for {self.name}",
                            hint="available: " + (", ".join(sorted(self.sources)) or "none"))
        return _resolve(self.sources[kind])


def _resolve(value):
    if value is None or callable(value):
        return value
    module, _, attr = value.partition(":")
    return getattr(importlib.import_module(module), attr)


_REGISTERED: dict[str, Modality] = {}


def register(modality: Modality) -> Modality:
    """Make a modality defined outside mmtok/modalities/ known (e.g. in a test file or a plugin); names must be new."""
    if modality.name in _REGISTERED:
        raise ValueError(f"modality {modality.name!r} is registered twice")
    _REGISTERED[modality.name] = modality
    return modality


def names() -> list[str]:
    """Every modality: the packages under mmtok/modalities/ and the registered ones."""
    import pkgutil

    return sorted({info.name for info in pkgutil.iter_modules(__path__)} | set(_REGISTERED))


def get(name: str) -> Modality:
    """The modality called `name`: a registered one, else `mmtok.modalities.<name>.MODALITY`."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise MmtokError(f"no modality {name!r}: mmtok/modalities/{name}/ does not exist",
                         hint="a family's `modality` must name a package under mmtok/modalities/ or a modality "
                         "registered with mmtok.modalities.register") from None
    found = getattr(module, "MODALITY", None)
    if not isinstance(found, Modality):
        raise MmtokError(f"mmtok.modalities.{name} defines no MODALITY = Modality(...)")
    return found
