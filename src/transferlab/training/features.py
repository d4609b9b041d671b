"""Frozen-backbone features: the backbone runs once per view of each picture, and the result is cached on disk.

`extract_features` runs the frozen backbone (in eval mode) once over K augmented views of the training pictures and
once over the validation pictures; the head then trains on those pooled features. `save_features`/`load_features`
keep them on disk under `feature_key`, a hash of everything they depend on (backbone weights, pictures, views,
transform, precision), so a second run, `compare --seeds` or two-stage after extract does not compute them again.
`features_for` is what training calls: from the cache when every process has them, else computed (under torchrun,
each process its share) and cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from transferlab.data.decoding import DecodedSplit
from transferlab.data.presets import TrainPreset, eval_view, normalize, resize_tensor
from transferlab.models.backbones import BackboneSpec
from transferlab.models.onnx_features import hash_state
from transferlab.runs import torchvision_version
from transferlab.utils.device import autocast
from transferlab.utils.distributed import Dist
from transferlab.utils.progress import Tracked
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


def _view_seed(view: int, index: int) -> int:
    return 1_000_003 * view + index


@torch.inference_mode()
def extract_features(
    backbone: nn.Module,
    spec: BackboneSpec,
    train: DecodedSplit,
    val: DecodedSplit,
    views: int,
    batch_size: int,
    *,
    device: torch.device,
    quiet: bool = False,
    precision: torch.dtype | None = None,
    train_index: list[int] | None = None,
    centre: bool = False,
    onnx: bool = False,
) -> FeatureCache:
    """Run the frozen backbone (in eval mode) once over `views` augmented views of train and once over val; with
    `centre`, also once over the centre crops of the training pictures (what a linear probe fits on).

    View k of training picture i is cropped with its own seed (k, i), whatever the process, batch or training
    seed: the features are a property of the data, so they can be cached and shared between seeds.
    `train_index` gives the pictures' positions in the whole split when `train` is one process's share. With
    `onnx`, on the CPU in float32, the backbone runs in ONNX Runtime (`models.onnx_features`: the same features
    within 1e-4, faster; exported once per set of weights, so only for the pretrained backbones that are reused).
    """
    start, was_training = time.perf_counter(), backbone.training
    backbone.eval()
    preset = TrainPreset(spec.input_size) if views else None  # torchvision is imported only where views are made
    train_index = list(range(len(train))) if train_index is None else train_index
    bar = Tracked("features", spec.name, (views + centre) * len(train) + len(val), quiet, unit="img")
    amp, forward = autocast(device, precision), _forward(backbone, spec, device, precision, onnx)

    def crop(picture: torch.Tensor, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return cast(TrainPreset, preset)(picture)

    def run(pictures: list[torch.Tensor], view: int | str | None) -> torch.Tensor:
        out = []
        for i in range(0, len(pictures), batch_size):
            chunk = pictures[i : i + batch_size]
            if view == "centre":
                chunk = [centre_crop(p, spec) for p in chunk]
            elif view is not None:
                chunk = [crop(p, _view_seed(int(view), train_index[i + j])) for j, p in enumerate(chunk)]
            batch = torch.stack(chunk).to(device, non_blocking=True)
            with amp:
                out.append(forward(normalize(batch, spec)).float().cpu())
            bar.update(len(chunk))
        return torch.cat(out) if out else torch.zeros(0, spec.feature_dim)

    with torch.random.fork_rng(devices=[]):  # the seeded crops leave the training random state untouched
        views_features = [run(train.images, view) for view in range(views)]
    train_features = torch.stack(views_features) if views else torch.zeros(0, len(train), spec.feature_dim)
    train_centre = run(train.images, "centre") if centre else None
    val_features = run(val.images, None)
    bar.close()
    backbone.train(was_training)
    return FeatureCache(
        train=train_features, train_labels=train.labels, val=val_features, val_labels=val.labels,
        seconds=time.perf_counter() - start, train_centre=train_centre,
    )  # fmt: skip


def _forward(
    backbone: nn.Module, spec: BackboneSpec, device: torch.device, precision: torch.dtype | None, onnx: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The backbone, or (with `onnx`, on the CPU in float32) its ONNX Runtime session."""
    if onnx and device.type == "cpu" and precision is None:
        from transferlab.models.onnx_features import onnx_features

        return onnx_features(backbone, spec) or backbone
    return backbone


def centre_crop(picture: torch.Tensor, spec: BackboneSpec) -> torch.Tensor:
    """The evaluation view (Resize to the resize size + CenterCrop) of a decoded training picture."""
    return eval_view(resize_tensor(picture, spec.resize_size), spec.input_size)


