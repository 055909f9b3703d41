"""Semantic discrete encoding (MUSE-VL): one codebook whose codes carry a frozen teacher's semantics and pixels.

    t   = teacher(x).patches                       [B, N_t, C_t], resized to the token grid when N_t differs
    z   = proj(layer_norm(t)) + pixel_encoder(x)   [B, h, w, z_channels]
    z_q = Quant(z)                                 ids [B, h, w]
    semantic_decoder(z_q) ~ t   (loss "semantic" = 1 - cos per position, mean)
    pixel_decoder(z_q)    ~ x   (the image objective's l1 / l2 / perceptual / gan)

The teacher is a frozen submodule (no gradients, always in eval mode); its weights are part of the model's
state dict, so checkpoints and bundles hold them. Encoding needs the teacher; decoding and
`semantic_embedding(ids)` (what an understanding model is fed) need only the codes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmtok.contract import Tokenizer, TokenizerOutput, TokenSpec
from mmtok.errors import MmtokError
from mmtok.families.conv_image import image_grid_meta
from mmtok.families.sde.config import SDEConfig
from mmtok.nn.conv import ConvHead, Decoder, Encoder, QuantizedDecodeGraph
from mmtok.quantize import build_quantizer


class Projection(nn.Module):
    """Teacher features [B, C_t, h, w] -> [B, z_channels, h, w]: a 1x1 linear map, or Linear-Tanh-Linear."""

    def __init__(self, dim: int, out: int, kind: str):
        super().__init__()
        if kind == "mlp":
            self.net = nn.Sequential(nn.Conv2d(dim, out, 1), nn.Tanh(), nn.Conv2d(out, out, 1))
        else:
            self.net = nn.Conv2d(dim, out, 1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.net(t)


def teacher_map(teacher: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The teacher's patch features of x as a map on the token grid [B, C_t, h, w] (fp32; bilinear resize when
    the teacher's own grid differs)."""
    patches = teacher(x).patches.float()  # [B, N_t, C_t]
    b, _, c = patches.shape
    fmap = patches.transpose(1, 2).reshape(b, c, *teacher.grid)
    if tuple(teacher.grid) != tuple(grid):
        fmap = F.interpolate(fmap, size=grid, mode="bilinear", align_corners=False)
    return fmap


