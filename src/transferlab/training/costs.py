"""What frozen features cost to compute, measured in this process: so a cell's cost (the answer's "cheapest")
does not depend on whether its features were cached, nor on the load of the command that cached them."""

from __future__ import annotations

import time
from typing import cast

import torch
from torch import nn

from transferlab.data.decoding import DecodedSplit
from transferlab.data.presets import normalize
from transferlab.models.backbones import BackboneSpec
from transferlab.training.feature_cache import FeatureCache
from transferlab.utils.device import autocast

COST_SAMPLE = 8  # pictures timed to cost cached features in this process
TIMINGS = 2  # timed passes over them, after a warm-up pass of the same size


def costed(
    features: FeatureCache, backbone: nn.Module, spec: BackboneSpec, val: DecodedSplit,
    precision: torch.dtype | None, device: torch.device,
) -> FeatureCache:  # fmt: skip
    """`features` with `compute_seconds` measured here and now when they came from the cache (computed ones were
    timed as they were computed): what the run's cost, and so the answer's "cheapest", counts."""
    if features.from_cache:
        pictures = features.train.shape[0] * len(features.train_labels) + len(features.val_labels)
        if features.train_centre is not None:
            pictures += len(features.train_centre)
        features.compute_seconds = cost_now(backbone, spec, val, pictures, precision, device,
                                            recorded=cast(float, features.compute_seconds))  # fmt: skip
    return features


def cost_now(
    backbone: nn.Module,
    spec: BackboneSpec,
    val: DecodedSplit,
    pictures: int,
    precision: torch.dtype | None,
    device: torch.device,
    *,
    recorded: float,
) -> float:
    """What computing `pictures` features would take here and now: the backbone timed on a few validation pictures
    in this process (after a warm-up pass of the same size; the faster of TIMINGS passes), so a cell's cost does
    not depend on whether its features were cached, nor on the load of the command that cached them. The recorded
    figure is the fallback."""
    sample = [val.images[i] for i in range(min(COST_SAMPLE, len(val)))]
    if len(sample) < 4:
        return recorded
    amp = autocast(device, precision)
    batch = normalize(torch.stack(sample).to(device), spec)
    was_training = backbone.training
    backbone.eval()
    seconds = []
    with torch.inference_mode(), amp:
        backbone(batch)  # warm-up at the timed size: the first call pays for allocations
        for _ in range(TIMINGS):
            start = time.perf_counter()
            backbone(batch)
            seconds.append(time.perf_counter() - start)
    backbone.train(was_training)
    return min(seconds) / len(sample) * pictures  # the least disturbed of the timings
