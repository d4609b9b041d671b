"""Frozen features, one vector per photo and view, in the per-photo store: what is stored is never computed again.

A feature vector depends on the photo's bytes (its key), how it was decoded (the picture space), the view cut from
the picture (its centre crop, the evaluation crop as it is, or augmented view k with its seeded transform) and the
backbone (`models.onnx_features.feature_identity`: weights, BatchNorm statistics, normalization, precision,
versions). So a re-split, a photo moved to another class or renamed, or one photo added costs only the new vectors;
a stored vector of the wrong length, or not finite, is computed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from transferlab.data.decoding import DecodedSplit
from transferlab.data.presets import TrainPreset
from transferlab.data.spaces import feature_space
from transferlab.models.backbones import BackboneSpec
from transferlab.models.onnx_features import feature_identity


@dataclass(kw_only=True)
class FeatureCache:
    """Pooled backbone features: `train` is (views, N, D) for the augmented views, `train_centre` (N, D) for the
    centre crops of the training pictures (when asked for), `val` is (N, D)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    seconds: float
    from_cache: bool = False  # every vector read from the store rather than computed
    train_centre: torch.Tensor | None = None
    compute_seconds: float | None = None  # what computing them all takes (measured here, or estimated)
    computed: int = 0  # vectors computed by this process (the rest came from the store)

    def __post_init__(self) -> None:
        if self.compute_seconds is None:
            self.compute_seconds = self.seconds


@dataclass(frozen=True, kw_only=True)
class FeatureRequest:
    """Which frozen features to compute: `backbone` (in eval mode) over `views` augmented views of the training
    pictures, also over their centre crops with `centre` (what a probe fits on), and over the validation pictures'
    crops; `batch_size` pictures at a time, in `precision` (None: float32)."""

    backbone: nn.Module
    spec: BackboneSpec
    train: DecodedSplit
    val: DecodedSplit
    views: int = 0
    centre: bool = False
    batch_size: int = 64
    precision: torch.dtype | None = None

    def share(self, train_index: list[int], val_index: list[int]) -> FeatureRequest:
        """The same request for these pictures only (one process's share)."""
        return dataclasses.replace(self, train=self.train.subset(train_index), val=self.val.subset(val_index))


def view_seed(view: int, photo: int | str) -> int:
    """The seed of augmented view `view` of a training photo: from its key (the hash of its bytes), so the same crop
    in every process, run, split and folder; from its index in the split where pictures have no key."""
    number = int(photo[:15], 16) if isinstance(photo, str) else photo
    return (1_000_003 * view + number) % (1 << 62)


@dataclass(frozen=True, kw_only=True)
class Part:
    """One kind of vector a request needs: training views ("view<k>"), training centre crops ("centre"), or the
    validation crops as they are ("as-is"), with the store space they live in."""

    split: str  # "train" | "val"
    view: str
    space: str


def parts_of(request: FeatureRequest) -> list[Part]:
    """The kinds of vectors `request` needs, each with its store space."""
    identity = feature_identity(request.backbone, request.spec, request.precision)
    transform = ""
    if request.views:
        transform = hashlib.sha1(repr(TrainPreset(request.spec.input_size).transform).encode()).hexdigest()[:12]
    parts = [
        Part(split="train", view=f"view{k}", space=feature_space(identity, request.train.space, f"view{k}-{transform}"))
        for k in range(request.views)
    ]
    if request.centre:
        parts.append(Part(split="train", view="centre", space=feature_space(identity, request.train.space, "centre")))
    parts.append(Part(split="val", view="as-is", space=feature_space(identity, request.val.space, "as-is")))
    return parts


def inconsistency(features: FeatureCache, train: int, val: int) -> str | None:
    """What is wrong with features for `train` and `val` pictures (None: nothing), so none are stored or used."""
    if features.train.dim() != 3 or features.train.shape[1] != train:
        return f"training features of shape {tuple(features.train.shape)} for {train} pictures"
    if features.val.dim() != 2 or features.val.shape[0] != val:
        return f"validation features of shape {tuple(features.val.shape)} for {val} pictures"
    if features.train_centre is not None and tuple(features.train_centre.shape) != (train, features.val.shape[1]):
        return f"centre-crop features of shape {tuple(features.train_centre.shape)} for {train} pictures"
    tensors = [features.train, features.val] + ([features.train_centre] if features.train_centre is not None else [])
    # a finite sum: every value finite (a tenth of the time on 20,000 vectors); else (or overflow) looked at one by one
    if not all(bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all()) for t in tensors):
        return "features that are not finite numbers"
    return None
