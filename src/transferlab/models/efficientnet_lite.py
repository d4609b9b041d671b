"""EfficientNet-Lite as a feature extractor: the network from `efficientnet_lite_pytorch` without its ImageNet
dropout and classifier. The registry (`backbones`) builds it when an EfficientNet-Lite backbone is created.

With `stages`, the pooled outputs of the last stages are appended to the pooled head features: the same forward
pass, more of what the network saw (an ensemble's members give them: `benchmarks/ensemble_protocol.py`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite without its ImageNet dropout and classifier: image batch -> pooled features, and with
    `stages` > 0 the pooled outputs of that many last stages after them."""

    def __init__(self, network: nn.Module, stages: int = 0):
        super().__init__()
        self.net: Any = network  # efficientnet_lite_pytorch's EfficientNet (untyped)
        network._fc = nn.Identity()
        network._dropout = nn.Identity()
        blocks: Any = network._blocks
        widths = [block._block_args.output_filters for block in blocks]
        ends = [i for i in range(len(widths)) if i + 1 == len(widths) or widths[i + 1] != widths[i]]
        self.taps = ends[len(ends) - stages :] if stages else []

    def extra_repr(self) -> str:
        return f"taps={self.taps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.taps:
            return torch.flatten(self.net._avg_pooling(self.net.extract_features(x)), 1)
        head, *taps = self.grids(x)
        return torch.cat([torch.flatten(self.net._avg_pooling(head), 1), *(t.mean((2, 3)) for t in taps)], 1)

    def grids(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The grids of feature vectors the features are the means of, in their order: the head's, then each
        tapped stage's (what `inference.explain` draws a class activation map from)."""
        net, tapped = self.net, []
        rate = net._global_params.drop_connect_rate
        x = net._swish(net._bn0(net._conv_stem(x)))  # efficientnet_lite_pytorch's extract_features, tapped
        for index, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=rate * index / len(net._blocks) if rate else rate)
            if index in self.taps:
                tapped.append(x)
        return [net._swish(net._bn1(net._conv_head(x))), *tapped]
