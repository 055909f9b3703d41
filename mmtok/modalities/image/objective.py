"""The image objective: pixel terms (l1, l2), LPIPS
(perceptual), a PatchGAN adversary (gan, lecam), the validation suite (PSNR on 8-bit levels, L2, codebook usage and perplexity) and reconstruction grids.

Images are float [B, C, H, W] in [-1, 1] under the batch key "image". Image families (VQGAN and the semantic
families) use `ImageObjective` directly or add their own terms to it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mmtok.contract import Adversary, MetricSuite, Objective
from mmtok.losses.adversarial import LeCam, PatchDiscriminator, adaptive_weight, d_loss, g_loss


def to_8bit_levels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images clamped and rounded to the 256 levels an 8-bit PNG holds (still in [-1, 1]): the one
    PSNR protocol of validation and `mmtok eval` measures what a saved reconstruction would show."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


class ImageMetrics(MetricSuite):
    """psnr (dB, on [0, 1] after `to_8bit_levels`), l2 (mean squared error on [-1, 1], clamped), usage (fraction
    of codes used over the pass) and perplexity, all synced across ranks."""

    names = ("psnr", "l2", "usage", "perplexity")

    def __init__(self, codebook_size: int, num_codebooks: int = 1):
        super().__init__()
        from torchmetrics import MeanMetric

        from mmtok.metrics import PSNR, CodebookUsage

        self.psnr = PSNR()
        self.l2 = MeanMetric()
        self.usage = CodebookUsage(codebook_size, num_codebooks)

    def update(self, x: torch.Tensor, out) -> None:
        recon = to_8bit_levels(out.recon)
        x = x.float()
        self.psnr.update((recon + 1) / 2, (x + 1) / 2)
        self.l2.update(((recon - x) ** 2).flatten(1).mean(1))
        ids = out.ids
        self.usage.update(ids if self.usage.num_codebooks == 1 else ids.movedim(-1, 1))

    def compute(self) -> dict[str, torch.Tensor]:
        usage = self.usage.compute()
        return {"psnr": self.psnr.compute(), "l2": self.l2.compute(), "usage": usage["usage_pct"] / 100,
                "perplexity": usage["perplexity"]}


class PatchGANAdversary(Adversary):
    """taming's PatchGAN with hinge or non-saturating loss, optional LeCam (weight `lecam`) and adaptive
    generator weight; D trains from `gan.start_step`, G sees its loss `gan.warmup_steps` later."""

    def __init__(self, recipe, in_channels: int):
        super().__init__()
        gan, loss = recipe.loss.gan, recipe.loss
        self.cfg, self.lr = gan, gan.lr
        self.lecam_weight = loss.weight("lecam")
        self.discriminator = PatchDiscriminator(in_channels, gan.ndf, gan.n_layers)
        self.lecam = LeCam(gan.lecam_decay) if self.lecam_weight > 0 else None

    def phase(self, step: int) -> tuple[bool, bool]:
        return step >= self.cfg.start_step, step >= self.cfg.start_step + self.cfg.warmup_steps

    def g_terms(self, x, recon, rec_loss, model):
        gan = g_loss(self.discriminator(recon), self.cfg.loss)
        if not self.cfg.adaptive:
            return {"gan": gan}, {}
        # taming: ||d rec / d W|| / ||d gan / d W|| on the decoder's last layer
        return {"gan": gan}, {"gan": adaptive_weight(rec_loss, gan, model.last_layer, self.cfg.adaptive_max)}

    def d_terms(self, x, recon):
        real, fake = self.discriminator(x.detach()).float(), self.discriminator(recon.detach()).float()
        terms = {"disc": d_loss(real, fake, self.cfg.loss)}
        if self.lecam is not None:
            terms["lecam"] = self.lecam(real, fake)
        return terms

    def d_loss(self, terms):
        return terms["disc"] + self.lecam_weight * terms.get("lecam", 0.0)


class ImageObjective(Objective):
    """l1, l2 and perceptual on images in [-1, 1]; the adversary when `loss.weights.gan` > 0."""

    def __init__(self, recipe):
        super().__init__(recipe)
        self.perceptual = None
        if self.active("perceptual"):
            from mmtok.losses.perceptual import PerceptualLoss

            self.perceptual = PerceptualLoss(recipe.loss.perceptual)

    def make_adversary(self) -> PatchGANAdversary | None:
        return PatchGANAdversary(self.recipe, self.recipe.model.in_channels) if self.active("gan") else None

    def inputs(self, batch: dict) -> torch.Tensor:
        return batch["image"]

    def terms(self, x, out) -> dict[str, torch.Tensor]:
        recon, xf = out.recon.float(), x.float()
        terms = {}
        if self.active("l1"):
            terms["l1"] = (recon - xf).abs().mean()
        if self.active("l2"):
            terms["l2"] = F.mse_loss(recon, xf)
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(recon, xf)
        return terms

    def metrics(self) -> ImageMetrics:
        q = self.recipe.model.quantizer
        return ImageMetrics(q.codebook_size, q.num_codebooks)

    def write_samples(self, x, out, path: Path) -> None:
        from mmtok.modalities.image.grid import save_grid

        save_grid(x[:8], out.recon[:8].float().clamp(-1, 1), path)


class SemanticImageMetrics(ImageMetrics):
    """ImageMetrics plus `semantic_cosine`: the mean cosine between a semantic family's decoded semantic features
    and its teacher's patch features (1 - the `semantic` loss), which the model reports in eval mode as
    out.stats["semantic_cosine"]; `mmtok eval` measures the same through `teacher_features` / `semantic_embedding`."""

    names = (*ImageMetrics.names, "semantic_cosine")

    def __init__(self, codebook_size: int, num_codebooks: int = 1):
        super().__init__(codebook_size, num_codebooks)
        from torchmetrics import MeanMetric

        self.semantic_cosine = MeanMetric()

    def update(self, x: torch.Tensor, out) -> None:
        super().update(x, out)
        if "semantic_cosine" in out.stats:
            self.semantic_cosine.update(out.stats["semantic_cosine"].float(), weight=x.shape[0])

    def compute(self) -> dict[str, torch.Tensor]:
        return {**super().compute(), "semantic_cosine": self.semantic_cosine.compute()}


class SemanticImageObjective(ImageObjective):
    """The image objective of families with a semantic branch (SDE, TokenFlow): validation adds semantic_cosine."""

    def metrics(self) -> SemanticImageMetrics:
        q = self.recipe.model.quantizer
        return SemanticImageMetrics(q.codebook_size, q.num_codebooks)

