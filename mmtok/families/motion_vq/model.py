"""The motion VQ-VAE (T2M-GPT; MoMask with a residual quantizer).

Contract: raw features [B, T, D] (T a multiple of 2 ** down_t; D the layout's dim; physical units, NOT
normalised) -> ids [B, T / f] ([B, T / f, levels] for a residual quantizer) -> raw features [B, T, D].
The model normalises with its own buffers `mean` / `std` [D] (x_n = (x - mean) / std) and denormalises what it
decodes, so a bundle carries its statistics and a model team never needs the dataset's Mean.npy / Std.npy.

Network (T2M-GPT models/encdec.py and resnet.py, norm None, ReLU): encoder = Conv1d(D, W, 3) + ReLU, then
`down_t` stages of [Conv1d(W, W, 4, stride 2, pad 1), dilated residual stack], then Conv1d(W, code_dim, 3);
decoder = Conv1d(code_dim, W, 3) + ReLU, `down_t` stages of [dilated residual stack, nearest x2 upsampling,
Conv1d(W, W, 3)], then Conv1d(W, W, 3) + ReLU + Conv1d(W, D, 3). A residual block is x + Conv1d(W, W, 1)(ReLU(
Conv1d(W, W, 3, dilation d)(ReLU(x)))); a stack runs dilations growth ** (depth - 1), ..., growth, 1 (T2M-GPT's
reverse_dilation, its default in both encoder and decoder). code_dim is the quantizer's dim.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmtok.contract import Tokenizer, TokenizerOutput, TokenSpec
from mmtok.errors import DataError, MmtokError
from mmtok.families.motion_vq.config import MotionVQConfig
from mmtok.quantize import build_quantizer


@dataclass
class MotionOutput(TokenizerOutput):
    """TokenizerOutput plus the normalised input and reconstruction [B, T, D] that the losses compare."""

    x_norm: torch.Tensor | None = None
    recon_norm: torch.Tensor | None = None


class ResBlock1d(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, 1, dilation, dilation)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


def res_stack(width: int, depth: int, growth: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock1d(width, growth ** i) for i in reversed(range(depth))])


class MotionEncoder(nn.Module):
    """[B, D, T] -> [B, code_dim, T / 2 ** down_t]."""

    def __init__(self, in_dim: int, width: int, code_dim: int, down_t: int, depth: int, growth: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(in_dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            layers.append(nn.Sequential(nn.Conv1d(width, width, 4, 2, 1), res_stack(width, depth, growth)))
        layers.append(nn.Conv1d(width, code_dim, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MotionDecoder(nn.Module):
    """[B, code_dim, t] -> [B, D, t * 2 ** down_t]."""

    def __init__(self, out_dim: int, width: int, code_dim: int, down_t: int, depth: int, growth: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(code_dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            layers.append(nn.Sequential(res_stack(width, depth, growth), nn.Upsample(scale_factor=2, mode="nearest"),
                                        nn.Conv1d(width, width, 3, 1, 1)))
        layers += [nn.Conv1d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv1d(width, out_dim, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def load_stats(source: str | None, dim: int, cfg: MotionVQConfig) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 [dim] named by `model.stats` (see MotionVQConfig.stats); DataError, one line, when
    they are missing, of another size, non-finite or not positive (std)."""
    hint = ("give model.stats: a folder with Mean.npy and Std.npy (HumanML3D ships them; `mmtok data pack` writes "
            "them for BVH / DeepMimic clips), an .npz with mean and std, 'train' (computed by `mmtok train`) or 'demo'")
    if source is None:
        raise DataError("model.stats is not set: a motion tokenizer needs the Mean/Std of its training features",
                        hint=hint)
    if source == "train":
        raise DataError("model.stats=train is computed from the training clips when `mmtok train` starts",
                        hint="train with this recipe, or name the statistics: a folder with Mean.npy and Std.npy or an .npz")
    if source == "identity":
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    if source == "demo":
        from mmtok.modalities.motion.pack import demo_stats

        mean, std = demo_stats(cfg)
    else:
        mean, std = read_stats(source, hint)
    for name, arr in (("Mean", mean), ("Std", std)):
        if arr.shape != (dim,):
            raise DataError(f"{name} from {source} has shape {list(arr.shape)}; the {cfg.features} layout has {dim} "
                            "features per frame", hint="use the statistics of features in this layout")
        if not np.isfinite(arr).all():
            raise DataError(f"{name} from {source} holds NaN or infinite values", hint="recompute it: mmtok data pack")
    if (std <= 0).any():
        raise DataError(f"Std from {source} has {(std <= 0).sum()} value(s) <= 0", hint="recompute it: mmtok data pack")
    return mean.astype(np.float32), std.astype(np.float32)


