"""What a family trains for, as the one Lightning task sees it (mmtok.train.task).

An `Objective` turns a batch into the model's input, computes its unweighted loss terms (only those whose
weight is > 0), makes the validation metric suite (the same one `mmtok eval` uses) and writes samples. Its
own modules are frozen helpers (LPIPS, teachers), rebuilt from their weights files and never saved in
checkpoints. `make_adversary()` gives the trainable discriminator side (or None), which the task owns, saves and
optimises with its own optimizer.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import nn


class MetricSuite(nn.Module, ABC):
    """Validation / evaluation metrics over a pass, synced across ranks (torchmetrics states).

    `update(x, out)` per batch; `compute()` -> {name: float-like} without a "val/" prefix; `names` lists them."""

    names: tuple[str, ...] = ()

    @abstractmethod
    def update(self, x: torch.Tensor, out) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, torch.Tensor]: ...


class Adversary(nn.Module, ABC):
    """The discriminator side: `phase(step)` says whether D trains and whether G sees its loss;
    `g_terms(x, recon, rec_loss, model)` are the generator's adversarial terms; `d_terms(x, recon)` the
    discriminator's (recon detached), with `d_loss(terms)` their weighted sum."""

    lr: float | None = None  # its optimizer's learning rate (None: optim.lr)

    @abstractmethod
    def phase(self, step: int) -> tuple[bool, bool]: ...

    @abstractmethod
    def g_terms(self, x, recon, rec_loss, model) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(unweighted terms, scales): term k enters the loss as weight(k) * scales.get(k, 1) * terms[k] (e.g.
        taming's adaptive GAN weight), and weight(k) * scale is logged as train/k_weight."""

    @abstractmethod
    def d_terms(self, x, recon) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def d_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor: ...


class Objective(nn.Module, ABC):
    """Base of every family's objective; `recipe.loss.weight(name)` is the weight of a term."""

    def __init__(self, recipe):
        super().__init__()
        self.recipe = recipe

    def active(self, name: str) -> bool:
        return self.recipe.loss.weight(name) > 0

    @abstractmethod
    def inputs(self, batch: dict) -> torch.Tensor:
        """The model's input from a loader batch ({modality: tensor, "skipped": ..., ...})."""

    @abstractmethod
    def terms(self, x: torch.Tensor, out) -> dict[str, torch.Tensor]:
        """Unweighted reconstruction / family terms (not the model's own `out.losses`)."""

    def make_adversary(self) -> Adversary | None:
        """The trainable adversary for this recipe, or None (the task owns, optimises and saves it)."""
        return None

    @abstractmethod
    def metrics(self) -> MetricSuite:
        """A fresh validation suite (the same class `mmtok eval` uses)."""

    @abstractmethod
    def write_samples(self, x: torch.Tensor, out, path: Path) -> None:
        """Write a picture (or clip) of inputs and reconstructions to `path`."""
