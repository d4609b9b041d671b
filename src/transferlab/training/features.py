"""Frozen-backbone features: the backbone runs once per view of each photo, ever; the vectors live in the store.

`features_for` is what training calls: the vectors the per-photo store holds (`feature_cache`: keyed by the photo's
bytes, its decoding, the view and the backbone) are read, only the missing ones are computed (under torchrun each
process its share, shares exchanged) and stored. `extract_features` computes every vector of a request without the
store (calibration, tests). View k of a training photo is cropped with its own seed (`view_seed`, from its key), so
a vector is a property of the photo, shared by every run, seed, split and folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from transferlab.data.decoding import DecodedSplit, decode_split
from transferlab.data.layout import Sample
from transferlab.data.presets import TrainPreset, eval_view, normalize, resize_tensor
from transferlab.models.backbones import BackboneSpec
from transferlab.store import open_store
from transferlab.training.feature_cache import (
    FeatureCache,
    FeatureRequest,
    Part,
    inconsistency,
    parts_of,
    view_seed,
)
from transferlab.training.stored_features import remember_identity, remember_unreadable, stored_vectors
from transferlab.utils.device import autocast
from transferlab.utils.distributed import Dist
from transferlab.utils.machine import give_back_freed_memory
from transferlab.utils.progress import Tracked

log = logging.getLogger("transferlab")

TRIM_EVERY = 8  # batches between handing freed memory back (ONNX Runtime's arenas grew by 0.4 MB a photo otherwise)
Crop = Callable[[torch.Tensor, int], torch.Tensor]  # (picture, its index in the split) -> network input


def extract_features(
    request: FeatureRequest, *, device: torch.device, quiet: bool = False, onnx: bool = False
) -> FeatureCache:
    """Every vector of `request`, computed here (no store): the frozen backbone (in eval mode) once over `views`
    augmented views of train, with `centre` once over the training pictures' centre crops (what a linear probe fits
    on), and once over val. With `onnx`, on the CPU in float32, the backbone runs in ONNX Runtime
    (`models.onnx_features`: the same features within 1e-4, faster)."""
    start = time.perf_counter()
    wanted = {part: list(range(len(_split(request, part)))) for part in parts_of(request)}
    vectors = _compute(request, wanted, device=device, quiet=quiet, onnx=onnx)
    return _assemble(request, vectors, seconds=time.perf_counter() - start, computed=sum(map(len, wanted.values())))


def features_for(request: FeatureRequest, *, dist: Dist, use_cache: bool = True, quiet: bool = False) -> FeatureCache:
    """The frozen backbone's features of every picture: what the store holds is read, the rest computed (each
    process its share, shares exchanged) and stored. Without `use_cache`, or for pictures that have no photo keys,
    everything is computed and nothing stored."""
    start = time.perf_counter()
    parts = parts_of(request)
    keyed = all(len(split.keys) == len(split) for split in (request.train, request.val))
    store = open_store() if use_cache and keyed else None
    dim = request.spec.feature_dim
    rows: dict[Part, list[np.ndarray | None]] = {}
    for part in parts:
        size = len(_split(request, part))
        rows[part] = stored_vectors(store, part.space, _split(request, part).keys, dim) if store else [None] * size
    missing = {part: [i for i, row in enumerate(found) if row is None] for part, found in rows.items()}
    count = sum(map(len, missing.values()))
    total = sum(map(len, rows.values()))
    computed_seconds = 0.0
    if count:
        began = time.perf_counter()
        computed = _sharded(request, missing, dist=dist, quiet=quiet)
        computed_seconds = time.perf_counter() - began
        for part, indices in missing.items():
            keys = _split(request, part).keys
            for j, i in enumerate(indices):
                vector = np.ascontiguousarray(computed[part][j].numpy(), dtype=np.float32)
                rows[part][i] = vector
                if store is not None:
                    store.put(part.space, keys[i], vector)
        if store is not None:
            store.trim()
        if store is not None and total > count:
            log.info("features: %d of %d vectors read from the store, %d computed", total - count, total, count)
    elif store is not None:
        log.info("features: all %d vectors read from the store", total)
    vectors = {part: _stack(found, dim) for part, found in rows.items()}
    features = _assemble(request, vectors, seconds=time.perf_counter() - start, computed=count)
    if count:
        features.compute_seconds = computed_seconds * total / count  # what computing all of them takes here
    problem = inconsistency(features, len(request.train), len(request.val))
    if problem:
        raise RuntimeError(f"computed {problem}")
    return features


def _stack(rows: list[np.ndarray | None], dim: int) -> torch.Tensor:
    if not rows:
        return torch.zeros(0, dim)
    return torch.from_numpy(np.stack([cast(np.ndarray, row) for row in rows]))


def _split(request: FeatureRequest, part: Part) -> DecodedSplit:
    return request.train if part.split == "train" else request.val


def _assemble(request: FeatureRequest, vectors: dict[Part, torch.Tensor], *, seconds: float, computed: int):
    dim = request.spec.feature_dim
    views = [vectors[p] for p in vectors if p.view.startswith("view")]
    centre = next((vectors[p] for p in vectors if p.view == "centre"), None)
    val = next(vectors[p] for p in vectors if p.view == "as-is")
    return FeatureCache(
        train=torch.stack(views) if views else torch.zeros(0, len(request.train), val.shape[-1] if len(val) else dim),
        train_labels=request.train.labels,
        val=val,
        val_labels=request.val.labels,
        seconds=seconds,
        from_cache=computed == 0,
        train_centre=centre,
        computed=computed,
    )


def _sharded(
    request: FeatureRequest, wanted: dict[Part, list[int]], *, dist: Dist, quiet: bool
) -> dict[Part, torch.Tensor]:
    """The vectors at `wanted` (per part, indices in its split): this process's share computed here, the shares
    exchanged so every process holds every vector, in the order asked."""
    mine = {part: [indices[k] for k in dist.shard(len(indices))] for part, indices in wanted.items()}
    part_vectors = _compute(request, mine, device=dist.device, quiet=quiet or not dist.main, onnx=True)
    if not dist.enabled:
        return part_vectors
    shares: list[_Share] = dist.gather(_Share(indices=mine, vectors=part_vectors))
    out = {}
    for part, indices in wanted.items():
        where = {i: k for k, i in enumerate(indices)}
        dim = next((len(s.vectors[part][0]) for s in shares if len(s.indices[part])), request.spec.feature_dim)
        whole = torch.empty(len(indices), dim)
        for share in shares:
            for row, i in enumerate(share.indices[part]):
                whole[where[i]] = share.vectors[part][row]
        out[part] = whole
    return out


@dataclass(kw_only=True)
class _Share:
    """One process's share of the vectors, and which pictures they are of."""

    indices: dict[Part, list[int]]
    vectors: dict[Part, torch.Tensor]