def feature_key(
    backbone: nn.Module,
    spec: BackboneSpec,
    train: DecodedSplit,
    val: DecodedSplit,
    views: int,
    precision: torch.dtype | None,
    *,
    centre: bool = False,
) -> str:
    """What cached features depend on: the backbone's weights (and BatchNorm statistics), the pictures, the
    number of views, the transform and normalization, the precision, and the torch/torchvision versions."""
    key = hash_state(backbone, hashlib.sha256())
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
                "precision": str(precision),
                "train": train.digest(),
                "val": val.digest(),
                **({"transform": repr(TrainPreset(spec.input_size).transform)} if views else {}),
                "view_seed": _view_seed(1, 0),
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


def features_for(
    backbone: nn.Module,
    spec: BackboneSpec,
    train: DecodedSplit,
    val: DecodedSplit,
    views: int,
    batch_size: int,
    *,
    precision: torch.dtype | None,
    dist: Dist,
    use_cache: bool = True,
    quiet: bool = False,
    centre: bool = False,
) -> FeatureCache:
    """The frozen backbone's features of every picture: from the disk cache when every process has them, else
    computed (each process its share, shares exchanged) and cached."""
    if not use_cache:
        return _sharded_features(
            backbone, spec, train, val, views, batch_size, precision=precision, dist=dist, quiet=quiet, centre=centre
        )
    key = feature_key(backbone, spec, train, val, views, precision, centre=centre)
    cached = load_features(key, train, val)
    if all(dist.gather(cached is not None)):
        log.info("features: read from the cache (%s...)", key[:12])
        return cast(FeatureCache, cached)
    features = _sharded_features(
        backbone, spec, train, val, views, batch_size, precision=precision, dist=dist, quiet=quiet, centre=centre
    )
    problem = inconsistency(features, len(train), len(val))
    if problem:  # never cache what a later run could not use
        raise RuntimeError(f"computed {problem}")
    save_features(key, features)  # every process writes (atomically): on several machines, each has its own cache
    return features


def _sharded_features(
    backbone: nn.Module,
    spec: BackboneSpec,
    train: DecodedSplit,
    val: DecodedSplit,
    views: int,
    batch_size: int,
    *,
    precision: torch.dtype | None,
    dist: Dist,
    quiet: bool,
    centre: bool = False,
) -> FeatureCache:
    """The frozen backbone over this process's share of the pictures; shares exchanged so all hold every vector."""
    train_idx, val_idx = dist.shard(len(train)), dist.shard(len(val))
    part = extract_features(
        backbone,
        spec,
        train.subset(train_idx),
        val.subset(val_idx),
        views,
        batch_size,
        device=dist.device,
        quiet=quiet or not dist.main,
        precision=precision,
        train_index=train_idx,
        centre=centre,
        onnx=True,
    )
    if not dist.enabled:
        return part
    parts = dist.gather((train_idx, val_idx, part.train, part.val, part.seconds, part.train_centre))
    dim = parts[0][3].shape[-1]
    train_features, val_features = torch.empty(views, len(train), dim), torch.empty(len(val), dim)
    train_centre = torch.empty(len(train), dim) if centre else None
    for t_idx, v_idx, t_feat, v_feat, _, c_feat in parts:
        train_features[:, t_idx] = t_feat
        val_features[v_idx] = v_feat
        if train_centre is not None:  # computed when `centre`
            train_centre[t_idx] = c_feat
    return FeatureCache(
        train=train_features,
        train_labels=train.labels,
        val=val_features,
        val_labels=val.labels,
        seconds=max(p[4] for p in parts),
        train_centre=train_centre,
    )


def every_image_features(config, prepared) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    """Centre-crop features of every picture, train then val, with labels and paths: what a probe sees of each image
    (the cross-validated probe of `compare --cv` and `doctor --labels`). Cached like any features."""
    from transferlab.models.model import create_backbone

    backbone, spec, _ = create_backbone(config.backbone, config.weights)
    dist = Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    features = features_for(
        backbone,
        spec,
        prepared.train,
        prepared.val,
        0,
        config.recipe.batch_size,
        precision=None,
        dist=dist,
        use_cache=config.feature_cache,
        quiet=config.quiet,
        centre=True,
    )
    x = torch.cat([cast(torch.Tensor, features.train_centre), features.val])  # asked for with centre=True
    y = torch.cat([prepared.train.labels, prepared.val.labels])
    return x, y, prepared.train.paths + prepared.val.paths
