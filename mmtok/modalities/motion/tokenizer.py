"""What `mmtok.load` returns for a motion bundle, the motion keys of tokenizer.json, and the model card.

    tok = mmtok.load("bundles/motion")
    ids = tok.encode(features)        # raw features [B, T, D] (or [T, D]; tensor or array), T a multiple of f
    feats = tok.decode(ids)           # raw features [B, t * f, D], Mean/Std applied back
    joints = tok.joints(feats)        # [B, T, J, 3] metres (HumanML3D's recover_from_ric)
    tok.normalise(feats), tok.denormalise(x)   # the bundle's own Mean/Std, exactly as the model applies them

Inputs are raw features in the bundle's layout (tokenizer.json "features", "slices", "fps"): the model
normalises with the Mean/Std it carries (also in tokenizer.json "mean" / "std"), so nobody needs the
dataset's Mean.npy / Std.npy.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmtok.errors import MmtokError
from mmtok.export.card import plain_torch, recipe_and_files
from mmtok.export.tokenizer import BaseTokenizer


class MotionTokenizer(BaseTokenizer):
    """A motion bundle: `encode(features)` -> ids [B, t] (+ [levels]), `decode(ids)` -> features [B, T, D]."""

    def __init__(self, model, meta: dict, config: dict, path=None):
        super().__init__(model, meta, config, path)
        self.dim = int(meta["feature_dim"])
        self.downsample = int(meta["downsample"])
        self.fps = float(meta["fps"])

    @property
    def layout(self):
        return self.model.layout

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features [..., D] -> (x - mean) / std with the bundle's statistics."""
        return self.model.normalise(self._features(x))

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features [..., D] -> x * std + mean."""
        return self.model.denormalise(self._features(x))

    def joints(self, features: Any) -> torch.Tensor:
        """Joint positions [..., T, J, 3] (metres, Y up) of raw features [..., T, D]."""
        from mmtok.modalities.motion.recover import recover_joints

        return recover_joints(self._features(features), self.layout)

    def _features(self, x: Any) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise MmtokError(f"expected motion features as a tensor or array, got a {type(x).__name__}",
                             hint=f"pass float features [B, T, {self.dim}]")
        if not x.is_floating_point():
            raise MmtokError(f"motion features must be floats, got {str(x.dtype).replace('torch.', '')}")
        if x.shape[-1:] != (self.dim,):
            raise MmtokError(f"got features with {x.shape[-1] if x.dim() else 0} values per frame; this tokenizer's "
                             f"{self.meta['features']} layout has {self.dim}",
                             hint="features must be in the bundle's layout (tokenizer.json: features, slices)")
        return x.float().to(self.device)

    def preprocess(self, x: Any) -> torch.Tensor:
        """float32 [B, T, D] raw features on this device from a tensor / array [B, T, D] or [T, D], or a list of
        [T, D] clips of one length; MmtokError for another width, T not a multiple of the downsample factor,
        or NaN / infinite values."""
        if isinstance(x, (list, tuple)):
            if not x:
                raise MmtokError("encode got an empty list", hint="pass at least one clip")
            x = torch.stack([self._features(c) for c in x])
        x = self._features(x)
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3:
            raise MmtokError(f"encode got a tensor of shape {tuple(x.shape)}; it expects [B, T, {self.dim}]")
        f = self.downsample
        if x.shape[1] == 0 or x.shape[1] % f:
            raise MmtokError(f"encode got {x.shape[1]} frames; this tokenizer needs a multiple of {f} "
                             f"(one token per {f} frames at {self.fps:g} fps)",
                             hint=f"trim or pad the clip to {max(f, x.shape[1] // f * f)} frames")
        if not bool(torch.isfinite(x).all()):
            raise MmtokError("encode got features with NaN or infinite values",
                             hint="drop or interpolate those frames first")
        return x

    def check_ids(self, ids: Any) -> torch.Tensor:
        """ids as int64 [B, t] ([B, t, n] with 1 <= n <= levels for a residual quantizer) from those shapes, one
        clip without the batch dimension ([t], or [t, n] with n <= levels), or flat [B, t * levels] sequences
        (time-major, levels innermost; a 2-D tensor wider than `levels`); MmtokError for floats or values
        outside [0, K)."""
        ids = self.as_id_tensor(ids)
        L = self.levels
        if L:
            if ids.dim() == 2 and ids.shape[1] <= L:
                ids = ids.unsqueeze(0)  # one clip [t, n]
            elif ids.dim() == 2:  # flat sequences [B, t * L]
                if ids.shape[1] % L:
                    raise MmtokError(f"decode got flat ids of length {ids.shape[1]}, not a multiple of the {L} levels",
                                     hint=f"pass [B, t, n] ids or flat [B, t * {L}] sequences")
                ids = ids.reshape(ids.shape[0], -1, L)
            ok = ids.dim() == 3 and 1 <= ids.shape[2] <= L and ids.shape[1] >= 1
            want = f"[B, t, n] (1 <= n <= {L})"
        else:
            if ids.dim() == 1:
                ids = ids.unsqueeze(0)
            ok = ids.dim() == 2 and ids.shape[1] >= 1
            want = "[B, t]"
        if not ok:
            raise MmtokError(f"decode got ids of shape {tuple(ids.shape)}; it expects {want}",
                             hint=f"one token per {self.downsample} frames")
        return self.check_range(ids)

    def postprocess(self, out: torch.Tensor) -> torch.Tensor:
        return out.float()


def motion_bundle_meta(meta: dict) -> dict:
    """The motion modality's tokenizer.json keys: how to prepare an input, the id layout, special tokens."""
    from mmtok.contract import TokenSpec

    spec = TokenSpec.from_meta(meta)
    k, levels = spec.codebook_size, spec.levels
    f, fps = int(meta["downsample"]), float(meta["fps"])
    width = max(5, len(str(k - 1)))
    return {
        "input": {
            "shape": ["B", "T", meta["feature_dim"]], "layout": "[B, T, D]: frames first, one feature vector per "
            f"frame at {fps:g} fps, T a multiple of {f}", "dtype": "float32",
            "features": meta["features"], "slices": meta["slices"],
            "normalisation": "none by the caller: pass raw features; the model applies (x - mean) / std with the "
                             "mean and std below and inverts it on decode",
        },
        "ids": {
            "dtype": "int64", "shape": ["B", f"T/{f}", *([levels] if levels else [])], "range": [0, k],
            "layout": f"time order, one token per {f} frames ({fps / f:g} tokens per second)"
                      + ("; residual levels innermost (coarse to fine)" if levels else ""),
            "per_sample": f"T/{f}" + (f" * {levels}" if levels else ""),
            "offset": 0,
            "offsets_note": "ids are codebook indices starting at 0; add your own vocabulary offset in the LM"
                            + (f" (e.g. level i at i * {k})" if levels else ""),
        },
        "vocab_size": k,
        "special_tokens": {
            "begin": "<motion>", "end": "</motion>", "code_format": f"<motion_{{:0{width}d}}>",
            "note": f"suggested: one clip = begin, its codes in time order as code_format.format(id), then end; "
                    f"{k * max(levels, 1)} + 2 new tokens in all",
        },
    }


