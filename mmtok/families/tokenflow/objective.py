"""The TokenFlow objective: the image objective (l1 / l2 / LPIPS / PatchGAN, PSNR, usage of the shared index) plus
`semantic_cosine` in validation (the mean cosine between the semantic decoder's output from the codes and the
frozen teacher's patch features; 1 - the `semantic` loss), the same metric suite the SDE family validates with."""
from __future__ import annotations

from mmtok.families.sde.objective import SDEMetrics
from mmtok.modalities.image import ImageObjective


class TokenFlowObjective(ImageObjective):
    def metrics(self) -> SDEMetrics:
        q = self.recipe.model.quantizer
        return SDEMetrics(q.codebook_size, q.num_codebooks)
