"""Several frozen backbones as one: their pooled features side by side, so one linear head (a probe) sees them all.
Each member gives what `BackboneSpec.member_features` makes of it: for EfficientNet-Lite, the pooled head features and
the pooled outputs of its last two stages (measured: `benchmarks/ensemble_protocol.py`, docs/results.md).

The ensemble takes one picture at the largest member's view (its resize and centre crop) and gives each member the
view it was trained on: the crop resized to the member's input size and normalized with the member's mean and std.
The crops cover the same part of the photo (every registered backbone crops 0.875 of the short side), so a member
sees nearly what it sees alone: nearly, because the crop is resampled twice (the photo to the largest view, then
that to the member's), and the features move with it (docs/results.md "Several backbones as one").
`backbones.ensemble_spec` registers nothing: it builds the spec of any "a+b+c" name on demand, so a saved ensemble
run loads like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

# How a smaller member's view is made from the largest one's crop (a 1.08-1.16x reduction for Lite0/1 from Lite2's):
# bicubic without an antialiasing filter, kept in [0, 1] by clamping. Chosen by how close the members' features come
# to those of their own view (decoded from the photo at their own size), on 200 photos of each shared folder
# (`benchmarks/member_resize.py`): relative difference 0.08-0.10 bicubic, 0.11-0.15 bilinear antialiased (the former
# choice), 0.17-0.23 area. Written as two products with a fixed matrix (`resize_matrix`: the same numbers as
# F.interpolate's bicubic), because ONNX Runtime's cubic Resize refuses to shrink the channels-last uint8 tensors of
# an int8 export.
MEMBER_RESIZE = "bicubic"


def resize_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) M with M @ X @ M.T = `F.interpolate(X, MEMBER_RESIZE)` for square X (to ~1e-6)."""
    eye = torch.eye(size_in).view(1, 1, size_in, size_in)
    return F.interpolate(eye, size=(size_out, size_in), mode=MEMBER_RESIZE)[0, 0]


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
        largest = max(self.sizes)  # the ensemble's input: the largest member's view
        for k, size in enumerate(self.sizes):
            if size != largest:
                self.register_buffer(f"resize{k}", resize_matrix(largest, size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([member(view) for member, view in zip(self.members, self._views(x))], dim=1)

    @property
    def has_grids(self) -> bool:
        """Whether every member tells the grids its features are the means of (`grids`)."""
        return all(hasattr(member, "grids") for member in self.members)

    def grids(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every member's grids of feature vectors, in the order of their features (`inference.explain`)."""
        return [grid for member, view in zip(self.members, self._views(x)) for grid in cast(Any, member).grids(view)]

    def _views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's view of the batch: resized to its input size, normalized with its mean and std."""
        pixels = x * self.std + self.mean  # back to [0, 1]
        views = []
        for k in range(len(self.members)):
            view = pixels
            if view.shape[-1] != self.sizes[k] or view.shape[-2] != self.sizes[k]:
                resize = getattr(self, f"resize{k}", None)
                if resize is not None and view.shape[-2:] == (resize.shape[1], resize.shape[1]):
                    view = (resize @ view @ resize.T).clamp(0, 1)
                else:  # an input of another size than the ensemble's view: the same resize, by torch
                    view = F.interpolate(view, size=(self.sizes[k], self.sizes[k]), mode=MEMBER_RESIZE).clamp(0, 1)
            views.append((view - self.means[k].view(1, 3, 1, 1)) / self.stds[k].view(1, 3, 1, 1))
        return views
