"""LPIPS perceptual loss for training; the network and its offline backbone come from mmtok.teachers.lpips."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from mmtok.errors import AssetError
from mmtok.teachers.lpips import load_lpips, untrained_lpips

if TYPE_CHECKING:
    from mmtok.losses.config import PerceptualConfig

log = logging.getLogger("mmtok")


class PerceptualLoss(nn.Module):
    """LPIPS(x, y) for images in [-1, 1], averaged over the batch; the network is frozen.

    `cfg` has `net` ("vgg" / "alex"), `backbone` (weights file path or None) and `allow_untrained`. The backbone's
    ImageNet weights must be present (see `mmtok doctor`); with `allow_untrained` a random backbone is used
    instead, after a loud warning: the number is then not LPIPS.
    """

    def __init__(self, cfg: "PerceptualConfig"):
        super().__init__()
        try:
            self.net = load_lpips(cfg.net, cfg.backbone)
        except AssetError:
            if not cfg.allow_untrained:
                raise
            log.warning(
                "!!! loss.perceptual.allow_untrained is set: LPIPS runs on a RANDOM %s backbone. "
                "This is not a perceptual loss; use it only for tests. !!!", cfg.net.upper()
            )
            self.net = untrained_lpips(cfg.net)
        self.net.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # dropout and norm layers of the frozen net stay in eval mode
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x.float(), y.float()).mean()
