"""The classifier: `create_backbone` turns a registry name into a pretrained feature extractor, `build_model` adds
a new linear head and sets it up for a transfer strategy.

- `finetune`: every weight trains.
- `extract`: the backbone is frozen and kept in eval mode (BatchNorm running statistics do not drift); only the
  new head trains, and only its parameters reach the optimizer.
- `two-stage`: first as `extract` (the head learns on cached features), then `unfreeze_backbone` and everything
  trains, the backbone with a smaller learning rate than the head (`parameter_groups`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from transferlab.errors import UsageError, WeightsUnavailable
from transferlab.models.backbones import BackboneSpec, EnsembleWeights, get_spec
from transferlab.models.weights import RANDOM, WeightsInfo, is_file_reference, load_file


def create_backbone(
    name: str, weights: str | Path | None = None, pretrained: bool = True
) -> tuple[nn.Module, BackboneSpec, WeightsInfo]:
    """Build backbone `name` as a feature extractor.

    `weights` is a weights file or the name of a variant (e.g. "IMAGENET1K_V2"); None takes the default.
    `pretrained=False` builds random weights (used when loading a saved run, whose own weights follow).
    """
    spec = get_spec(name)
    _no_weights_for_ensemble(spec, weights)
    network = spec.architecture()
    if not pretrained:
        info = RANDOM
    else:
        if weights is not None and is_file_reference(weights):
            state, info = load_file(Path(weights))
        else:
            state, info = spec.find_weights(_variant(spec, weights))
        _load_state(network, state, spec.name, info)
    return spec.to_features(network), spec, info


def check_weights(name: str, weights: str | Path | None = None) -> None:
    """Fail before any photo is decoded when backbone `name`'s weights cannot be had: a missing file, an unknown
    variant, weights neither at hand nor downloadable (they are downloaded into torch's cache now if need be)."""
    spec = get_spec(name)
    _no_weights_for_ensemble(spec, weights)
    if weights is not None and is_file_reference(weights):
        if not Path(weights).is_file():
            raise WeightsUnavailable(f"weights file {weights} does not exist")
        return
    variant = _variant(spec, weights)
    if spec.find_weights.missing(variant):
        spec.find_weights(variant)


def _variant(spec: BackboneSpec, weights: str | Path | None) -> str:
    """The named weights variant asked for (the backbone's first when none is), refused unless the backbone has it."""
    variant = str(weights) if weights is not None else spec.variants[0]
    if variant not in spec.variants:
        raise UsageError(
            f"backbone {spec.name} has no weights named '{variant}'; "
            f"choose one of {', '.join(spec.variants)} or pass a weights file"
        )
    return variant


def _no_weights_for_ensemble(spec: BackboneSpec, weights: str | Path | None) -> None:
    if weights is not None and isinstance(spec.find_weights, EnsembleWeights):
        raise UsageError(f"{spec.name} is an ensemble: each member takes its default ImageNet weights (no --weights)")


def _load_state(network: nn.Module, state: dict, name: str, info: WeightsInfo) -> None:
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise WeightsUnavailable(f"the weights in {info.name} do not fit backbone {name}: {first}") from None


class TransferModel(nn.Module):
    """backbone (images -> pooled features) followed by head (dropout + linear layer -> class logits)."""

    def __init__(
        self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0, frozen: bool = False
    ):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))
        self.frozen = False
        if frozen:
            self.freeze_backbone()

    def freeze_backbone(self) -> None:
        self.frozen = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def unfreeze_backbone(self) -> None:
        self.frozen = False
        self.backbone.requires_grad_(True)
        self.backbone.train(self.training)

    def parameter_groups(self, lr: float, backbone_lr_scale: float) -> list[dict]:
        """Optimizer groups: the backbone at `lr * backbone_lr_scale`, the head at `lr`."""
        return [
            {"params": list(self.backbone.parameters()), "lr": lr * backbone_lr_scale},
            {"params": list(self.head.parameters()), "lr": lr},
        ]

    def train(self, mode: bool = True) -> TransferModel:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # a frozen backbone always runs with its ImageNet BatchNorm statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def build_model(
    backbone: str,
    num_classes: int,
    strategy: str,
    weights: str | Path | None = None,
    pretrained: bool = True,
) -> tuple[TransferModel, BackboneSpec, WeightsInfo]:
    """Pretrained backbone `backbone` with a fresh `num_classes`-way head, set up for `strategy`."""
    features, spec, info = create_backbone(backbone, weights, pretrained)
    model = TransferModel(
        features, spec.feature_dim, num_classes, spec.head_dropout, frozen=strategy in ("extract", "two-stage")
    )
    model.to(memory_format=torch.channels_last)  # matches presets.normalize's input layout
    return model, spec, info


def count_parameters(parameters) -> int:
    return sum(p.numel() for p in parameters)
