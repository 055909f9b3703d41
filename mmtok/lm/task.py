"""`LMTask`: the Lightning module that trains an extended causal LM on packed caption <-> span sequences (a span:
one image, audio clip or motion window in the layout's order).

The loss is the cross-entropy of each target token (kinds in mmtok.lm.sequences: CODE and STRUCT weighted by
`loss.image`, TEXT by `loss.text`), summed and divided by the number of target tokens; rows holding next-scale
sequences run under their 4-D block-causal mask (mmtok.lm.attention). Logits are computed only
at target positions (hidden states through the output head), so a long block over a large vocabulary never
materialises [B, T, V]; models whose head output is post-processed (final logit soft-capping, a logit scale) take
the full forward instead. Validation reports `val/MODALITY_loss` (`val/image_loss`, `val/audio_loss`,
`val/motion_loss`: mean over the span's code tokens of caption -> span sequences, caption kept) and
`val/caption_loss` (caption tokens and end of sequence of span -> caption sequences), each over every held-out
pair.

With `lora`, peft wraps the model: LoRA adapters on `target_modules`, the new vocabulary rows of the input
embedding trained (`trainable_token_indices`; a tied head shares them), and an untied output head trained in full
(`modules_to_save`). Checkpoints hold only the trainable weights; the frozen ones come from the model directory.
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from mmtok.errors import CheckpointError
from mmtok.lm.attention import packed_block_mask
from mmtok.lm.sequences import CODE, CONTEXT, STRUCT, TEXT

POSTPROCESSED_HEAD = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale", "logits_scaling")


def module_name(model, module) -> str:
    """The attribute name of `module` inside `model` (e.g. "embed_tokens", "lm_head")."""
    for name, m in model.named_modules():
        if m is module:
            return name.rsplit(".", 1)[-1]
    raise ValueError("module not found in the model")


def apply_lora(model, lora, layout):
    """The model wrapped by peft per the recipe's `lora` section (module docstring)."""
    from peft import LoraConfig, get_peft_model

    new_rows = list(range(layout.text_vocab_size, layout.tokenizer_size))
    embed = module_name(model, model.get_input_embeddings())
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.target_modules, trainable_token_indices={embed: new_rows},
                        modules_to_save=None if tied or head is None else [module_name(model, head)],
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


