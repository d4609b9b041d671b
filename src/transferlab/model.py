"""The classifier: a pretrained backbone plus a new linear head, and the transfer strategies.

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

from .backbones import BackboneSpec, WeightsInfo, create_backbone


class TransferModel(nn.Module):
    """backbone (images -> pooled features) followed by head (dropout + linear layer -> class logits)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0,
                 frozen: bool = False):
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
        return [{"params": list(self.backbone.parameters()), "lr": lr * backbone_lr_scale},
                {"params": list(self.head.parameters()), "lr": lr}]

    def train(self, mode: bool = True) -> "TransferModel":
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
    model = TransferModel(features, spec.feature_dim, num_classes, spec.head_dropout, frozen=strategy in ("extract", "two-stage"))
    model.to(memory_format=torch.channels_last)  # matches presets.normalize's input layout
    return model, spec, info


def count_parameters(parameters) -> int:
    return sum(p.numel() for p in parameters)