def latent(encoder: nn.Module, projection: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """proj(layer_norm(t)) + encoder(x), channel-last: the teacher's features are layer-normalised over channels
    (no affine) so their scale (EfficientNet stages: std ~10) does not swamp the pixel encoder's at init."""
    t = F.layer_norm(t.permute(0, 2, 3, 1), t.shape[1:2]).permute(0, 3, 1, 2)
    return (projection(t.to(x.dtype)) + encoder(x)).permute(0, 2, 3, 1)


def _rows(fmap: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, h*w, C] (row-major positions)."""
    return fmap.flatten(2).transpose(1, 2)


def semantic_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cos between predicted and teacher features [B, N, C], per position, mean (fp32)."""
    return (1 - F.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()


class SDE(Tokenizer):
    def __init__(self, cfg: SDEConfig, *, active_terms=(), pretrained: bool = True):
        """`active_terms`: the loss terms the recipe weighs ("semantic" only computed when asked); `pretrained=False`
        builds the teacher without reading its weights file (a checkpoint or bundle supplies them)."""
        super().__init__()
        from mmtok.teachers import build_teacher

        if cfg.resolution % cfg.downsample:
            raise MmtokError(f"image size {cfg.resolution} is not divisible by the downsample factor "
                             f"{cfg.downsample}", hint=f"use a multiple of {cfg.downsample} (--set model.resolution=...)")
        self.cfg = cfg
        self.active_terms = tuple(active_terms)
        # frozen; AssetError (one line) for a missing or wrong weights file
        self.teacher = build_teacher(cfg.teacher, load_weights=pretrained)
        g = cfg.resolution // cfg.downsample
        self.grid = (g, g)
        common = cfg.conv_kwargs()
        self.encoder = Encoder(in_channels=cfg.in_channels, **common)
        self.projection = Projection(self.teacher.dim, cfg.z_channels, cfg.projection)
        self.quantizer = build_quantizer(cfg.z_channels, cfg.quantizer, entropy_loss="entropy" in active_terms)
        self.decoder = Decoder(out_channels=cfg.in_channels, **common)
        self.semantic_decoder = ConvHead(cfg.z_channels, cfg.semantic_width, cfg.semantic_layers,
                                                self.teacher.dim)

    # ------------------------------------------------------------------------------------------- description

    @property
    def spec(self) -> TokenSpec:
        g, t = self.grid[0], self.teacher
        return TokenSpec.from_meta({
            "family": "sde",
            **image_grid_meta(self.cfg, self.cfg.quantizer),
            "semantic": {
                "branch": "one codebook: every id carries both the semantic and the pixel content",
                "output": "semantic_embedding(ids) -> [B, h*w, dim] (row-major): the semantic decoder's prediction "
                          "of the teacher's patch features; decode(ids) gives pixels",
                "teacher": t.name,
                "teacher_config": self.cfg.teacher.model_dump(mode="json"),
                "dim": t.dim,
                "layer": t.layer,
                "teacher_grid": list(t.grid),
                "grid": [g, g],
                "resized_to_grid": tuple(t.grid) != self.grid,
                "preprocessing": {"resolution": t.resolution, "mean": list(t.mean), "std": list(t.std),
                                  "resize": "bilinear, antialiased, from images in [-1, 1] mapped to [0, 1]"},
                "loss": "1 - cos per position to the teacher's patch features (mean)",
            },
        })

    @property
    def last_layer(self) -> torch.Tensor:
        """The pixel decoder's output weight (taming's adaptive GAN weight is computed on it)."""
        return self.decoder.conv_out.weight

    def check_input(self, x: torch.Tensor) -> None:
        c, r, f = self.cfg.in_channels, self.cfg.resolution, self.cfg.downsample
        if x.dim() != 4 or x.shape[1] != c or tuple(x.shape[-2:]) != (r, r):
            raise MmtokError(f"expected images [B, {c}, {r}, {r}] in [-1, 1], got {tuple(x.shape)}",
                             hint=f"this tokenizer was trained at {r}x{r} (token grid {r // f}x{r // f})")

    # ------------------------------------------------------------------------------------------- pieces

    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's patch features of images [B, 3, H, W] in [-1, 1] on the token grid:
        [B, h*w, C_t] (row-major; interpolated bilinearly when the teacher's own grid differs)."""
        with torch.no_grad():
            return self._teacher_map(x).flatten(2).transpose(1, 2)

    def _teacher_map(self, x: torch.Tensor) -> torch.Tensor:
        return teacher_map(self.teacher, x, self.grid)

    def latent(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z = proj(teacher features) + pixel_encoder(x), channel-last [B, h, w, z_channels]."""
        return latent(self.encoder, self.projection, x, t)

    # ------------------------------------------------------------------------------------------- contract

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        with torch.no_grad():
            t = self._teacher_map(x)
        q = self.quantizer(self.latent(x, t))
        z_q = q.z_q.permute(0, 3, 1, 2)
        recon = self.decoder(z_q)
        losses, stats = dict(q.losses), dict(q.stats)
        if "semantic" in self.active_terms or not self.training:
            sem = semantic_loss(_rows(self.semantic_decoder(z_q)), t.flatten(2).transpose(1, 2))
            if "semantic" in self.active_terms:
                losses["semantic"] = sem
            stats["semantic_cosine"] = (1 - sem).detach()
        return TokenizerOutput(recon=recon, ids=q.ids, losses=losses, stats=stats)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, R, R] in [-1, 1] -> ids [B, h, w] ([B, h, w, levels] for a residual quantizer)."""
        self.check_input(x)
        return self.quantizer(self.latent(x, self._teacher_map(x))).ids

    def _vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self.quantizer.lookup(ids).permute(0, 3, 1, 2)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, h, w] -> images [B, 3, R, R] (the pixel decoder)."""
        return self.decoder(self._vectors(ids))

    @torch.no_grad()
    def semantic_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, h, w] -> the semantic decoder's output [B, h*w, C_t] (row-major), in the teacher's feature
        space: what an understanding model is fed."""
        return _rows(self.semantic_decoder(self._vectors(ids)))

    def graph_modules(self) -> tuple[nn.Module, nn.Module]:
        """Export-safe (encode, decode) modules for torch.export / ONNX; encode includes the teacher."""
        return EncodeGraph(self), QuantizedDecodeGraph(self.quantizer, self.decoder)


class EncodeGraph(nn.Module):
    """Images [B, 3, R, R] in [-1, 1] -> ids [B, h, w] (int64), teacher included: the eager `SDE.encode`."""

    def __init__(self, sde: SDE):
        super().__init__()
        self.teacher, self.encoder, self.projection, self.quantizer = (sde.teacher, sde.encoder, sde.projection,
                                                                        sde.quantizer)
        self.grid = sde.grid
        self.input_dim = int(sde.quantizer.input_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = latent(self.encoder, self.projection, images, teacher_map(self.teacher, images, self.grid))
        b, h, w, _ = z.shape
        ids = self.quantizer.export_ids(z.reshape(-1, self.input_dim).float())
        return ids.reshape(b, h, w, *ids.shape[1:])