class LMTask(L.LightningModule):
    def __init__(self, recipe, model, layout, stream=None, modality: str = "image"):
        super().__init__()
        self.recipe, self.layout, self.stream = recipe, layout, stream
        self.code_loss = f"{modality}_loss"  # the span codes' loss: image_loss, audio_loss, motion_loss
        self.automatic_optimization = False
        if recipe.model.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.model = apply_lora(model, recipe.lora, layout) if recipe.lora else model
        w = recipe.loss
        self.register_buffer("kind_weight", torch.tensor([0.0, w.image, w.image, w.text]), persistent=False)
        self._val: dict = {}  # made afresh for every validation pass (on_validation_epoch_start)
        self.start_step = 0

    # ------------------------------------------------------------------------------------------- losses

    @property
    def base(self):
        """The Hugging Face model (with LoRA layers injected when there are any)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def token_losses(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy float32 [N], kinds [N]) of the N targets of a batch (mmtok.lm.sequences.pack's keys,
        [B, T]): position t predicts targets[t] where kinds[t] is not CONTEXT. Rows with blocks (next-scale
        sequences) get their 4-D block-causal mask."""
        ids, kinds, pos = batch["input_ids"], batch["kinds"], batch["position_ids"]
        target = kinds != CONTEXT
        mask = None
        if (batch["blocks"] >= 0).any():
            mask = packed_block_mask(pos, batch["blocks"], self.base.dtype)
        cfg = self.base.config.get_text_config()
        if any(getattr(cfg, k, None) not in (None, 1.0) for k in POSTPROCESSED_HEAD) \
                or self.base.get_output_embeddings() is None:
            logits = self.model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False).logits[target]
        else:
            hidden = self.base.get_decoder()(input_ids=ids, position_ids=pos, attention_mask=mask,
                                             use_cache=False).last_hidden_state
            logits = self.base.get_output_embeddings()(hidden[target])
        ce = F.cross_entropy(logits.float(), batch["targets"][target], reduction="none")
        return ce, kinds[target]

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        ce, kinds = self.token_losses(batch)
        total = (ce * self.kind_weight[kinds]).sum() / max(1, ce.numel())
        logs = {"train/loss": total.detach()}
        for name, kind in ((self.code_loss, CODE), ("caption_loss", TEXT)):
            sel = kinds == kind
            if sel.any():
                logs[f"train/{name}"] = ce[sel].mean().detach()
        logs["train/tokens"] = torch.tensor(float(batch["input_ids"].numel()))
        return total, logs

    # ------------------------------------------------------------------------------------------- training

    def setup(self, stage: str) -> None:
        if self.stream is not None:
            self.stream.rank = self.global_rank  # every rank draws batches of its own

    def configure_optimizers(self):
        from mmtok.train.task import lr_lambda

        o = self.recipe.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        sched = lr_lambda(o.warmup_steps, self.recipe.trainer.max_steps, o.min_lr_ratio)
        return [{"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt, sched)}]

    def on_train_start(self):
        self.start_step = self.global_step

    def training_step(self, batch, batch_idx):
        accum = self.recipe.trainer.accumulate_grad_batches
        # dropout (LoRA) drawn from a seed of this step: a resumed run draws the same numbers
        torch.manual_seed(self.recipe.seed * 1_000_003 + self.global_step * accum + batch_idx % accum)
        opt, sched = self.optimizers(), self.lr_schedulers()
        total, logs = self.loss(batch)
        self.manual_backward(total / accum)
        if (batch_idx + 1) % accum == 0:
            if self.recipe.optim.grad_clip:
                self.clip_gradients(opt, gradient_clip_val=self.recipe.optim.grad_clip, gradient_clip_algorithm="norm")
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
        logs["train/lr"] = torch.tensor(sched.get_last_lr()[0])
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=batch["input_ids"].shape[0])

    # ------------------------------------------------------------------------------------------- validation

    def on_validation_epoch_start(self):
        self._val = {name: MeanMetric().to(self.device) for name in (self.code_loss, "caption_loss", "structure_loss")}

    def validation_step(self, batch, batch_idx):
        ce, kinds = self.token_losses(batch)
        for name, kind in ((self.code_loss, CODE), ("caption_loss", TEXT), ("structure_loss", STRUCT)):
            if (kinds == kind).any():
                self._val[name].update(ce[kinds == kind])

    def on_validation_epoch_end(self):
        self.log_dict({f"val/{name}": metric.compute() for name, metric in self._val.items() if metric.update_called})

    # ------------------------------------------------------------------------------------------- checkpoints

    def trainable_keys(self) -> set[str]:
        """State-dict keys of trainable parameters (a tied head's key too: it is the same parameter)."""
        return {k for k, v in self.state_dict(keep_vars=True).items()
                if isinstance(v, torch.nn.Parameter) and v.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only the trainable weights (LoRA: adapters, new rows, head); record the recipe."""
        trainable = self.trainable_keys()
        state = checkpoint["state_dict"]
        for key in [k for k in state if k not in trainable]:
            del state[key]
        checkpoint["mmtok_lm"] = {"recipe": self.recipe.model_dump(mode="json"),
                                  "batches": self.global_step * self.recipe.trainer.accumulate_grad_batches}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Frozen weights come from the model directory; the data stream continues at the saved batch."""
        own = self.state_dict()
        trainable = self.trainable_keys()
        saved = checkpoint["state_dict"]
        if set(saved) != trainable:
            raise CheckpointError("the checkpoint's trainable weights do not match this recipe's model "
                                  f"({len(saved)} saved, {len(trainable)} expected)",
                                  hint="resume with the run's own model and lora settings")
        saved.update({k: v for k, v in own.items() if k not in trainable})
        if self.stream is not None:
            self.stream.start = int(checkpoint.get("mmtok_lm", {}).get("batches", 0))
