"""SEED: a causal Q-Former over a frozen teacher's patch features, quantised to N 1-D tokens in causal order.
See mmtok.families.seed.config for the data flow and the loss terms.

Causal all the way: the learned query i sees queries <= i (QFormer), down / quantiser / up act per position and
the reconstruction decoder is causal (CausalBlocks), so ids[:, i] and the causal embeddings e[:, i] depend only
on positions <= i. The generation embedding reads the last position; the pixel decoder reads every position.

The contrastive term (with `model.text_encoder`): the model owns the trainable parts (`ContrastiveHead`: the image
projection of the last query's output, the projection of the frozen text embedding, the temperature) and returns
the image side in `SEEDOutput.image_embed`; the objective (mmtok.families.seed.objective) owns the frozen text
encoder (never saved, rebuilt from its local files like LPIPS), takes the batch's captions in `inputs(batch)` and computes the loss through
`out.contrastive` in `terms`. The one task (mmtok.train.task) stays family-agnostic: it never sees captions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmtok.contract import Tokenizer, TokenizerOutput, TokenSpec
from mmtok.errors import MmtokError
from mmtok.families.seed.config import SEEDConfig
from mmtok.nn.conv import Decoder
from mmtok.nn.transformer import CausalBlocks, QFormer, QueryDecoder, mlp
from mmtok.quantize import build_quantizer


def bottleneck(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """SEED's Linear-Tanh-Linear."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out))


