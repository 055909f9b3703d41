"""Semantic fidelity of a tokenizer, as torchmetrics (states summed across ranks).

- `ClassifierAgreement`: top-1 agreement of an ImageNet classifier between originals and pixel reconstructions
  (a different network than any teacher, so the score is not the teacher grading itself).
- `SemanticCosine`: mean cosine between the teacher's patch features of the originals and the tokenizer's
  semantic embedding of their ids (families with a semantic branch: `teacher_features`, `semantic_embedding`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric


class ClassifierAgreement(Metric):
    """Fraction of images whose classifier top-1 on the reconstruction equals the top-1 on the original.
    `update(original, reconstruction)`: images [N, 3, H, W] in [-1, 1]; `classifier(x) -> logits [N, classes]`."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, classifier: torch.nn.Module, **kwargs: Any):
        super().__init__(**kwargs)
        self.classifier = classifier.eval().requires_grad_(False)
        self.add_state("agree", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, original: Tensor, reconstruction: Tensor) -> None:
        with torch.no_grad():
            a = self.classifier(original.float()).argmax(-1)
            b = self.classifier(reconstruction.float()).argmax(-1)
        self.agree += (a == b).sum()
        self.total += a.numel()

    def compute(self) -> Tensor:
        return self.agree.double() / self.total.clamp_min(1).double()


class SemanticCosine(Metric):
    """Mean over positions and images of cos(teacher feature, semantic embedding); `update(target, pred)` with
    features [N, P, C] of equal shapes (ValueError otherwise)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, target: Tensor, pred: Tensor) -> None:
        if target.shape != pred.shape:
            raise ValueError(f"semantic cosine needs equal shapes, got teacher {tuple(target.shape)} and "
                             f"embedding {tuple(pred.shape)}")
        cos = F.cosine_similarity(pred.float(), target.float(), dim=-1)
        self.total += cos.sum().double()
        self.count += cos.numel()

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1).double()
