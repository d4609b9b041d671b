"""Cached tensors: every photo decoded once, and (for `extract`) the frozen backbone run once per view.

The reference project decoded, resized and (for feature extraction) pushed every image through the frozen
backbone again in every epoch; that is why its feature extraction was barely faster than fine-tuning. Here:
- `decode_split` decodes each file once, in parallel worker processes, to a uint8 tensor (short side = the
  backbone's resize size; validation images are stored already centre-cropped). Unreadable files are skipped
  with a warning naming them, and listed in the result.
- `extract_features` runs the frozen backbone once over K augmented views of the training images and once over
  the validation images; the head then trains on those pooled features.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .backbones import BackboneSpec
from .data import Sample
from .doctor import Fingerprint, fingerprint
from .images import UnreadableImage, load_rgb
from .parallel import parallel_map
from .presets import TrainPreset, decoded_view, eval_view, normalize

log = logging.getLogger("transferlab")


@dataclass
class DecodedSplit:
    """One split's pictures decoded once: uint8 (3, H, W) tensors with their labels, paths and fingerprints."""

    images: list[torch.Tensor]
    labels: torch.Tensor
    paths: list[Path]
    fingerprints: list[Fingerprint] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: list[int]) -> "DecodedSplit":
        """The pictures at `indices` (timings and skipped files stay with the whole split)."""
        return DecodedSplit([self.images[i] for i in indices], self.labels[indices], [self.paths[i] for i in indices],
                            [self.fingerprints[i] for i in indices] if self.fingerprints else [])

    @staticmethod
    def merge(parts: list["DecodedSplit"], order: list[Path]) -> "DecodedSplit":
        """Put shards decoded by different processes back together in `order` (the original sample order)."""
        by_path = {path: (part, i) for part in parts for i, path in enumerate(part.paths)}
        kept = [path for path in order if path in by_path]
        pick = [by_path[path] for path in kept]
        return DecodedSplit(
            images=[part.images[i] for part, i in pick],
            labels=torch.stack([part.labels[i] for part, i in pick]) if pick else torch.zeros(0, dtype=torch.long),
            paths=kept, fingerprints=[part.fingerprints[i] for part, i in pick],
            skipped=[s for part in parts for s in part.skipped], seconds=max(p.seconds for p in parts))


class Decode:
    """Decode one file for a worker process: (uint8 array or the reason it failed, perceptual fingerprint or None).

    The decoded view has short side `resize_size`; with `crop`, it is the evaluation centre crop instead.
    """

    def __init__(self, resize_size: int, crop: int | None, background: tuple[int, int, int],
                 fingerprints: bool = True):
        self.resize_size, self.crop, self.background, self.fingerprints = resize_size, crop, background, fingerprints

    def __call__(self, path: Path) -> tuple[np.ndarray | str, Fingerprint | None]:
        try:
            picture = load_rgb(path, self.background, min_side=self.resize_size)
        except UnreadableImage as error:
            return str(error), None
        tensor = decoded_view(picture, self.resize_size)
        if self.crop:
            tensor = eval_view(tensor, self.crop)
        return tensor.numpy(), fingerprint(picture) if self.fingerprints else None


def decode_split(
    samples: list[Sample],
    resize_size: int,
    crop: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    workers: int | None = None,
    desc: str = "decode",
    quiet: bool = False,
) -> DecodedSplit:
    """Decode every sample once (in parallel); with `crop`, store the evaluation centre crop instead."""
    start = time.perf_counter()
    results = parallel_map(Decode(resize_size, crop, background), [s.path for s in samples], workers, desc, quiet)
    kept, skipped = [], []
    for sample, (result, _) in zip(samples, results):
        if isinstance(result, str):
            log.warning("skipped %s: %s", sample.path, result)
            skipped.append((sample.path, result))
        else:
            kept.append(sample)
    decoded = [(torch.from_numpy(r), fp) for r, fp in results if not isinstance(r, str)]
    return DecodedSplit(
        images=[image for image, _ in decoded],
        labels=torch.tensor([s.label for s in kept], dtype=torch.long),
        paths=[s.path for s in kept],
        fingerprints=[fp for _, fp in decoded],
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )


@dataclass
class FeatureCache:
    """Pooled backbone features: `train` is (views, N, D), `val` is (N, D)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    seconds: float


@torch.inference_mode()
def extract_features(
    backbone: nn.Module,
    spec: BackboneSpec,
    train: DecodedSplit,
    val: DecodedSplit,
    views: int,
    batch_size: int,
    device: torch.device,
    quiet: bool = False,
) -> FeatureCache:
    """Run the frozen backbone (in eval mode) once over `views` augmented views of train and once over val."""
    start = time.perf_counter()
    was_training = backbone.training
    backbone.eval()
    preset = TrainPreset(spec.input_size)
    bar = tqdm(total=views * len(train) + len(val), desc="features", unit="img", disable=quiet, leave=False)

    def run(pictures: list[torch.Tensor], augment: bool) -> torch.Tensor:
        out = []
        for i in range(0, len(pictures), batch_size):
            chunk = pictures[i:i + batch_size]
            batch = torch.stack([preset(p) for p in chunk] if augment else chunk).to(device, non_blocking=True)
            out.append(backbone(normalize(batch, spec)).float().cpu())
            bar.update(len(chunk))
        return torch.cat(out)

    train_features = torch.stack([run(train.images, augment=True) for _ in range(views)])
    val_features = run(val.images, augment=False)
    bar.close()
    backbone.train(was_training)
    return FeatureCache(train_features, train.labels, val_features, val.labels, time.perf_counter() - start)
