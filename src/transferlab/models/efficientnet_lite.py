"""EfficientNet-Lite as a feature extractor: the network from `efficientnet_lite_pytorch` without its ImageNet
dropout and classifier. The registry (`backbones`) builds it when an EfficientNet-Lite backbone is created."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite without its ImageNet dropout and classifier: image batch -> pooled features."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.net: Any = network  # efficientnet_lite_pytorch's EfficientNet (untyped)
        network._fc = nn.Identity()
        network._dropout = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.net._avg_pooling(self.net.extract_features(x)), 1)
