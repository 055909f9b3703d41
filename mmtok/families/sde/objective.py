"""The SDE objective: the image objective (l1 / l2 / LPIPS / PatchGAN, PSNR, usage) plus the semantic fidelity of
the codes in validation: `semantic_cosine`, the mean cosine between the semantic decoder's output from the codes
and the teacher's patch features of the originals (1 - the `semantic` loss; `mmtok eval` reports the same
quantity through the model's `teacher_features` / `semantic_embedding`)."""
from __future__ import annotations

import torch

from mmtok.modalities.image import ImageMetrics, ImageObjective


class SDEMetrics(ImageMetrics):
    names = (*ImageMetrics.names, "semantic_cosine")

    def __init__(self, codebook_size: int, num_codebooks: int = 1):
        super().__init__(codebook_size, num_codebooks)
        from torchmetrics import MeanMetric

        self.semantic_cosine = MeanMetric()

    def update(self, x: torch.Tensor, out) -> None:
        super().update(x, out)
        if "semantic_cosine" in out.stats:  # the model reports it in eval mode
            self.semantic_cosine.update(out.stats["semantic_cosine"].float(), weight=x.shape[0])

    def compute(self) -> dict[str, torch.Tensor]:
        return {**super().compute(), "semantic_cosine": self.semantic_cosine.compute()}


class SDEObjective(ImageObjective):
    def metrics(self) -> SDEMetrics:
        q = self.recipe.model.quantizer
        return SDEMetrics(q.codebook_size, q.num_codebooks)
