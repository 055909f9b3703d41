"""SEED's objective: the image pixel terms when the model decodes pixels, SEED's own terms from the model, and the
contrastive term, for which the objective holds the frozen text encoder and the batch's captions (see
mmtok.families.seed.model for the data flow); its validation metrics (usage, semantic cosine, retrieval)."""
from __future__ import annotations

from pathlib import Path

import torch

from mmtok.errors import DataError, RecipeError
from mmtok.families.seed.config import check_recipe
from mmtok.modalities.image.objective import ImageMetrics, SemanticImageObjective


class SEEDMetrics(ImageMetrics):
    """Validation: codebook usage and perplexity, semantic_cosine (causal embeddings vs the Q-Former output), with
    a pixel decoder PSNR and l2 (the image protocol), and with the contrastive term on captioned validation data
    retrieval_top1 (image -> text top-1 accuracy among the captions of the same batch; a retrieved caption equal
    to the image's own counts as a hit) beside retrieval_chance (what picking a caption at random would score).
    The retrieval metrics are left out of `compute` when no validation batch carried captions."""

    RETRIEVAL = ("retrieval_top1", "retrieval_chance")

    def __init__(self, codebook_size: int, pixels: bool, retrieval=None):
        """`retrieval`: out -> (hits [M], chance [M]) float tensors for the batch's captioned images, or None."""
        super().__init__(codebook_size, 1)
        from torchmetrics import MeanMetric

        self.pixels = pixels
        self.names = (*(ImageMetrics.names if pixels else ("usage", "perplexity")), "semantic_cosine",
                      *(self.RETRIEVAL if retrieval is not None else ()))
        self.semantic_cosine = MeanMetric()
        self.retrieval = retrieval
        if retrieval is not None:
            self.retrieval_top1, self.retrieval_chance = MeanMetric(), MeanMetric()

    def update(self, x: torch.Tensor, out) -> None:
        if self.pixels:
            super().update(x, out)
        else:
            self.usage.update(out.ids)
        self.semantic_cosine.update(out.stats["semantic_cosine"].float(), weight=x.shape[0])
        found = self.retrieval(out) if self.retrieval is not None else None
        if found is not None:
            self.retrieval_top1.update(found[0])
            self.retrieval_chance.update(found[1])

    def compute(self) -> dict[str, torch.Tensor]:
        if self.pixels:
            values = super().compute()
        else:
            usage = self.usage.compute()
            values = {"usage": usage["usage_pct"] / 100, "perplexity": usage["perplexity"]}
        values["semantic_cosine"] = self.semantic_cosine.compute()
        if self.retrieval is not None and self.retrieval_top1.update_called:
            values.update(retrieval_top1=self.retrieval_top1.compute(),
                          retrieval_chance=self.retrieval_chance.compute())
        return values


CAPTION_HINT = ("give captioned images (NAME.txt beside each image in a folder; `mmtok data pack` turns them "
                "into shards with a txt entry), or train caption-free: --set loss.weights.contrastive=0 "
                "--set loss.weights.distill=1")


def data_captioned(source: str) -> bool | None:
    """Whether the images of a data source have captions: False for 'demo', for a folder whether any image has
    a NAME.txt beside it, None (not known before streaming) for shards."""
    from mmtok.data.sources import source_kind

    kind = source_kind(source)
    if kind == "demo":
        return False
    if kind == "folder":
        from mmtok.modalities.image.decode import find_images

        return any(Path(f).with_suffix(".txt").is_file() for f in find_images(source))
    return None


