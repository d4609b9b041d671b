"""Frozen-backbone features: the backbone runs once per view of each picture, and the result is cached on disk.

`extract_features` runs the frozen backbone (in eval mode) once over K augmented views of the training pictures and
once over the validation pictures; the head then trains on those pooled features. `feature_cache` keeps them on
disk under `feature_key`, a hash of everything they depend on (backbone weights, pictures, views, transform,
precision), so a second run, `compare --seeds` or two-stage after extract does not compute them again.
`features_for` is what training calls: from the cache when every process has them, else computed (under torchrun,
each process its share) and cached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn

from transferlab.data.presets import TrainPreset, eval_view, normalize, resize_tensor
from transferlab.models.backbones import BackboneSpec
from transferlab.training.feature_cache import (
    FeatureCache,
    FeatureRequest,
    feature_key,
    inconsistency,
    load_features,
    save_features,
    view_seed,
)
from transferlab.utils.device import autocast
from transferlab.utils.distributed import Dist
from transferlab.utils.progress import Tracked

log = logging.getLogger("transferlab")


@torch.inference_mode()
def extract_features(
    request: FeatureRequest,
    *,
    device: torch.device,
    quiet: bool = False,
    train_index: list[int] | None = None,
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
    backbone, spec, train, val, views, centre = (request.backbone, request.spec, request.train, request.val,
                                                  request.views, request.centre)  # fmt: skip
    batch_size, precision = request.batch_size, request.precision
    start, was_training = time.perf_counter(), backbone.training
    backbone.eval()
    preset = TrainPreset(spec.input_size) if views else None  # torchvision is imported only where views are made
    train_index = list(range(len(train))) if train_index is None else train_index
    bar = Tracked("features", spec.name, (views + centre) * len(train) + len(val), quiet, unit="img")
    amp, forward = autocast(device, precision), _forward(backbone, spec, device, precision, onnx)

    def run(pictures: list[torch.Tensor], crop: Callable[[torch.Tensor, int], torch.Tensor] | None) -> torch.Tensor:
        """The features of `pictures`, each cropped by `crop` (picture, its index) first, or taken as it is."""
        out = []
        for i in range(0, len(pictures), batch_size):
            chunk = pictures[i : i + batch_size]
            if crop is not None:
                chunk = [crop(p, i + j) for j, p in enumerate(chunk)]
            batch = torch.stack(chunk).to(device, non_blocking=True)
            with amp:
                out.append(forward(normalize(batch, spec)).float().cpu())
            bar.update(len(chunk))
        return torch.cat(out) if out else torch.zeros(0, spec.feature_dim)

    with torch.random.fork_rng(devices=[]):  # the seeded crops leave the training random state untouched
        views_features = [
            run(train.images, _seeded_view(cast(TrainPreset, preset), view, train_index)) for view in range(views)
        ]
    train_features = torch.stack(views_features) if views else torch.zeros(0, len(train), spec.feature_dim)
    train_centre = run(train.images, lambda picture, _: centre_crop(picture, spec)) if centre else None
    val_features = run(val.images, None)
    bar.close()
    backbone.train(was_training)
    return FeatureCache(
        train=train_features, train_labels=train.labels, val=val_features, val_labels=val.labels,
        seconds=time.perf_counter() - start, train_centre=train_centre,
    )  # fmt: skip


def _seeded_view(preset: TrainPreset, view: int, train_index: list[int]) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Augmented view `view` of the training pictures: picture i cropped with its own seed (view, its index in the
    whole split), the same crop in any process, batch or run."""

    def crop(picture: torch.Tensor, i: int) -> torch.Tensor:
        torch.manual_seed(view_seed(view, train_index[i]))
        return preset(picture)

    return crop


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


def features_for(request: FeatureRequest, *, dist: Dist, use_cache: bool = True, quiet: bool = False) -> FeatureCache:
    """The frozen backbone's features of every picture: from the disk cache when every process has them, else
    computed (each process its share, shares exchanged) and cached."""
    if not use_cache:
        return _sharded_features(request, dist=dist, quiet=quiet)
    key = feature_key(request)
    cached = load_features(key, request.train, request.val)
    if all(dist.gather(cached is not None)):
        log.info("features: read from the cache (%s...)", key[:12])
        return cast(FeatureCache, cached)
    features = _sharded_features(request, dist=dist, quiet=quiet)
    problem = inconsistency(features, len(request.train), len(request.val))
    if problem:  # never cache what a later run could not use
        raise RuntimeError(f"computed {problem}")
    save_features(key, features)  # every process writes (atomically): on several machines, each has its own cache
    return features


def _sharded_features(request: FeatureRequest, *, dist: Dist, quiet: bool) -> FeatureCache:
    """The frozen backbone over this process's share of the pictures; shares exchanged so all hold every vector."""
    train, val, views, centre = request.train, request.val, request.views, request.centre
    train_idx, val_idx = dist.shard(len(train)), dist.shard(len(val))
    mine = request.share(train_idx, val_idx)
    part = extract_features(mine, device=dist.device, quiet=quiet or not dist.main, train_index=train_idx, onnx=True)
    if not dist.enabled:
        return part
    shares: list[_Share] = dist.gather(_Share(train_index=train_idx, val_index=val_idx, features=part))
    dim = part.val.shape[-1]
    train_features, val_features = torch.empty(views, len(train), dim), torch.empty(len(val), dim)
    train_centre = torch.empty(len(train), dim) if centre else None
    for share in shares:
        train_features[:, share.train_index] = share.features.train
        val_features[share.val_index] = share.features.val
        if train_centre is not None and share.features.train_centre is not None:  # computed when `centre`
            train_centre[share.train_index] = share.features.train_centre
    return FeatureCache(
        train=train_features,
        train_labels=train.labels,
        val=val_features,
        val_labels=val.labels,
        seconds=max(share.features.seconds for share in shares),
        train_centre=train_centre,
    )


@dataclass(kw_only=True)
class _Share:
    """One process's share of the features, and which pictures they are of."""

    train_index: list[int]
    val_index: list[int]
    features: FeatureCache


def every_image_features(config, prepared) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    """Centre-crop features of every picture, train then val, with labels and paths: what a probe sees of each image
    (the cross-validated probe of `compare --cv` and `doctor --labels`). Cached like any features."""
    from transferlab.models.model import create_backbone

    backbone, spec, _ = create_backbone(config.backbone, config.weights)
    dist = Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    request = FeatureRequest(
        backbone=backbone, spec=spec, train=prepared.train, val=prepared.val, centre=True,
        batch_size=config.recipe.batch_size,
    )  # fmt: skip
    features = features_for(request, dist=dist, use_cache=config.feature_cache, quiet=config.quiet)
    x = torch.cat([cast(torch.Tensor, features.train_centre), features.val])  # asked for with centre=True
    y = torch.cat([prepared.train.labels, prepared.val.labels])
    return x, y, prepared.train.paths + prepared.val.paths
