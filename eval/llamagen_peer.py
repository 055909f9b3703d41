"""The peer composite for eval/compare_llamagen.py: LlamaGen's VQ model with vector-quantize-pytorch's quantizer.

LlamaGen (github.com/FoundationVision/LlamaGen) is not a package: its model code is loaded at run time from
a local checkout that the user names (`tokenizer/tokenizer_image/vq_model.py` inside it, or that file
itself). Nothing of LlamaGen is copied into this repository.

What is LlamaGen's: the `VQModel` class (its encode / decode / forward, quant_conv and post_quant_conv
around the codes) and its `Encoder` / `Decoder` (res blocks, attention at the lowest level and in the
middle, GroupNorm with 32 groups). `ModelArgs` does not expose the base width or the number of res blocks
(VQModel hard-codes ch=128 and num_res_blocks=2: VQ-8 is 70M parameters and 47x the quick start's FLOPs
per image at 64 x 64), so `PeerVQModel` builds the same modules at a width and depth like the quick start's.

What is vector-quantize-pytorch's (PyPI): `VectorQuantize` with cosine-similarity codes, k-means
initialisation, EMA codebook updates, dead-code expiry and the rotation trick, in place of LlamaGen's own
`VectorQuantizer`. Training as LlamaGen's vq_train.py does it, minus the perceptual and GAN terms: Adam
(betas 0.9, 0.95), gradient-norm clip 1.0, constant learning rate, no EMA of the weights; L2 reconstruction
loss plus the quantizer's commitment loss.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

VQ_MODEL_FILE = Path("tokenizer/tokenizer_image/vq_model.py")
# Sized like mmtok's quick start (small_f8_1024: f8, 1024 cosine codes of dim 8, z 64, one res block, 2.7M
# parameters): LlamaGen VQ-8's level multipliers at the narrowest width its GroupNorm(32) allows (3.3M
# parameters, about twice the quick start's FLOPs per image).
PEER_DEFAULTS = dict(ch=32, ch_mult=(1, 2, 2, 4), num_res_blocks=1, z_channels=64, codebook_size=1024, dim=8)
VQ_OPTIONS = dict(use_cosine_sim=True, kmeans_init=True, kmeans_iters=10, threshold_ema_dead_code=2,
                  rotation_trick=True, commitment_weight=0.25)


def load_llamagen(path: str | Path):
    """LlamaGen's vq_model module, executed from `path` (a LlamaGen checkout or its vq_model.py)."""
    p = Path(path).expanduser()
    file = p if p.is_file() else p / VQ_MODEL_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no LlamaGen model code at {file}: give --llamagen a LlamaGen checkout "
                                f"(it holds {VQ_MODEL_FILE}) or that file itself")
    spec = importlib.util.spec_from_file_location("llamagen_vq_model", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("VQModel", "ModelArgs", "Encoder", "Decoder"):
        if not hasattr(module, name):
            raise FileNotFoundError(f"{file} has no {name}: not LlamaGen's vq_model.py")
    return module


class VectorQuantizeForLlamaGen(nn.Module):
    """vector-quantize-pytorch's VectorQuantize behind the interface of LlamaGen's VectorQuantizer:
    forward(z [B, D, h, w]) -> (z_q [B, D, h, w], (vq_loss, commit_loss, entropy_loss, usage),
    (perplexity, min_encodings, ids [B*h*w])). With an EMA codebook there is no codebook loss (None)."""

    def __init__(self, dim: int, codebook_size: int, **options):
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.codebook_size = codebook_size
        self.vq = VectorQuantize(dim=dim, codebook_size=codebook_size, accept_image_fmap=True, **options)

    def forward(self, z: torch.Tensor):
        z_q, ids, commit = self.vq(z)
        return z_q, (None, commit.sum(), None, 0.0), (None, None, ids.reshape(-1))


def build_peer(llamagen_path: str | Path, **sizes) -> nn.Module:
    """The peer composite (module docstring); `sizes` override PEER_DEFAULTS."""
    lg = load_llamagen(llamagen_path)
    cfg = {**PEER_DEFAULTS, **sizes}

    class PeerVQModel(lg.VQModel):
        """LlamaGen's VQModel (encode / decode / forward unchanged) with a chosen width and depth and
        vector-quantize-pytorch's quantizer."""

        def __init__(self):
            nn.Module.__init__(self)  # VQModel.__init__ would build the ch=128 networks first
            mult = list(cfg["ch_mult"])
            self.config = lg.ModelArgs(codebook_size=cfg["codebook_size"], codebook_embed_dim=cfg["dim"],
                                       encoder_ch_mult=mult, decoder_ch_mult=mult, z_channels=cfg["z_channels"])
            self.encoder = lg.Encoder(ch=cfg["ch"], ch_mult=mult, num_res_blocks=cfg["num_res_blocks"],
                                      z_channels=cfg["z_channels"])
            self.decoder = lg.Decoder(ch=cfg["ch"], ch_mult=mult, num_res_blocks=cfg["num_res_blocks"],
                                      z_channels=cfg["z_channels"])
            self.quantize = VectorQuantizeForLlamaGen(cfg["dim"], cfg["codebook_size"], **VQ_OPTIONS)
            self.quant_conv = nn.Conv2d(cfg["z_channels"], cfg["dim"], 1)
            self.post_quant_conv = nn.Conv2d(cfg["dim"], cfg["z_channels"], 1)

    return PeerVQModel()


class PeerTokenizer(nn.Module):
    """The trained peer in the shape the comparison's protocol expects: images [B, 3, R, R] in [-1, 1] ->
    (reconstructions [B, 3, R, R], ids [B, h*w])."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.codebook_size = model.quantize.codebook_size

    @torch.no_grad()
    def forward(self, x: torch.Tensor):
        quant, _, (_, _, ids) = self.model.encode(x)
        return self.model.decode(quant), ids.reshape(x.shape[0], -1)


def train_peer(model: nn.Module, loader, *, seconds: float, lr: float = 4e-4, betas=(0.9, 0.95),
               grad_clip: float = 1.0, max_steps: int | None = None, on_step=None) -> dict:
    """Train until `seconds` of wall time have passed (checked before each step; data loading counts) or
    `max_steps` steps. `on_step(step, loss, elapsed)` is called after each step. Returns
    {"steps", "seconds", "loss"} (loss: the mean total loss of the last 10 steps)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
    model.train()
    batches, recent, step = iter(loader), [], 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and (max_steps is None or step < max_steps):
        x = next(batches)["image"]
        recon, (vq_loss, commit, _, _) = model(x)
        loss = F.mse_loss(recon, x) + commit + (vq_loss if vq_loss is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        step += 1
        recent = (recent + [loss.item()])[-10:]
        if on_step is not None:
            on_step(step, recent[-1], time.perf_counter() - t0)
    model.eval()
    return {"steps": step, "seconds": round(time.perf_counter() - t0, 1),
            "loss": round(sum(recent) / len(recent), 5) if recent else None}