class SEEDObjective(SemanticImageObjective):
    """The image objective's pixel terms when the model decodes pixels (refused at start when it does not);
    SEED's own terms come from the model (`out.losses`), except `contrastive`: with it weighted, the objective
    holds the frozen text encoder, reads the batch's captions (batch["caption"], list[str]) in `inputs` and
    computes the loss in `terms` through the model's ContrastiveHead (`out.contrastive`). Images whose caption is
    empty are left out of the loss (and of validation retrieval); a batch with fewer than two captioned images
    contributes 0. It refuses to start (one line) when model.text_encoder is missing, when data.train is known to
    have no captions ('demo', a folder without NAME.txt files), or when the first training batch has none."""

    def __init__(self, recipe):
        problems = check_recipe(recipe)  # config.load has refused these already; a Recipe made by hand has not
        if problems:
            raise RecipeError(f"recipe {recipe.name!r} has {len(problems)} problem(s):", problems)
        super().__init__(recipe)
        self.text_encoder = None
        self.captions: list[str] | None = None  # the captions of the batch `inputs` saw last
        self._first_checked = False
        if self.active("contrastive"):
            if data_captioned(recipe.data.train) is False:
                raise RecipeError(f"loss.weights.contrastive needs captions, but data.train {recipe.data.train!r} "
                                  "has none (no NAME.txt beside its images)", hint=CAPTION_HINT)
            from mmtok.teachers.text import build_text_encoder, text_dim

            self.text_encoder = build_text_encoder(recipe.model.text_encoder)
            expected = text_dim(recipe.model.text_encoder)
            if self.text_encoder.dim != expected:
                raise RecipeError(f"model.text_encoder gives {self.text_encoder.dim}-d embeddings, the model "
                                  f"expects {expected}", hint="set model.text_encoder.dim to the folder's hidden_size")

    def inputs(self, batch: dict) -> torch.Tensor:
        captions = batch.get("caption") if isinstance(batch, dict) else None
        self.captions = [c if isinstance(c, str) else "" for c in captions] if captions is not None else None
        if self.text_encoder is not None and self.training and not self._first_checked:
            self._first_checked = True
            if not any(c.strip() for c in self.captions or ()):
                raise DataError(f"loss.weights.contrastive needs captions, but the first training batch of "
                                f"{self.recipe.data.train} has none (no NAME.txt sidecars / txt entries)",
                                hint=CAPTION_HINT)
        return super().inputs(batch)

    def _captioned(self, out) -> tuple[list[int], list[str]]:
        """(indices, captions) of the batch's images with a non-empty caption."""
        captions = self.captions or []
        if len(captions) != out.ids.shape[0]:
            return [], []
        keep = [i for i, c in enumerate(captions) if c.strip()]
        return keep, [captions[i].strip() for i in keep]

    def contrastive_loss(self, out) -> torch.Tensor:
        keep, captions = self._captioned(out)
        head = out.contrastive
        if len(keep) < 2:  # nothing to contrast: 0, still through every parameter of the head (DDP sees them used)
            return sum(p.sum() for p in head.parameters()) * 0.0 + out.image_embed.sum() * 0.0
        text = self.text_encoder(captions)
        same = torch.tensor([[a == b for b in captions] for a in captions], device=text.device)
        return head.loss(out.image_embed[keep], text, same)

    @torch.no_grad()
    def retrieval(self, out) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(hits, chance) per captioned image of the last batch: hit when the most similar caption of the batch
        equals its own; chance = the share of the batch's captions equal to its own. None when < 2 captions."""
        keep, captions = self._captioned(out)
        if self.text_encoder is None or out.contrastive is None or len(keep) < 2:
            return None
        logits = out.contrastive.logits(out.image_embed[keep], self.text_encoder(captions))
        same = torch.tensor([[a == b for b in captions] for a in captions], device=logits.device)
        hits = same.gather(1, logits.argmax(1, keepdim=True)).squeeze(1).float()
        return hits, same.float().mean(1)

    def terms(self, x, out) -> dict[str, torch.Tensor]:
        terms = {} if out.recon is None else super().terms(x, out)
        if self.text_encoder is not None and getattr(out, "contrastive", None) is not None:
            terms["contrastive"] = self.contrastive_loss(out)
        return terms

    def metrics(self) -> SEEDMetrics:
        return SEEDMetrics(self.recipe.model.quantizer.codebook_size, self.recipe.model.pixel_decoder,
                           retrieval=self.retrieval if self.text_encoder is not None else None)

    def write_samples(self, x, out, path: Path) -> None:
        if out.recon is not None:
            super().write_samples(x, out, path)
