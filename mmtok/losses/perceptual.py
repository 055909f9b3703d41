"""LPIPS perceptual loss for training, with the backbone weights resolved offline (mmtok.assets)."""
from __future__ import annotations

import logging

import torch
from torch import nn

from mmtok.config import PerceptualConfig
from mmtok.errors import AssetError

log = logging.getLogger("mmtok")


class PerceptualLoss(nn.Module):
    """LPIPS(x, y) for images in [-1, 1], averaged over the batch; the network is frozen.

    The backbone's ImageNet weights must be present (see `mmtok doctor`); with `allow_untrained` a random
    backbone is used instead, after a loud warning: the number is then not LPIPS.
    """

    def __init__(self, cfg: PerceptualConfig):
        super().__init__()
        from mmtok.metrics.image import load_lpips

        try:
            self.net = load_lpips(cfg.net, cfg.weights)
        except AssetError:
            if not cfg.allow_untrained:
                raise
            import lpips

            log.warning(
                "!!! loss.perceptual.allow_untrained is set: LPIPS runs on a RANDOM %s backbone. "
                "This is not a perceptual loss; use it only for tests. !!!", cfg.net.upper()
            )
            self.net = lpips.LPIPS(pretrained=True, net=cfg.net, pnet_rand=True, verbose=False)
        self.net.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # dropout and norm layers of the frozen net stay in eval mode
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x.float(), y.float()).mean()
