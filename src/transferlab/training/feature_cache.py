"""The frozen features' disk cache: one entry per backbone (weights and BatchNorm statistics), set of pictures,
views, transform, precision and versions (`feature_key`), written atomically (two writers: the last wins whole),
read back only when whole and consistent (a damaged entry is a warning and computed again)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from transferlab.data.decoding import DecodedSplit
from transferlab.data.presets import TrainPreset
from transferlab.models.backbones import BackboneSpec
from transferlab.models.onnx_features import hash_state
from transferlab.runs import torchvision_version
from transferlab.utils.storage import cache_dir, write_atomically

log = logging.getLogger("transferlab")


@dataclass(kw_only=True)
class FeatureCache:
    """Pooled backbone features: `train` is (views, N, D) for the augmented views, `train_centre` (N, D) for the
    centre crops of the training pictures (when asked for), `val` is (N, D)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    seconds: float
    from_cache: bool = False  # read from the disk cache rather than computed
    train_centre: torch.Tensor | None = None
    compute_seconds: float | None = None  # what computing them took (in the run that cached them, if read)

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


def view_seed(view: int, index: int) -> int:
    """The seed of augmented view `view` of training picture `index` (the same in every process and run)."""
    return 1_000_003 * view + index


def feature_key(request: FeatureRequest) -> str:
    """What cached features depend on: the backbone's weights (and BatchNorm statistics), the pictures, the
    number of views, the transform and normalization, the precision, and the torch/torchvision versions."""
    spec, views, centre = request.spec, request.views, request.centre
    key = hash_state(request.backbone, hashlib.sha256())
    key.update(
        json.dumps(
            {
                "spec": [
                    spec.name,
                    spec.input_size,
                    spec.resize_size,
                    list(spec.mean),
                    list(spec.std),
                    spec.feature_dim,
                    *([spec.revision] if spec.revision else []),
                ],
                "views": views,
                "precision": str(request.precision),
                "train": request.train.digest(),
                "val": request.val.digest(),
                **({"transform": repr(TrainPreset(spec.input_size).transform)} if views else {}),
                "view_seed": view_seed(1, 0),
                "versions": [torch.__version__, torchvision_version()],
                **({"centre": "resize-centre-crop"} if centre else {}),
            },
            sort_keys=True,
        ).encode()
    )
    return key.hexdigest()[:32]


def feature_cache_path(key: str) -> Path:
    return cache_dir() / "features" / f"{key}.safetensors"


def load_features(key: str, train: DecodedSplit, val: DecodedSplit) -> FeatureCache | None:
    """Features cached on disk under `key`, or None (missing or unreadable: they are computed again)."""
    path = feature_cache_path(key)
    if not path.exists():
        return None
    start = time.perf_counter()
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as handle:
            computed = float((handle.metadata() or {}).get("compute_seconds", "nan"))
    except Exception as error:  # a damaged cache file is not the user's problem: recompute
        log.warning("ignoring damaged feature cache %s: %s", path, error)
        return None
    seconds = time.perf_counter() - start
    features = FeatureCache(
        train=tensors["train"],
        train_labels=train.labels,
        val=tensors["val"],
        val_labels=val.labels,
        seconds=seconds,
        from_cache=True,
        train_centre=tensors.get("train_centre"),
        compute_seconds=computed if computed == computed else seconds,
    )
    problem = inconsistency(features, len(train), len(val))
    if problem:
        log.warning("ignoring the feature cache %s (%s): computing the features again", path.name, problem)
        return None
    return features


def inconsistency(features: FeatureCache, train: int, val: int) -> str | None:
    """What is wrong with features for `train` and `val` pictures (None: nothing), so none are cached or used."""
    if features.train.dim() != 3 or features.train.shape[1] != train:
        return f"training features of shape {tuple(features.train.shape)} for {train} pictures"
    if features.val.dim() != 2 or features.val.shape[0] != val:
        return f"validation features of shape {tuple(features.val.shape)} for {val} pictures"
    if features.train_centre is not None and tuple(features.train_centre.shape) != (train, features.val.shape[1]):
        return f"centre-crop features of shape {tuple(features.train_centre.shape)} for {train} pictures"
    tensors = [features.train, features.val] + ([features.train_centre] if features.train_centre is not None else [])
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        return "features that are not finite numbers"
    return None


def save_features(key: str, features: FeatureCache) -> Path:
    """Write features atomically (temporary file, then rename), so concurrent writers never leave half a file."""
    path = feature_cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"train": features.train.contiguous(), "val": features.val.contiguous()}
    if features.train_centre is not None:
        tensors["train_centre"] = features.train_centre.contiguous()
    about = {"compute_seconds": repr(features.compute_seconds)}
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=about))  # two writers: the last wins whole
    return path
