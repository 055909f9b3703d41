"""TokenFlow: semantic + pixel encoders, a dual codebook with one shared index, semantic and pixel decoders.

Contract: images [B, 3, R, R] in [-1, 1] -> ids [B, R/f, R/f] (LongTensor, row-major grid; each id picks a code
in BOTH codebooks) -> images. `semantic_embedding(ids)` gives the semantic decoder's teacher-space features
[B, N, C] of ids (what an understanding model reads); `teacher_features(x)` the frozen teacher's [B, N, C].

With `scales` (multi-scale residual quantization, mmtok.families.tokenflow.multiscale) ids are a flat [B, L],
L = sum(s*s), coarse to fine and row-major within each scale (token spec layout "multi_scale"); both decoders read
the accumulated map f_hat on the g x g grid, so `semantic_embedding` still gives [B, g*g, C].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmtok.contract import Tokenizer, TokenizerOutput, TokenSpec
from mmtok.errors import MmtokError
from mmtok.families.conv_image import image_grid_meta
from mmtok.families.tokenflow.config import TokenFlowConfig
from mmtok.families.tokenflow.dual import DualCodebook
from mmtok.families.tokenflow.multiscale import MultiScaleDualCodebook, map_rows, rows_map
from mmtok.nn.conv import ConvHead, Decoder, Encoder


def _grid_features(patches: torch.Tensor, grid: tuple[int, int], size: int) -> torch.Tensor:
    """Teacher patches [B, N, C] on its `grid` -> [B, C, size, size] (area / bilinear resize when they differ)."""
    b, _, c = patches.shape
    fmap = patches.transpose(1, 2).reshape(b, c, *grid)
    if tuple(grid) != (size, size):
        fmap = F.interpolate(fmap, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return fmap


def _rows(fmap, sem_encoder, sem_proj, encoder, pix_proj, x, teacher_grid, grid):
    """(semantic rows [N, sem_dim], pixel rows [N, pix_dim]) of images x: the semantic features are `fmap`
    ([B, C, g, g], already computed) or `sem_encoder`'s; rows are row-major over the grid, batch first."""
    if fmap is None:
        fmap = _grid_features(sem_encoder(x).patches, teacher_grid, grid)
    sem = sem_proj(fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1]))
    z = encoder(x)
    pix = pix_proj(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]))
    return sem, pix


def _pixels(qs, qp, b, grid, both, post_proj, decoder):
    """Unit codes [N, sem_dim], [N, pix_dim] -> images [B, C, R, R] through the pixel decoder."""
    z = torch.cat([qs, qp], dim=1) if both else qp
    return decoder(post_proj(z).reshape(b, grid, grid, -1).permute(0, 3, 1, 2))