def cosine_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos along the last dimension, mean (fp32)."""
    return (1 - F.cosine_similarity(a.float(), b.float(), dim=-1)).mean()


def global_target(g: torch.Tensor) -> torch.Tensor:
    """The teacher's global embedding layer-normalised (no affine): the generation embedding's MSE target, on a
    scale that does not depend on the teacher."""
    return F.layer_norm(g.float(), g.shape[-1:])


class ContrastiveHead(nn.Module):
    """BLIP-2's image-text contrastive (ITC) head, as SEED's stage 1 uses it: `image` projects the last causal
    query's output [B, width] and `text` the frozen text embedding [B, text_dim] to a shared `dim`, both
    L2-normalised; logits = image @ text.T / temperature, the temperature a learned scalar initialised at 0.07
    and clamped to [0.001, 0.5] (in place while training, as BLIP-2 does).

    `loss` is the symmetric InfoNCE over in-batch negatives only: no all_gather across ranks, so with DDP each
    rank contrasts its own batch (fewer negatives than BLIP-2's gathered batch). Captions that are equal strings
    count as positives of each other (soft targets spread over them, as BLIP does for one image id), so duplicate
    captions in a batch are not pushed apart."""

    TEMPERATURE = (0.001, 0.5)

    def __init__(self, width: int, text_dim: int, dim: int):
        super().__init__()
        self.image = nn.Linear(width, dim)
        self.text = nn.Linear(text_dim, dim)
        self.temperature = nn.Parameter(torch.tensor(0.07))

    def image_embed(self, h_last: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(h_last.float()), dim=-1)

    def text_embed(self, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(text.float()), dim=-1)

    def logits(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Image embeddings [M, dim] (`image_embed`) x frozen text features [K, text_dim] -> logits [M, K]."""
        if self.training:
            with torch.no_grad():
                self.temperature.clamp_(*self.TEMPERATURE)
        return image @ self.text_embed(text).T / self.temperature.clamp(*self.TEMPERATURE)

    def loss(self, image: torch.Tensor, text: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
        """Symmetric InfoNCE: (CE(image -> text) + CE(text -> image)) / 2, fp32. `positives` [M, M] bool marks
        pairs that match (default: the diagonal); each row's target is spread evenly over its positives."""
        logits = self.logits(image, text).float()
        m = logits.shape[0]
        if positives is None:
            positives = torch.eye(m, dtype=torch.bool, device=logits.device)
        target = positives.float() / positives.float().sum(1, keepdim=True)
        i2t = -(target * logits.log_softmax(1)).sum(1).mean()
        t2i = -(target.T * logits.T.log_softmax(1)).sum(1).mean()
        return (i2t + t2i) / 2


@dataclass
class SEEDOutput(TokenizerOutput):
    """TokenizerOutput plus, with a text encoder, the contrastive image embedding of the last query
    ([B, contrastive_dim], L2-normalised) and the model's ContrastiveHead (the objective needs its text side)."""

    image_embed: torch.Tensor | None = None
    contrastive: ContrastiveHead | None = None


class SEED(Tokenizer):
    def __init__(self, cfg: SEEDConfig, *, active_terms=(), pretrained: bool = True):
        """`active_terms`: the weighted loss terms (only those are computed in training); `pretrained=False` builds
        the teacher without reading its weights (a checkpoint or bundle supplies them)."""
        super().__init__()
        from mmtok.teachers import build_teacher

        self.cfg = cfg
        self.active_terms = tuple(active_terms)
        self.teacher = build_teacher(cfg.teacher, load_weights=pretrained)  # frozen
        t, w = self.teacher.dim, cfg.width
        self.qformer = QFormer(cfg.num_queries, w, cfg.depth, cfg.heads, t, cfg.cross_attention_freq, cfg.mlp_ratio)
        self.distill_head = mlp(w, 2.0, t)
        self.down = bottleneck(w, w, cfg.code_dim)
        self.quantizer = build_quantizer(cfg.code_dim, cfg.quantizer, entropy_loss="entropy" in active_terms)
        self.up = bottleneck(cfg.code_dim, w, w)
        self.decoder = CausalBlocks(cfg.num_queries, w, cfg.decoder_depth, cfg.heads, cfg.mlp_ratio)
        self.generation_head = mlp(w, 2.0, t)
        self.contrastive = None
        if cfg.text_encoder is not None:  # its size from the config (or the folder's config.json), no weights read
            from mmtok.teachers.text import text_dim

            self.contrastive = ContrastiveHead(w, text_dim(cfg.text_encoder), cfg.contrastive_dim)
        self.patch_head = None  # training only: the teacher's patch features from all query outputs
        if cfg.patch_decoder_depth:
            gh, gw = self.teacher.grid
            self.patch_head = QueryDecoder(gh * gw, w, cfg.patch_decoder_depth, cfg.heads, t, cfg.mlp_ratio)
        self.pixel_queries = self.pixel_decoder = None
        if cfg.pixel_decoder:
            self.pixel_queries = QueryDecoder(cfg.grid * cfg.grid, w, cfg.pixel_depth, cfg.heads, cfg.z_channels,
                                              cfg.mlp_ratio)
            self.pixel_decoder = Decoder(out_channels=cfg.in_channels, **cfg.conv_kwargs())

    # ------------------------------------------------------------------------------------------- description

    @property
    def spec(self) -> TokenSpec:
        c, q, t = self.cfg, self.cfg.quantizer, self.teacher
        return TokenSpec.from_meta({
            "family": "seed",
            "modality": "image",
            "input_size": [c.in_channels, c.resolution, c.resolution],
            "value_range": [-1.0, 1.0],
            "token_grid": [c.num_queries],
            "tokens_per_sample": c.num_queries,
            "downsample": c.resolution,  # one sequence per image: no spatial grid
            "num_codebooks": 1,
            "codebook_size": q.codebook_size,
            "codebook_dim": q.dim,
            "quantizer": q.kind,
            "layout": "1d_causal",
            "l2_norm": q.l2_norm,
            "flattening": "causal order: token i depends only on tokens 0..i (left to right)",
            "pixels": bool(c.pixel_decoder),
            "semantic": {
                "branch": "causal Q-Former tokens: no spatial layout; each token summarises the image given the "
                          "tokens before it",
                "output": "semantic_embedding(ids) -> [B, N, width]: the causal embeddings rebuilt from the ids (what "
                          "the tokens mean to the Q-Former); generation_embedding(ids) -> [B, dim]: SEED's generation "
                          "embedding, trained to the teacher's (layer-normalised) global embedding",
                "teacher": t.name,
                "teacher_config": c.teacher.model_dump(mode="json"),
                "dim": t.dim,
                "width": c.width,
                "layer": t.layer,
                "preprocessing": {"resolution": t.resolution, "mean": list(t.mean), "std": list(t.std),
                                  "resize": "bilinear, antialiased, from images in [-1, 1] mapped to [0, 1]"},
                "loss": "semantic_cosine: cos between the causal embeddings rebuilt from the ids and the Q-Former's "
                        "output (1 - the reconstruct term)",
            },
        })

    @property
    def last_layer(self) -> torch.Tensor:
        if self.pixel_decoder is None:
            raise MmtokError("this SEED model has no pixel decoder, so no adversarial loss",
                             hint="set model.pixel_decoder: true or loss.weights.gan: 0")
        return self.pixel_decoder.conv_out.weight

    def check_input(self, x: torch.Tensor) -> None:
        r = self.cfg.resolution
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (r, r):
            raise MmtokError(f"expected images [B, 3, {r}, {r}] in [-1, 1], got {tuple(x.shape)}")

    # ------------------------------------------------------------------------------------------- pieces

    def queries_out(self, x: torch.Tensor, queries: torch.Tensor | None = None, patches: bool = False):
        """(Q-Former output h [B, N, width], teacher global embedding [B, C_t]) of images [B, 3, R, R]; with
        `patches`, the teacher's patch features [B, M, C_t] third."""
        with torch.no_grad():
            t = self.teacher(x)
        h = self.qformer(t.patches.float(), queries)
        return (h, t.global_.float(), t.patches.float()) if patches else (h, t.global_.float())

    def embed(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantised codes [B, N, code_dim] -> the causal embeddings [B, N, width]."""
        return self.decoder(self.up(z_q))

    def pixels(self, e: torch.Tensor) -> torch.Tensor | None:
        if self.pixel_decoder is None:
            return None
        b, g = e.shape[0], self.cfg.grid
        z = self.pixel_queries(e).transpose(1, 2).reshape(b, self.cfg.z_channels, g, g)
        return self.pixel_decoder(z)

    # ------------------------------------------------------------------------------------------- contract

    def forward(self, x: torch.Tensor, queries: torch.Tensor | None = None) -> SEEDOutput:
        active = self.active_terms
        h, g, patches = self.queries_out(x, queries, patches=True)
        q = self.quantizer(self.down(h))
        e = self.embed(q.z_q)
        losses, stats = dict(q.losses), dict(q.stats)
        if "patches" in active and self.patch_head is not None:  # the objective refuses one without the other
            losses["patches"] = cosine_loss(self.patch_head(h), patches)
        if "distill" in active:
            losses["distill"] = cosine_loss(self.distill_head(h[:, -1]), g)
        rec = cosine_loss(e, h.detach())  # the Q-Former's output is the target, not pulled towards e
        if "reconstruct" in active:
            losses["reconstruct"] = rec
        stats["semantic_cosine"] = (1 - rec).detach()
        if "generation" in active:
            losses["generation"] = F.mse_loss(self.generation_head(e[:, -1]).float(), global_target(g))
        out = SEEDOutput(recon=self.pixels(e), ids=q.ids, losses=losses, stats=stats)
        if self.contrastive is not None:  # the loss needs the captions: the objective computes it (terms)
            out.image_embed, out.contrastive = self.contrastive.image_embed(h[:, -1]), self.contrastive
        return out

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, R, R] in [-1, 1] -> ids [B, N] in causal order."""
        self.check_input(x)
        return self.quantizer(self.down(self.queries_out(x)[0])).ids

    @torch.no_grad()
    def semantic_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, N] -> the causal embeddings [B, N, width] (position i from ids 0..i)."""
        return self.embed(self.quantizer.lookup(ids))

    @torch.no_grad()
    def generation_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, N] -> SEED's generation embedding [B, C_t] (from the last causal embedding)."""
        return self.generation_head(self.semantic_embedding(ids)[:, -1])

    @torch.no_grad()
    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """What semantic_embedding is trained to give back: the Q-Former's output [B, N, width] for images x."""
        return self.queries_out(x)[0]

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [B, N] -> images [B, 3, R, R] through the pixel decoder."""
        if self.pixel_decoder is None:
            raise MmtokError("this SEED tokenizer has no pixel decoder (model.pixel_decoder: false)",
                             hint="use semantic_embedding(ids) / generation_embedding(ids), or train with a pixel decoder")
        return self.pixels(self.semantic_embedding(ids))

    def graph_modules(self) -> tuple[nn.Module, nn.Module]:
        """Export-safe (encode, decode) modules for torch.export / ONNX; encode includes the teacher."""
        return EncodeGraph(self), DecodeGraph(self)


class EncodeGraph(nn.Module):
    """Images [B, 3, R, R] in [-1, 1] -> ids [B, N] (int64), teacher included: the eager `SEED.encode`."""

    def __init__(self, seed: SEED):
        super().__init__()
        self.teacher, self.qformer, self.down, self.quantizer = seed.teacher, seed.qformer, seed.down, seed.quantizer
        self.code_dim = seed.cfg.code_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.qformer(self.teacher(images).patches.float())
        z = self.down(h)
        b, n, _ = z.shape
        return self.quantizer.export_ids(z.reshape(b * n, self.code_dim).float()).reshape(b, n)


class DecodeGraph(nn.Module):
    """Ids [B, N] -> images [B, 3, R, R] clamped to [-1, 1]: the eager `SEED.decode`."""

    def __init__(self, seed: SEED):
        super().__init__()
        if seed.pixel_decoder is None:
            raise MmtokError("a SEED model without a pixel decoder has no decoder graph",
                             hint="export without --graphs, or train with model.pixel_decoder: true")
        self.seed = seed

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, n = ids.shape
        z = self.seed.quantizer.export_vectors(ids.reshape(b * n)).reshape(b, n, -1)
        return self.seed.pixels(self.seed.embed(z)).clamp(-1.0, 1.0)
