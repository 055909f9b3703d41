"""An exponential moving average of a module's weights (buffers are copied, not averaged)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Holds `module`: a frozen copy whose parameters track the live model's.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so early weights are not
    frozen into the average. The copy and its update count are part of the state dict (resume is exact).
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        n = float(self.num_updates)
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        for ema_p, p in zip(self.module.parameters(), model.parameters()):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - decay)
        for ema_b, b in zip(self.module.buffers(), model.buffers()):
            ema_b.copy_(b)


def frozen_keys(model: nn.Module) -> set[str]:
    """State-dict keys of `model`'s frozen networks (teachers: mmtok.teachers.base.Frozen with `frozen` set). They
    never change in training, so checkpoints store them once (under the live model) and the EMA copy's are
    restored from there."""
    from mmtok.teachers.base import Frozen

    keys: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, Frozen) and module.frozen:
            keys |= {f"{name}.{k}" if name else k for k in module.state_dict()}
    return keys