class SemanticHead(nn.Module):
    """TokenFlow's Linear-Tanh-Linear projection of semantic features [..., C] to the code space [..., dim]."""

    def __init__(self, in_dim: int, hidden: int, dim: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class TokenFlow(Tokenizer):
    def __init__(self, cfg: TokenFlowConfig, *, active_terms=(), pretrained: bool = True):
        """`active_terms`: the weighted loss terms ("semantic" is computed only when weighted); `pretrained=False`
        builds the teacher without reading its weights file (a checkpoint or bundle supplies them)."""
        super().__init__()
        from mmtok.teachers import build_teacher

        self.cfg, self.active_terms = cfg, tuple(active_terms)
        q = cfg.quantizer
        self.teacher = build_teacher(cfg.teacher, load_weights=pretrained)  # frozen: the semantic target (and, for 'head', the encoder)
        self.semantic_encoder = self.teacher.trainable_copy() if cfg.semantic_encoder == "copy" else None
        t_dim = self.teacher.dim
        self.grid = cfg.grid
        self.sem_proj = SemanticHead(t_dim, cfg.sem_hidden or t_dim, q.sem_dim)
        common = cfg.conv_kwargs()
        self.encoder = Encoder(in_channels=cfg.in_channels, **common)
        self.pix_proj = nn.Linear(cfg.z_channels, q.pix_dim)
        self.scales = list(cfg.scales) if cfg.scales else None
        self.quantizer = (MultiScaleDualCodebook(q, self.scales, cfg.scale_drop) if self.scales
                          else DualCodebook(q))
        dec_in = q.pix_dim + (q.sem_dim if cfg.pixel_decoder_input == "both" else 0)
        self.post_proj = nn.Linear(dec_in, cfg.z_channels)
        self.decoder = Decoder(out_channels=cfg.in_channels, **common)
        self.semantic_decoder = ConvHead(q.sem_dim, cfg.sem_decoder_width, cfg.sem_decoder_blocks, t_dim)

    # ------------------------------------------------------------------------------------------------ meta

    @property
    def spec(self) -> TokenSpec:
        cfg, q, t = self.cfg, self.cfg.quantizer, self.teacher
        meta = {
            "family": "tokenflow",
            **image_grid_meta(cfg, q),
            "codebooks": {
                "semantic": {"size": q.codebook_size, "dim": q.sem_dim, "l2_norm": True},
                "pixel": {"size": q.codebook_size, "dim": q.pix_dim, "l2_norm": True},
                "index": f"shared: id = argmin {q.sem_weight:g} d_sem + {q.pix_weight:g} d_pix",
            },
            "semantic": {
                "branch": "semantic codebook (codebook_sem); semantic_embedding(ids) gives teacher-space features",
                "embedding_dim": t.dim,
                "encoder": "trainable copy of the teacher" if cfg.semantic_encoder == "copy"
                else "frozen teacher + trainable head",
                "teacher": {"name": t.name, "config": cfg.teacher.model_dump(mode="json"), "layer": t.layer,
                            "resolution": t.resolution, "mean": list(t.mean), "std": list(t.std),
                            "grid": list(t.grid), "dim": t.dim,
                            "preprocessing": f"[-1, 1] -> [0, 1] -> bilinear antialiased resize to {t.resolution}"
                            " -> (x - mean) / std"},
                "pixel_decoder_input": cfg.pixel_decoder_input,
            },
        }
        if self.scales:
            meta.update(self._multiscale_meta())
        return TokenSpec.from_meta(meta)

    def _multiscale_meta(self) -> dict:
        """The token-spec fields that differ with multi-scale residual quantization."""
        q, scales, g = self.cfg.quantizer, self.scales, self.grid
        offsets = self.quantizer.offsets
        n = offsets[-1]
        return {
            "token_grid": [n], "tokens_per_sample": n, "layout": "multi_scale", "l2_norm": False,
            "flattening": f"coarse to fine, scale by scale (sides {scales}), row-major within each scale: the "
                          f"ids of scale i (an s_i x s_i map) are ids[:, scale_offsets[i]:scale_offsets[i + 1]]",
            "scales": list(scales), "scale_offsets": list(offsets), "final_grid": [g, g],
            "codebooks": {
                "semantic": {"size": q.codebook_size, "dim": q.sem_dim, "l2_norm": False},
                "pixel": {"size": q.codebook_size, "dim": q.pix_dim, "l2_norm": False},
                "index": f"shared per position per scale: id = argmin {q.sem_weight:g} ||r_sem - c_sem||^2 + "
                         f"{q.pix_weight:g} ||r_pix - c_pix||^2 on the area-downsampled residual r of the "
                         "l2-normalised features; raw (unnormalised) codes, one codebook pair for all scales",
                "decode": f"f_hat = sum over scales of bicubic-upsample(codes of that scale, {g}x{g})",
            },
        }

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    def check_input(self, x: torch.Tensor) -> None:
        c, r = self.cfg.in_channels, self.cfg.resolution
        if x.dim() != 4 or x.shape[1] != c or tuple(x.shape[-2:]) != (r, r):
            raise MmtokError(f"expected images [B, {c}, {r}, {r}] in [-1, 1], got {tuple(x.shape)}",
                             hint=f"this tokenizer works at {r}x{r} (its token grid is tied to the teacher's)")

    # ------------------------------------------------------------------------------------------------ parts

    @torch.no_grad()
    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's patch features [B, N, C] of images in [-1, 1], on the token grid (N = h * w)."""
        fmap = _grid_features(self.teacher(x).patches, self.teacher.grid, self.grid)
        return fmap.flatten(2).transpose(1, 2)

    def _features(self, x: torch.Tensor):
        """(semantic rows [N, sem_dim], pixel rows [N, pix_dim], teacher target [B, C, g, g] or None)."""
        if self.semantic_encoder is None:
            with torch.no_grad():
                target = _grid_features(self.teacher(x).patches, self.teacher.grid, self.grid)
            sem, pix = _rows(target, None, self.sem_proj, self.encoder, self.pix_proj, x, self.teacher.grid,
                             self.grid)
            return sem, pix, target
        sem, pix = _rows(None, self.semantic_encoder, self.sem_proj, self.encoder, self.pix_proj, x,
                         self.teacher.grid, self.grid)
        return sem, pix, None

    def _maps(self, sem: torch.Tensor, pix: torch.Tensor, b: int):
        """Rows [B * g * g, C] of both branches -> maps [B, C, g, g]."""
        return rows_map(sem, b, self.grid), rows_map(pix, b, self.grid)

    def _pixels(self, qs: torch.Tensor, qp: torch.Tensor, b: int) -> torch.Tensor:
        """Unit codes [N, sem_dim], [N, pix_dim] -> images [B, C, R, R]."""
        return _pixels(qs, qp, b, self.grid, self.cfg.pixel_decoder_input == "both", self.post_proj, self.decoder)

    def _semantic(self, qs: torch.Tensor, b: int) -> torch.Tensor:
        """Unit semantic codes [N, sem_dim] -> teacher-space features [B, C, g, g]."""
        g = self.grid
        return self.semantic_decoder(qs.reshape(b, g, g, -1).permute(0, 3, 1, 2))

    # ------------------------------------------------------------------------------------------------ contract

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        b, g = x.shape[0], self.grid
        sem, pix, target = self._features(x)
        if self.scales:
            hat_s, hat_p, ids, losses, stats = self.quantizer(*self._maps(sem, pix, b))
            qs, qp = map_rows(hat_s), map_rows(hat_p)
        else:
            qs, qp, ids, losses, stats = self.quantizer(sem, pix)
            ids = ids.reshape(b, g, g)
        recon = self._pixels(qs, qp, b)
        losses = dict(losses)
        if "semantic" in self.active_terms or not self.training:  # validation reports semantic_cosine
            if target is None:
                with torch.no_grad():
                    target = _grid_features(self.teacher(x).patches, self.teacher.grid, self.grid)
            pred = self._semantic(qs, b)
            cosine = F.cosine_similarity(pred.float(), target.float(), dim=1).mean()
            if "semantic" in self.active_terms:
                losses["semantic"] = 1 - cosine
            stats["semantic_cosine"] = cosine.detach()
        return TokenizerOutput(recon=recon, ids=ids, losses=losses, stats=stats)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, R, R] in [-1, 1] -> shared ids [B, g, g] (multi-scale: [B, L], coarse to fine)."""
        self.check_input(x)
        sem, pix, _ = self._features(x)
        if self.scales:
            return self.quantizer(*self._maps(sem, pix, x.shape[0]))[2]
        return self.quantizer(sem, pix)[2].reshape(x.shape[0], self.grid, self.grid)

    def _codes(self, ids: torch.Tensor):
        """Code rows [B * g * g, C] of both branches that the decoders read, for ids [B, g, g] / [B, g*g]
        (multi-scale: [B, L], the accumulated f_hat)."""
        if self.scales:
            hat_s, hat_p = self.quantizer.vectors(ids.reshape(ids.shape[0], -1))
            return map_rows(hat_s), map_rows(hat_p)
        return self.quantizer.lookup(ids.reshape(-1))

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, g, g] (multi-scale: [B, L]) -> images [B, 3, R, R] (the pixel decoder)."""
        qs, qp = self._codes(ids)
        return self._pixels(qs, qp, ids.shape[0])

    @torch.no_grad()
    def code_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, g * g, sem_dim + pix_dim]: both codebooks' vectors of each position, side by side (multi-scale: of
        the accumulated f_hat that the decoders read)."""
        qs, qp = self._codes(ids)
        return torch.cat([qs, qp], dim=-1).reshape(ids.shape[0], self.grid * self.grid, -1)

    @torch.no_grad()
    def semantic_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, g, g] (or flat [B, g*g]; multi-scale: [B, L]) -> the semantic decoder's teacher-space features
        [B, N, C] on the g x g grid (N = g * g)."""
        b = ids.shape[0]
        qs, _ = self._codes(ids)
        return self._semantic(qs, b).flatten(2).transpose(1, 2)

    def graph_modules(self) -> tuple[nn.Module, nn.Module]:
        """Export-safe (encode, decode) modules for torch.export / ONNX (mmtok.export.graphs)."""
        return EncodeGraph(self), DecodeGraph(self)