def motion_card(cfg: dict, meta: dict, evaluation: dict | None, recipe_yaml: str, info: dict, *, graphs: bool,
                name: str, onnx: bool = False) -> str:
    """The bundle's README.md for a motion tokenizer."""
    from mmtok.evaluation.report import metric_rows

    k, f, d = meta["codebook_size"], meta["downsample"], meta["feature_dim"]
    fps, window = meta["fps"], meta["input_size"][0]
    from mmtok.contract import TokenSpec

    residual = TokenSpec.from_meta(meta).levels > 0
    ids_shape = f"[B, T/{f}" + (f", {meta['num_codebooks']}]" if residual else "]")
    slices = ", ".join(f"{n} [{a}:{b}]" for n, (a, b) in meta["slices"].items() if b > a)
    lines = [
        f"# {name}", "",
        f"A discrete motion tokenizer ({cfg['family']}, recipe `{cfg['recipe_name']}`) exported by mmtok "
        f"{cfg['mmtok_version']}: {d}-d {meta['features']} pose features at {fps:g} fps become one token per {f} "
        f"frames from {'a residual stack of ' + str(meta['num_codebooks']) + ' codebooks' if residual else 'a codebook'}"
        f" of {k} codes (trained on {window}-frame windows).", "",
        "| | |", "|---|---|",
        f"| input | float32 [B, T, {d}] raw features (T a multiple of {f}); slices: {slices} |",
        f"| normalisation | inside the model: (x - mean) / std with the {d} means and stds in tokenizer.json; decode "
        "inverts it |",
        f"| tokens | {ids_shape} int64 in [0, {k}), time order |",
        f"| codebook | {meta['num_codebooks']} x {k} codes of dim {meta['codebook_dim']} ({meta['quantizer']}) |",
        f"| weights | {cfg['weights']} (training step {cfg['step']}) |",
        f"| suggested LM tokens | `{meta['special_tokens']['begin']}` codes as `{meta['special_tokens']['code_format']}`"
        f" `{meta['special_tokens']['end']}` |", "",
        "## Evaluation", "",
    ]
    if evaluation:
        proto = evaluation.get("protocol", {})
        lines += [f"Reconstruction of {proto.get('num_samples')} windows of {proto.get('window')} frames from "
                  f"`{proto.get('data')}`, {evaluation.get('model', {}).get('weights')} weights; joints recovered "
                  "from features, MPJPE root-aligned (full protocol in eval.json).", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {label} | {value} |" for label, value in metric_rows(evaluation.get("metrics", {}))]
    else:
        lines.append("Not evaluated before export (run `mmtok eval MODEL --data ...`, then export again).")
    lines += [
        "", "## Usage", "", "```python", "import mmtok", "",
        f'tok = mmtok.load("{name}")',
        f"ids = tok.encode(features)      # features: float32 [B, T, {d}] raw, T a multiple of {f} -> {ids_shape}",
        f"recon = tok.decode(ids)         # float32 [B, T, {d}] raw features",
        "joints = tok.joints(recon)       # [B, T, J, 3] metres, Y up", "```", "",
    ]
    if graphs:
        lines += plain_torch(
            f"Without mmtok (plain torch; torch.export graphs, dynamic batch, fixed T = {window}; normalisation "
            "inside):", name,
            f"ids = encoder(features)   # float32 [B, {window}, {d}] -> int64 "
            f"{ids_shape.replace('T/' + str(f), str(window // f))}",
            "recon = decoder(ids)       # -> float32 raw features")
    lines += recipe_and_files(cfg, recipe_yaml, evaluation=evaluation, graphs=graphs, onnx=onnx,
                              tokenizer_json="token metadata, feature layout, Mean/Std",
                              weights_keys=", `mean` and `std` among them")
    return "\n".join(lines)