def read_stats(source: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    p = Path(source)
    try:
        if p.is_dir():
            files = {f.name.lower(): f for f in p.iterdir()}
            missing = [n for n in ("Mean.npy", "Std.npy") if n.lower() not in files]
            if missing:
                raise DataError(f"missing Mean/Std: {p} has no {' or '.join(missing)}", hint=hint)
            return (np.load(files["mean.npy"], allow_pickle=False).astype(np.float32),
                    np.load(files["std.npy"], allow_pickle=False).astype(np.float32))
        if p.is_file() and p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "mean" not in z or "std" not in z:
                    raise DataError(f"missing Mean/Std: {p} holds {sorted(z.files)}, not 'mean' and 'std'", hint=hint)
                return z["mean"].astype(np.float32), z["std"].astype(np.float32)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the statistics at {p}: {str(e).splitlines()[0][:160]}", hint=hint) from None
    raise DataError(f"missing Mean/Std: no folder or .npz at {source}", hint=hint)


class MotionVQ(Tokenizer):
    def __init__(self, cfg: MotionVQConfig, *, active_terms=(), pretrained: bool = True):
        """`pretrained`: read the statistics named by cfg.stats (False: they come with the weights)."""
        super().__init__()
        self.cfg = cfg
        self.layout = cfg.layout
        d, q = self.layout.dim, cfg.quantizer
        self.encoder = MotionEncoder(d, cfg.width, q.dim, cfg.down_t, cfg.depth, cfg.dilation_growth)
        self.quantizer = build_quantizer(q.dim, q, entropy_loss="entropy" in active_terms)
        self.decoder = MotionDecoder(d, cfg.width, q.dim, cfg.down_t, cfg.depth, cfg.dilation_growth)
        mean, std = load_stats(cfg.stats, d, cfg) if pretrained else (np.zeros(d, np.float32), np.ones(d, np.float32))
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))

    # ------------------------------------------------------------------------------------------- spec

    @property
    def spec(self) -> TokenSpec:
        """The token spec plus the motion keys: fps, feature layout and
        slices, skeleton, Mean/Std."""
        cfg, q, lay = self.cfg, self.cfg.quantizer, self.layout
        f, t = cfg.downsample, cfg.window // cfg.downsample
        sk = lay.skeleton
        spec = TokenSpec.from_meta({
            "family": "motion_vq", "modality": "motion",
            "input_size": [cfg.window, lay.dim], "value_range": [None, None],
            "token_grid": [t], "tokens_per_sample": t, "downsample": f,
            "num_codebooks": q.num_codebooks, "codebook_size": q.codebook_size, "codebook_dim": q.dim,
            "quantizer": q.kind, "layout": q.id_layout, "l2_norm": q.l2_norm,
            "flattening": f"time order, one token per {f} frames",
            "fps": cfg.fps, "features": lay.kind, "feature_dim": lay.dim, "num_joints": lay.num_joints,
            "slices": {k: list(v) for k, v in lay.slices.items()},
            "joints": list(sk.joints) if sk else None, "parents": list(sk.parents) if sk else None,
            "mean": [float(v) for v in self.mean.tolist()], "std": [float(v) for v in self.std.tolist()],
        })
        if spec.levels:
            spec = replace(spec, flattening=spec.flattening + ", residual levels innermost")
        return spec

    # ------------------------------------------------------------------------------------------- normalisation

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features [..., D] -> (x - mean) / std."""
        return (x - self.mean) / self.std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features [..., D] -> x * std + mean."""
        return x * self.std + self.mean

    def check_input(self, x: torch.Tensor) -> None:
        d, f = self.layout.dim, self.cfg.downsample
        if x.dim() != 3 or x.shape[-1] != d or x.shape[1] % f or x.shape[1] == 0:
            raise MmtokError(f"expected motion features [B, T, {d}] with T a multiple of {f}, got {tuple(x.shape)}",
                             hint=f"{self.layout.kind} features, frames first, at {self.cfg.fps:g} fps")

    # ------------------------------------------------------------------------------------------- forward

    def _quantize(self, xn: torch.Tensor):
        z = self.encoder(xn.transpose(1, 2))
        return self.quantizer(z.transpose(1, 2))

    def _decode(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.decoder(z_q.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> MotionOutput:
        self.check_input(x)
        xn = self.normalise(x.float())
        q = self._quantize(xn)
        recon_n = self._decode(q.z_q)
        return MotionOutput(recon=self.denormalise(recon_n), ids=q.ids, losses=q.losses, stats=q.stats,
                            x_norm=xn, recon_norm=recon_n)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features [B, T, D] -> ids [B, T / f] ([B, T / f, levels] for a residual quantizer)."""
        self.check_input(x)
        return self._quantize(self.normalise(x.float())).ids

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, t] (or [B, t, n], n <= levels) -> raw features [B, t * f, D]."""
        return self.denormalise(self._decode(self.quantizer.lookup(ids)))

    def graph_modules(self) -> tuple[nn.Module, nn.Module]:
        """Export-safe (encode, decode) modules for torch.export / ONNX (mmtok.export.graphs)."""
        return EncodeGraph(self), DecodeGraph(self)


class EncodeGraph(nn.Module):
    """Raw features [B, T, D] -> ids [B, T / f] (int64; [..., levels] residual), normalisation included."""

    def __init__(self, model: MotionVQ):
        super().__init__()
        self.encoder, self.quantizer = model.encoder, model.quantizer
        self.register_buffer("mean", model.mean.clone())
        self.register_buffer("std", model.std.clone())
        self.code_dim = int(model.quantizer.input_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.encoder(((features - self.mean) / self.std).transpose(1, 2))
        b, _, t = z.shape
        ids = self.quantizer.export_ids(z.transpose(1, 2).reshape(-1, self.code_dim).float())
        return ids.reshape(b, t, *ids.shape[1:])


class DecodeGraph(nn.Module):
    """Ids [B, t] ([B, t, levels] residual) -> raw features [B, t * f, D], denormalisation included."""

    def __init__(self, model: MotionVQ):
        super().__init__()
        self.decoder, self.quantizer = model.decoder, model.quantizer
        self.register_buffer("mean", model.mean.clone())
        self.register_buffer("std", model.std.clone())
        self.code_dim = int(model.quantizer.input_dim)
        self.residual = model.spec.levels > 0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, t = ids.shape[0], ids.shape[1]
        flat = ids.reshape(b * t, -1) if self.residual else ids.reshape(-1)
        z = self.quantizer.export_vectors(flat).reshape(b, t, self.code_dim)
        return self.decoder(z.transpose(1, 2)).transpose(1, 2) * self.std + self.mean
