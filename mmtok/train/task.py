"""The one generic tokenizer task: generator and discriminator steps with manual optimisation.

Families differ in their modules and loss terms, not here. Every weighted term is logged under its own
name (train/l1, train/perceptual, train/commitment, train/gan, train/disc, ...). Validation runs the EMA
weights (when enabled) and reports held-out PSNR, reconstruction error and codebook usage over the pass.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

import mmtok
from mmtok import tokenizers
from mmtok.config import Recipe
from mmtok.data.bad import BadSamples
from mmtok.losses.adversarial import LeCam, PatchDiscriminator, adaptive_weight, d_loss, g_loss
from mmtok.train.ema import EMA
from mmtok.train.samples import save_grid


log = logging.getLogger("mmtok")
VAL_METRICS = ("val/psnr", "val/l2", "val/usage", "val/perplexity")  # what validation logs (trainer.keep_best)


def lr_lambda(warmup: int, total: int, min_ratio: float):
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total` steps."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


class TokenizerTask(L.LightningModule):
    def __init__(self, recipe: Recipe, run_dir: str | Path | None = None):
        super().__init__()
        self.recipe = recipe
        self.run_dir = Path(run_dir) if run_dir else None
        self.automatic_optimization = False
        loss = recipe.loss
        self.tokenizer = tokenizers.build(recipe.model, entropy_loss=loss.entropy > 0)
        self.ema = EMA(self.tokenizer, recipe.optim.ema_decay) if recipe.optim.ema_decay else None
        self.perceptual = None
        if loss.perceptual.weight > 0:
            from mmtok.losses.perceptual import PerceptualLoss

            self.perceptual = PerceptualLoss(loss.perceptual)
        gan = loss.gan
        self.discriminator = PatchDiscriminator(recipe.model.in_channels, gan.ndf, gan.n_layers) if gan.weight > 0 else None
        self.lecam = LeCam(gan.lecam_decay) if gan.weight > 0 and gan.lecam > 0 else None
        self.skipped = 0
        self.bad = BadSamples()
        self.start_step = 0
        self.restore_report: dict | None = None
        self._val: dict = {}

    # ------------------------------------------------------------------------------------------- setup

    def configure_optimizers(self):
        o = self.recipe.optim
        sched = lr_lambda(o.warmup_steps, self.recipe.trainer.max_steps, o.min_lr_ratio)
        opt_g = torch.optim.AdamW(self.tokenizer.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        out = [{"optimizer": opt_g, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt_g, sched)}]
        if self.discriminator is not None:
            gan = self.recipe.loss.gan
            opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=gan.lr or o.lr, betas=o.betas,
                                      weight_decay=o.weight_decay)
            out.append({"optimizer": opt_d, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt_d, sched)})
        return out

    def _gan_phase(self, step: int) -> tuple[bool, bool]:
        """(discriminator trains, generator sees the GAN loss) at this step."""
        gan = self.recipe.loss.gan
        if self.discriminator is None:
            return False, False
        return step >= gan.start_step, step >= gan.start_step + gan.warmup_steps

    # ------------------------------------------------------------------------------------------- training

    def on_train_start(self):
        self.start_step = self.global_step

    def generator_loss(self, x: torch.Tensor, out, use_gan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted generator loss and every unweighted term by name."""
        loss_cfg = self.recipe.loss
        recon, xf = out.recon.float(), x.float()
        terms: dict[str, torch.Tensor] = {}
        weights: dict[str, float] = {}
        if loss_cfg.l1 > 0:
            terms["l1"], weights["l1"] = (recon - xf).abs().mean(), loss_cfg.l1
        if loss_cfg.l2 > 0:
            terms["l2"], weights["l2"] = F.mse_loss(recon, xf), loss_cfg.l2
        if self.perceptual is not None:
            terms["perceptual"], weights["perceptual"] = self.perceptual(recon, xf), loss_cfg.perceptual.weight
        rec_loss = sum(weights[k] * terms[k] for k in terms)
        for name, value in out.losses.items():
            terms[name], weights[name] = value, getattr(loss_cfg, name)
        total = sum(weights[k] * terms[k] for k in terms)
        if use_gan:
            gan = loss_cfg.gan
            terms["gan"] = g_loss(self.discriminator(out.recon), gan.loss)
            weight = gan.weight
            if gan.adaptive:
                weight = weight * adaptive_weight(rec_loss, terms["gan"], self.tokenizer.last_layer, gan.adaptive_max)
            terms["gan_weight"] = torch.as_tensor(weight, dtype=torch.float32)
            total = total + weight * terms["gan"]
        return total, terms

    def training_step(self, batch, batch_idx):
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = self.lr_schedulers()
        scheds = scheds if isinstance(scheds, list) else [scheds]
        accum = self.recipe.trainer.accumulate_grad_batches
        clip = self.recipe.optim.grad_clip
        step = self.global_step
        train_d, gan_to_g = self._gan_phase(step)
        take_step = (batch_idx + 1) % accum == 0
        x = batch["image"]

        opt_g = opts[0]
        if self.discriminator is not None:
            self.toggle_optimizer(opt_g)
        out = self.tokenizer(x)
        total, terms = self.generator_loss(x, out, gan_to_g)
        self.manual_backward(total / accum)
        if take_step:
            if clip:
                self.clip_gradients(opt_g, gradient_clip_val=clip, gradient_clip_algorithm="norm")
            opt_g.step()  # the only LightningOptimizer step: trainer.global_step counts generator steps
            opt_g.zero_grad(set_to_none=True)
            scheds[0].step()
            if self.ema is not None:
                self.ema.update(self.tokenizer)
        if self.discriminator is not None:
            self.untoggle_optimizer(opt_g)

        if train_d:
            opt_d = opts[1]
            self.toggle_optimizer(opt_d)
            gan = self.recipe.loss.gan
            logits_real = self.discriminator(x.detach())
            logits_fake = self.discriminator(out.recon.detach())
            terms["disc"] = d_loss(logits_real.float(), logits_fake.float(), gan.loss)
            loss_d = terms["disc"]
            if self.lecam is not None:
                terms["lecam"] = self.lecam(logits_real.float(), logits_fake.float())
                loss_d = loss_d + gan.lecam * terms["lecam"]
            self.manual_backward(loss_d / accum)
            if take_step:
                if clip:
                    self.clip_gradients(opt_d, gradient_clip_val=clip, gradient_clip_algorithm="norm")
                opt_d.optimizer.step()  # raw step: keeps global_step equal to generator steps
                opt_d.zero_grad(set_to_none=True)
                scheds[1].step()
            self.untoggle_optimizer(opt_d)

        self.skipped += int(batch["skipped"].sum()) if "skipped" in batch else 0
        for entry in self.bad.add(batch):  # each bad sample named once, with its reason
            log.warning("skipped a bad sample: %s", entry)
        logs = {f"train/{k}": v.detach().float() for k, v in terms.items()}
        logs["train/loss"] = total.detach().float()
        logs.update({f"train/{k}": v.float() for k, v in out.stats.items()})
        logs["train/lr"] = torch.tensor(scheds[0].get_last_lr()[0])
        logs["data/skipped"] = torch.tensor(float(self.skipped))
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=x.shape[0])

    # ------------------------------------------------------------------------------------------- validation

    @property
    def eval_model(self):
        """The weights that are evaluated and exported: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.tokenizer

    def on_validation_epoch_start(self):
        from mmtok.metrics import PSNR, CodebookUsage

        q = self.recipe.model.quantizer
        self._val = {"psnr": PSNR().to(self.device), "usage": CodebookUsage(q.codebook_size, q.num_codebooks).to(self.device)}
        self._val_l2 = {"sum": torch.zeros((), dtype=torch.float64, device=self.device),
                        "n": torch.zeros((), dtype=torch.float64, device=self.device)}

    def validation_step(self, batch, batch_idx):
        x = batch["image"].float()
        out = self.eval_model(x)
        recon = out.recon.float().clamp(-1, 1)
        self._val["psnr"].update((recon + 1) / 2, (x + 1) / 2)
        ids = out.ids
        self._val["usage"].update(ids if self._val["usage"].num_codebooks == 1 else ids.movedim(-1, 1))
        self._val_l2["sum"] += ((recon - x) ** 2).flatten(1).mean(1).sum().double()
        self._val_l2["n"] += x.shape[0]
        if batch_idx == 0 and self.run_dir is not None and self.trainer.is_global_zero:
            save_grid(x[:8], recon[:8], self.run_dir / "samples" / f"step_{self.global_step:06d}.png")

    def on_validation_epoch_end(self):
        usage = self._val["usage"].compute()  # torchmetrics: synced across ranks
        l2 = {k: self.trainer.strategy.reduce(t, reduce_op="sum") for k, t in self._val_l2.items()}
        metrics = {"val/psnr": self._val["psnr"].compute(), "val/l2": l2["sum"] / l2["n"].clamp_min(1),
                   "val/usage": usage["usage_pct"] / 100, "val/perplexity": usage["perplexity"]}
        self.log_dict({k: torch.as_tensor(t).float() for k, t in metrics.items()}, sync_dist=False)

    # ------------------------------------------------------------------------------------------- checkpoints

    # Modules the task owns besides the tokenizer. Frozen ones are rebuilt from their own weights files and never
    # saved; loss modules may be switched on or off between a run and its resume (they then start fresh).
    FROZEN = ("perceptual",)
    MUST_MATCH = ("tokenizer", "ema")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.split(".", 1)[0] in self.FROZEN]:
            del state[key]
        checkpoint["mmtok"] = {"version": mmtok.__version__, "recipe": self.recipe.model_dump(mode="json"),
                               "seed": self.recipe.seed, "skipped": self.skipped, "bad": self.bad.entries}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Reconcile a checkpoint with this task's modules before Lightning loads it strictly: frozen networks
        come from their weights files; a loss module added since the checkpoint (or whose shapes changed) starts
        fresh with a fresh optimizer; one removed since is dropped. `self.restore_report` says which."""
        from mmtok.errors import CheckpointError

        self.skipped = int(checkpoint.get("mmtok", {}).get("skipped", 0))
        self.bad = BadSamples(checkpoint.get("mmtok", {}).get("bad", ()))
        own, saved = self.state_dict(), checkpoint["state_dict"]
        groups = lambda keys: {k.split(".", 1)[0] for k in keys}  # noqa: E731
        restored, fresh, dropped = [], [], []
        for name in sorted(groups(own) | groups(saved)):
            mine = {k: v for k, v in own.items() if k.split(".", 1)[0] == name}
            theirs = {k for k in saved if k.split(".", 1)[0] == name}
            if name in self.FROZEN:
                saved.update(mine)
                for key in theirs - set(mine):
                    del saved[key]
                continue
            matches = set(mine) == theirs and all(saved[k].shape == v.shape for k, v in mine.items())
            if matches:
                restored.append(name)
            elif name in self.MUST_MATCH:
                raise CheckpointError(f"the checkpoint's {name} does not match this recipe's model",
                                      hint="resume with the run's own model settings, or start a new run in "
                                           "another --out")
            elif mine:
                for key in theirs:
                    del saved[key]
                saved.update(mine)
                fresh.append(name)
            else:
                for key in theirs:
                    del saved[key]
                dropped.append(name)
        if "discriminator" in fresh or "discriminator" in dropped:
            # optimizer / scheduler 0 is the generator's; a discriminator's (index 1) is only kept if it matches
            checkpoint["optimizer_states"] = checkpoint["optimizer_states"][:1]
            checkpoint["lr_schedulers"] = checkpoint["lr_schedulers"][:1]
        self.restore_report = {"restored": restored, "fresh": fresh, "dropped": dropped}
