"""The SDE objective: the image objective (l1 / l2 / LPIPS / PatchGAN, PSNR, usage) plus the semantic fidelity
of the codes in validation and `mmtok eval`: `semantic_cos`, the mean cosine between the semantic decoder's
output from the codes and the teacher's patch features of the originals (1 - the `semantic` loss)."""
from __future__ import annotations

import torch

from mmtok.modalities.image import ImageMetrics, ImageObjective


class SDEMetrics(ImageMetrics):
    names = (*ImageMetrics.names, "semantic_cos")

    def __init__(self, codebook_size: int, num_codebooks: int = 1):
        super().__init__(codebook_size, num_codebooks)
        from torchmetrics import MeanMetric

        self.semantic_cos = MeanMetric()

    def update(self, x: torch.Tensor, out) -> None:
        super().update(x, out)
        if "semantic_cos" in out.stats:  # the model reports it in eval mode
            self.semantic_cos.update(out.stats["semantic_cos"].float(), weight=x.shape[0])

    def compute(self) -> dict[str, torch.Tensor]:
        return {**super().compute(), "semantic_cos": self.semantic_cos.compute()}


class SDEObjective(ImageObjective):
    def metrics(self) -> SDEMetrics:
        q = self.recipe.model.quantizer
        return SDEMetrics(q.codebook_size, q.num_codebooks)
