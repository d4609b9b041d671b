"""Several frozen backbones as one: their pooled features side by side, so one linear head (a probe) sees them all.
Each member gives what `BackboneSpec.member_features` makes of it: for EfficientNet-Lite, the pooled head features and
the pooled outputs of its last two stages (measured: `benchmarks/ensemble_protocol.py`, docs/results.md).

The ensemble takes one picture at the largest member's view (its resize and centre crop) and gives each member the
view it was trained on: the crop resized (bilinear, antialiased) to the member's input size and normalized with the
member's mean and std. The crops cover the same part of the photo (every registered backbone crops 0.875 of the
short side), so a member sees nearly what it sees alone. `backbones.ensemble_spec` registers nothing: it builds the
spec of any "a+b+c" name on demand, so a saved ensemble run loads like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class EnsembleNetwork(nn.Module):
    """The members' whole ImageNet networks, under `members.<i>.`: what their pretrained weights load into."""

    def __init__(self, networks: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(networks)


class EnsembleFeatures(nn.Module):
    """Picture batch (normalized for the ensemble's input) -> the members' pooled features, concatenated."""

    mean: torch.Tensor
    std: torch.Tensor
    means: torch.Tensor
    stds: torch.Tensor

    def __init__(
        self,
        members: Sequence[nn.Module],
        sizes: Sequence[int],
        means: Sequence[Sequence[float]],
        stds: Sequence[Sequence[float]],
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.sizes = [int(s) for s in sizes]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("means", torch.tensor(means), persistent=False)  # (members, 3)
        self.register_buffer("stds", torch.tensor(stds), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x * self.std + self.mean  # back to [0, 1]
        features = []
        for k, member in enumerate(self.members):
            view = pixels
            if view.shape[-1] != self.sizes[k] or view.shape[-2] != self.sizes[k]:
                view = F.interpolate(view, size=(self.sizes[k], self.sizes[k]), mode="bilinear", antialias=True)
            features.append(member((view - self.means[k].view(1, 3, 1, 1)) / self.stds[k].view(1, 3, 1, 1)))
        return torch.cat(features, dim=1)