class EncodeGraph(nn.Module):
    """Images [B, 3, R, R] in [-1, 1] -> shared ids [B, g, g] (int64), the eager encode through the dual
    codebook's export-safe `export_ids`; holds only the encoders, projections and codebooks."""

    def __init__(self, t: TokenFlow):
        super().__init__()
        self.sem_encoder = t.semantic_encoder if t.semantic_encoder is not None else t.teacher
        self.sem_proj, self.encoder, self.pix_proj, self.quantizer = t.sem_proj, t.encoder, t.pix_proj, t.quantizer
        self.teacher_grid, self.grid, self.multiscale = tuple(t.teacher.grid), t.grid, bool(t.scales)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        sem, pix = _rows(None, self.sem_encoder, self.sem_proj, self.encoder, self.pix_proj, images,
                         self.teacher_grid, self.grid)
        b = images.shape[0]
        if self.multiscale:  # [B, L]
            return self.quantizer.export_ids(rows_map(sem, b, self.grid), rows_map(pix, b, self.grid))
        return self.quantizer.export_ids(sem, pix).reshape(b, self.grid, self.grid)


class DecodeGraph(nn.Module):
    """Ids [B, g, g] (int64 in [0, K); multi-scale: [B, L]) -> images [B, 3, R, R] clamped to [-1, 1]; holds the
    codebooks, the output projection and the pixel decoder."""

    def __init__(self, t: TokenFlow):
        super().__init__()
        self.quantizer, self.post_proj, self.decoder = t.quantizer, t.post_proj, t.decoder
        self.grid, self.both, self.multiscale = t.grid, t.cfg.pixel_decoder_input == "both", bool(t.scales)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.multiscale:
            hat_s, hat_p = self.quantizer.vectors(ids)
            qs, qp = map_rows(hat_s), map_rows(hat_p)
        else:
            qs, qp = self.quantizer.lookup(ids.reshape(-1))
        return _pixels(qs, qp, ids.shape[0], self.grid, self.both, self.post_proj, self.decoder).clamp(-1.0, 1.0)
