"""The Teacher contract: a frozen feature extractor that brings its own preprocessing.

`teacher(x)` takes images [B, 3, H, W] in [-1, 1] at any size, resizes them to `resolution` x `resolution`
(bilinear, antialiased, aspect not kept), normalises with the teacher's `mean` / `std` and returns
`TeacherOutput(patches [B, N, C], global_ [B, C])` with N = grid[0] * grid[1] (row-major) and C = `dim`.
Parameters never need gradients and the module stays in eval mode whatever `.train()` says; gradients do
flow to the input when it requires them (wrap targets in `torch.no_grad()`). `trainable_copy()` gives an
unfrozen copy (TokenFlow's semantic encoder initialised from the teacher).
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.errors import MmtokError


@dataclass
class TeacherOutput:
    patches: Tensor  # [B, N, C] features of the chosen layer, N = grid h * grid w, row-major
    global_: Tensor  # [B, C] the class token at that layer when the model pools by it, else the patch mean


def check_images(x: Tensor, who: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{who} takes images [B, 3, H, W] in [-1, 1], got shape {tuple(x.shape)}")


def preprocess(x: Tensor, resolution: int, mean: Tensor, std: Tensor) -> Tensor:
    """[-1, 1] images -> [0, 1] -> bilinear antialiased resize to resolution^2 -> (x - mean) / std, float32."""
    x = (x.float() + 1) / 2
    if tuple(x.shape[-2:]) != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return (x - mean) / std


class Frozen(nn.Module):
    """A module whose parameters need no gradients and which stays in eval mode (dropout, batch-norm statistics
    frozen), unless it was made trainable by `trainable_copy()`."""

    frozen: bool = True

    def freeze(self) -> None:
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def trainable_copy(self):
        """A deep copy whose parameters require gradients and which follows `.train()` again."""
        other = copy.deepcopy(self)
        other.frozen = False
        for p in other.parameters():
            p.requires_grad_(True)
        return other


class Teacher(Frozen, ABC):
    """Base class: subclasses set up the network, then call `_setup(...)`, and implement `features`."""

    name: str
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    grid: tuple[int, int]
    layer: int

    def _setup(self, name: str, resolution: int, mean: Sequence[float], std: Sequence[float], layer: int) -> None:
        self.name = name
        self.resolution = int(resolution)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.layer = layer
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.freeze()
        try:  # one probe forward gives the patch grid and the channel count exactly, for any architecture
            with torch.no_grad():
                patches, _ = self.features(torch.zeros(1, 3, self.resolution, self.resolution))
        except MmtokError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure here means the configuration cannot run
            raise MmtokError(f"teacher {name} cannot run at {self.resolution} x {self.resolution} px "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                             hint="set teacher.resolution to the size the weights were trained at") from e
        self.dim = int(patches.shape[1])
        self.grid = (int(patches.shape[2]), int(patches.shape[3]))

    @abstractmethod
    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Preprocessed images [B, 3, R, R] -> (patch features [B, C, h, w], global embedding [B, C])."""

    def preprocess(self, x: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> the network's input [B, 3, R, R] (float32, normalised)."""
        check_images(x, f"teacher {self.name}")
        return preprocess(x, self.resolution, self._mean, self._std)

    def forward(self, x: Tensor) -> TeacherOutput:
        fmap, global_ = self.features(self.preprocess(x))
        return TeacherOutput(patches=fmap.flatten(2).transpose(1, 2), global_=global_)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, resolution={self.resolution}, dim={self.dim}, grid={self.grid}, "
                f"layer={self.layer}, frozen={self.frozen}")


def layer_index(layer: int, count: int, name: str, what: str) -> int:
    """A Python-style layer index checked against `count` layers, as a non-negative index."""
    if not -count <= layer < count:
        raise MmtokError(f"teacher {name}: layer {layer} is out of range ({count} {what}: 0..{count - 1} "
                         f"or -{count}..-1)", hint="set teacher.layer, e.g. -1 for the last, -2 for the one before")
    return layer % count
