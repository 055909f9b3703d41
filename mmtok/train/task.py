"""The one generic tokenizer task: generator and adversary steps with manual optimisation, for every family.

A family brings its model (`out = model(x)` -> TokenizerOutput) and its objective (mmtok.contract):
the task weighs the objective's terms, the model's own `out.losses` and the adversary's generator terms by
`recipe.loss.weights`, steps the generator, then the adversary on its own terms. Every term is logged under
its own name (train/l1, train/perceptual, train/commitment, train/gan, train/disc, ...). Validation runs the
EMA weights (when enabled) through the objective's metric suite (the one `mmtok eval` uses).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch

import mmtok
from mmtok import families
from mmtok.config import Recipe
from mmtok.data.bad import BadSamples
from mmtok.errors import MmtokError
from mmtok.train.ema import EMA

log = logging.getLogger("mmtok")


def lr_lambda(warmup: int, total: int, min_ratio: float):
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total` steps."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


class TokenizerTask(L.LightningModule):
    def __init__(self, recipe: Recipe, run_dir: str | Path | None = None, initialise: bool = True):
        """`initialise`: copy `recipe.init.path`'s weights in (False when a checkpoint is about to be restored)."""
        super().__init__()
        self.recipe = recipe
        self.run_dir = Path(run_dir) if run_dir else None
        self.automatic_optimization = False
        family = families.get(recipe.model.family)
        weighted = [t for t in family.loss_terms if recipe.loss.weight(t) > 0]
        self.tokenizer = family.build_model(recipe.model, weighted)
        from mmtok.train.init import freeze, init_weights

        self.init_report = (init_weights(self.tokenizer, recipe.init, recipe.model.family)
                            if initialise and recipe.init.path else None)
        self.freeze_report = freeze(self.tokenizer, recipe.optim.freeze) if recipe.optim.freeze else None
        self.ema = EMA(self.tokenizer, recipe.optim.ema_decay) if recipe.optim.ema_decay else None
        self.objective = family.build_objective(recipe)  # frozen helpers only: never saved
        self.adversary = self.objective.make_adversary()
        from mmtok.train.init import init_adversary

        self.adversary_report = (init_adversary(self.adversary, recipe.init.path, recipe.init.exclude)
                                 if initialise and recipe.init.path and self.adversary is not None else None)
        self.val_metrics = tuple(f"val/{name}" for name in self.objective.metrics().names)  # trainer.keep_best
        self.skipped = 0
        self.bad = BadSamples()
        self.start_step = 0
        self.restore_report: dict | None = None
        self._suite = None

    # ------------------------------------------------------------------------------------------- setup

    def configure_optimizers(self):
        o = self.recipe.optim
        sched = lr_lambda(o.warmup_steps, self.recipe.trainer.max_steps, o.min_lr_ratio)
        trainable = [p for p in self.tokenizer.parameters() if p.requires_grad]  # optim.freeze and teachers left out
        opt_g = torch.optim.AdamW(trainable, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        out = [{"optimizer": opt_g, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt_g, sched)}]
        if self.adversary is not None:
            opt_d = torch.optim.AdamW(self.adversary.parameters(), lr=self.adversary.lr or o.lr, betas=o.betas,
                                      weight_decay=o.weight_decay)
            out.append({"optimizer": opt_d, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt_d, sched)})
        return out

    # ------------------------------------------------------------------------------------------- training

    def on_train_start(self):
        self.start_step = self.global_step
        if self.init_report:
            r = self.init_report
            fresh = f"; kept fresh: {len(r['fresh'])} ({', '.join(r['fresh'][:4])}{', ...' if len(r['fresh']) > 4 else ''})"
            dropped = f"; dropped: {len(r['dropped'])} ({', '.join(r['dropped'][:4])}{', ...' if len(r['dropped']) > 4 else ''})"
            self.print(f"init from {r['path']} ({r['weights']} weights, step {r['step']}): loaded {r['loaded']} tensors"
                       + (fresh if r["fresh"] else "") + (dropped if r["dropped"] else ""))
        if self.adversary_report:
            gan = self.recipe.loss.gan
            self.print(f"discriminator: {self.adversary_report}; it trains alone for loss.gan.warmup_steps="
                       f"{gan.warmup_steps} steps (from step {gan.start_step}) before the generator sees it")
        if self.freeze_report:
            r = self.freeze_report
            self.print(f"frozen: {r['tensors']} tensors ({r['params'] / 1e6:.2f}M parameters) matching "
                       + ", ".join(r["patterns"]))

    def generator_loss(self, x: torch.Tensor, out, use_adversary: bool) -> tuple[torch.Tensor, dict, dict]:
        """(weighted generator loss, every unweighted term by name, logged-only stats)."""
        weight = self.recipe.loss.weight
        terms = self.objective.terms(x, out)
        rec_loss = sum((weight(k) * v for k, v in terms.items()), torch.zeros((), device=x.device))
        terms.update(out.losses)
        scales: dict = {}
        if use_adversary:
            g_terms, scales = self.adversary.g_terms(x, out.recon, rec_loss, self.tokenizer)
            terms.update(g_terms)
        unknown = set(terms) - set(self.recipe.loss.TERMS)
        if unknown:
            raise MmtokError(f"family {self.recipe.model.family!r} emitted loss terms it does not declare: "
                             f"{sorted(unknown)}", hint="add them to the family's loss config TERMS")
        total = sum(weight(k) * scales.get(k, 1.0) * v for k, v in terms.items())
        stats = {f"{k}_weight": torch.as_tensor(weight(k) * s, dtype=torch.float32) for k, s in scales.items()}
        return total, terms, stats

    def training_step(self, batch, batch_idx):
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = self.lr_schedulers()
        scheds = scheds if isinstance(scheds, list) else [scheds]
        accum = self.recipe.trainer.accumulate_grad_batches
        clip = self.recipe.optim.grad_clip
        train_d, d_to_g = self.adversary.phase(self.global_step) if self.adversary is not None else (False, False)
        take_step = (batch_idx + 1) % accum == 0
        x = self.objective.inputs(batch)

        opt_g = opts[0]
        if self.adversary is not None:
            self.toggle_optimizer(opt_g)
        out = self.tokenizer(x)
        total, terms, stats = self.generator_loss(x, out, d_to_g)
        self.manual_backward(total / accum)
        if take_step:
            if clip:
                self.clip_gradients(opt_g, gradient_clip_val=clip, gradient_clip_algorithm="norm")
            opt_g.step()  # the only LightningOptimizer step: trainer.global_step counts generator steps
            opt_g.zero_grad(set_to_none=True)
            scheds[0].step()
            if self.ema is not None:
                self.ema.update(self.tokenizer)
        if self.adversary is not None:
            self.untoggle_optimizer(opt_g)

        if train_d:
            opt_d = opts[1]
            self.toggle_optimizer(opt_d)
            d_terms = self.adversary.d_terms(x, out.recon.detach())
            terms.update(d_terms)
            self.manual_backward(self.adversary.d_loss(d_terms) / accum)
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
        logs.update({f"train/{k}": v.detach().float() for k, v in stats.items()})
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
        self._suite = self.objective.metrics().to(self.device)

    def validation_step(self, batch, batch_idx):
        x = self.objective.inputs(batch).float()
        out = self.eval_model(x)
        self._suite.update(x, out)
        if batch_idx == 0 and self.run_dir is not None and self.trainer.is_global_zero:
            samples = self.run_dir / "samples"
            samples.mkdir(parents=True, exist_ok=True)
            self.objective.write_samples(x, out, samples / f"step_{self.global_step:06d}.png")

    def on_validation_epoch_end(self):
        metrics = self._suite.compute()  # torchmetrics: synced across ranks
        self.log_dict({f"val/{k}": torch.as_tensor(v).float() for k, v in metrics.items()}, sync_dist=False)

    # ------------------------------------------------------------------------------------------- checkpoints

    # Modules the task owns besides the tokenizer. Frozen ones are rebuilt from their own weights files and never
    # saved; loss modules may be switched on or off between a run and its resume (they then start fresh).
    FROZEN = ("objective",)
    MUST_MATCH = ("tokenizer", "ema")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.split(".", 1)[0] in self.FROZEN]:
            del state[key]
        if self.ema is not None:  # a teacher is stored once, under tokenizer.*, not again in the EMA copy
            from mmtok.train.ema import frozen_keys

            for key in frozen_keys(self.tokenizer):
                state.pop(f"ema.module.{key}", None)
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
        if self.ema is not None:
            from mmtok.train.ema import frozen_keys

            for key in frozen_keys(self.tokenizer):  # stored once: see on_save_checkpoint
                if f"ema.module.{key}" not in saved and f"tokenizer.{key}" in saved:
                    saved[f"ema.module.{key}"] = saved[f"tokenizer.{key}"]
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
        if "adversary" in fresh or "adversary" in dropped:
            # optimizer / scheduler 0 is the generator's; the adversary's (index 1) is only kept if it matches
            checkpoint["optimizer_states"] = checkpoint["optimizer_states"][:1]
            checkpoint["lr_schedulers"] = checkpoint["lr_schedulers"][:1]
        self.restore_report = {"restored": restored, "fresh": fresh, "dropped": dropped}
