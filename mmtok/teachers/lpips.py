"""The LPIPS network (v0.1, "vgg" or "alex"), frozen: the `lpips` package's calibrated linear heads (shipped with
it) on a torchvision ImageNet backbone resolved through `mmtok.assets` ("lpips-vgg" / "lpips-alex"). Used by
the LPIPS metric (mmtok.metrics.image) and the perceptual loss (mmtok.losses.perceptual), inputs in [-1, 1].

There is no fallback to an untrained backbone: when the file is missing `load_lpips` raises AssetError and
the caller reports LPIPS as unavailable (`lpips_available` says so without raising).
"""
from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor, nn

from mmtok import assets
from mmtok.errors import AssetError

LPIPS_NETS = ("vgg", "alex")


def _asset_name(net: str) -> str:
    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS net must be one of {LPIPS_NETS}, got {net!r}")
    return f"lpips-{net}"


def lpips_available(net: str = "vgg", weights_path: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(True, path) when the LPIPS backbone for `net` can be found, else (False, the reason), never raising
    for a missing file. The reason is the AssetError text: what is missing, where we looked, how to fix it."""
    try:
        return True, str(assets.get(_asset_name(net)).resolve(weights_path))
    except AssetError as e:
        return False, str(e)


class LPIPSNetwork(nn.Module):
    """LPIPS v0.1 distance, frozen and always in eval mode: forward(x, y) with x, y [N, 3, H, W] in
    [-1, 1] -> [N] distances (differentiable w.r.t. the inputs, so it serves as a training loss)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPSNetwork":
        # The linear heads contain Dropout; train mode would make the loss random.
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.model(x, y).flatten()


def _backbone_key_map(model: nn.Module) -> dict[str, str]:
    """lpips key ('net.sliceK.N.weight') -> torchvision key ('features.N.weight').

    lpips' vgg16/alexnet split torchvision's `features` Sequential into slices, keeping each layer's
    original index as its name inside the slice, so layer N of `features` is `net.slice*.N`."""
    out = {}
    for key in model.state_dict():
        parts = key.split(".")
        if parts[0] == "net" and parts[1].startswith("slice"):
            out[key] = ".".join(["features", *parts[2:]])
    return out


def _load_backbone(model: nn.Module, file: os.PathLike, net: str) -> None:
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read is an unreadable asset
        raise AssetError(f"LPIPS {net} backbone {file} is unreadable ({type(e).__name__}: {e})",
                         hint=assets.get(_asset_name(net)).how) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise AssetError(f"LPIPS {net} backbone {file} is not a state dict", hint=assets.get(_asset_name(net)).how)
    own = model.state_dict()
    mapped, problems = {}, []
    for dst, src in _backbone_key_map(model).items():
        if src not in state:
            problems.append(f"missing {src}")
        elif tuple(state[src].shape) != tuple(own[dst].shape):
            problems.append(f"{src} has shape {tuple(state[src].shape)}, expected {tuple(own[dst].shape)}")
        else:
            mapped[dst] = state[src].to(own[dst].dtype)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise AssetError(f"{file} is not torchvision's {'vgg16' if net == 'vgg' else 'alexnet'} state dict: {shown}",
                         hint=assets.get(_asset_name(net)).how)
    model.load_state_dict(mapped, strict=False)


def load_lpips(net: str = "vgg", weights_path: str | os.PathLike | None = None) -> LPIPSNetwork:
    """The LPIPS network (see LPIPSNetwork; inputs in [-1, 1]) with the package's linear heads and the
    torchvision backbone from `weights_path` or the asset search. AssetError when the backbone is missing
    or is not a torchvision vgg16/alexnet state dict."""
    file = assets.get(_asset_name(net)).resolve(weights_path)
    network = untrained_lpips(net)
    _load_backbone(network.model, file, net)
    return network


def untrained_lpips(net: str = "vgg") -> LPIPSNetwork:
    """LPIPS with the package's linear heads on a RANDOM backbone: not a perceptual distance (tests only)."""
    _asset_name(net)
    import lpips  # heavy import, only when needed

    # pnet_rand=True builds the backbone without touching the network; the linear heads load from the
    # weights shipped inside the package (pretrained=True).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision: "pretrained" is deprecated
        return LPIPSNetwork(lpips.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False))