@torch.inference_mode()
def _compute(
    request: FeatureRequest, wanted: dict[Part, list[int]], *, device: torch.device, quiet: bool, onnx: bool
) -> dict[Part, torch.Tensor]:
    """The backbone over the pictures at `wanted` (per part, indices in its split), each cut as its part says."""
    backbone, spec, batch_size = request.backbone, request.spec, request.batch_size
    was_training = backbone.training
    backbone.eval()
    bar = Tracked("features", spec.name, sum(map(len, wanted.values())), quiet, unit="img")
    amp, forward = autocast(device, request.precision), _forward(backbone, spec, device, request.precision, onnx)
    out: dict[Part, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):  # the seeded crops leave the training random state untouched
        for part, indices in wanted.items():
            split = _split(request, part)
            crop = _crop_of(part, split, spec)
            batches = []
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                pictures: Sequence[torch.Tensor] = [split.images[i] for i in chunk]
                if crop is not None:
                    pictures = [crop(picture, i) for picture, i in zip(pictures, chunk)]
                batch = torch.stack(list(pictures)).to(device, non_blocking=True)
                with amp:
                    batches.append(forward(normalize(batch, spec)).float().cpu())
                bar.update(len(chunk))
                if len(batches) % TRIM_EVERY == 0:
                    give_back_freed_memory()
            out[part] = torch.cat(batches) if batches else torch.zeros(0, spec.feature_dim)
    bar.close()
    backbone.train(was_training)
    return out


def _crop_of(part: Part, split: DecodedSplit, spec: BackboneSpec) -> Crop | None:
    """How a part cuts a picture: augmented view k (seeded per photo), the centre crop, or nothing (val crops)."""
    if part.view == "centre":
        return lambda picture, _: centre_crop(picture, spec)
    if part.view.startswith("view"):
        view, preset = int(part.view[4:]), TrainPreset(spec.input_size)

        def seeded(picture: torch.Tensor, i: int) -> torch.Tensor:
            torch.manual_seed(view_seed(view, split.keys[i] if split.keys else i))
            return preset(picture)

        return seeded
    return None


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


@dataclass(frozen=True, kw_only=True)
class PhotoFeatures:
    """The evaluation view's frozen features (Resize + CenterCrop, as predict sees a photo) of a list of photos."""

    features: torch.Tensor  # (photos kept, D)
    labels: torch.Tensor  # the samples' labels, of the photos kept
    paths: list[Path]  # the photos kept (readable), in the samples' order
    skipped: list[tuple[Path, str]]  # unreadable photos and why
    decoded: int  # photos decoded now (new bytes)
    computed: int  # vectors computed now (the rest read from the store)


def photo_features(
    samples: list[Sample],
    backbone: nn.Module,
    spec: BackboneSpec,
    background: tuple[int, int, int],
    *,
    workers: int | None = None,
    quiet: bool = False,
    use_cache: bool = True,
) -> PhotoFeatures:
    """Every photo's features in its evaluation view, from the store: one space whatever split, folder or pile a
    photo is in, so a photo moved from a pile into a class folder, or from train to val, is never computed again
    (the live model, the label check and `suggest` all read these)."""
    split = decode_split(samples, spec.resize_size, spec.input_size, background, workers, "decode", quiet=quiet)
    request = FeatureRequest(backbone=backbone, spec=spec, train=split.subset([]), val=split)
    alone = Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    features = features_for(request, dist=alone, use_cache=use_cache, quiet=quiet)
    return PhotoFeatures(
        features=features.val, labels=split.labels, paths=split.paths, skipped=split.skipped,
        decoded=split.decoded, computed=features.computed,
    )  # fmt: skip


def store_eval_features(
    paths: list[Path],
    backbone: str,
    background: tuple[int, int, int],
    *,
    workers: int | None = None,
    quiet: bool = False,
) -> PhotoFeatures:
    """`photo_features` of `paths` with backbone `backbone` and its default weights, stored with what lets a later
    reader skip the network (`stored_features`): the backbone's identity, and each photo that cannot be decoded."""
    from transferlab.models.model import create_backbone
    from transferlab.models.onnx_features import feature_identity

    network, spec, _ = create_backbone(backbone)
    network.eval()
    samples = [Sample(path=path, label=-1) for path in paths]
    found = photo_features(samples, network, spec, background, workers=workers, quiet=quiet)
    store = open_store()
    remember_identity(store, spec, feature_identity(network, spec, None))
    for (_, why), key in zip(found.skipped, store.keys([path for path, _ in found.skipped])):
        if key is not None:
            remember_unreadable(store, spec, background, key, why)
    return found


def every_image_features(config, prepared) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    """Centre-crop features of every picture, train then val, with labels and paths: what a probe sees of each image
    (the cross-validated probe of `compare --cv` and `doctor --labels`). From the store like any features."""
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
