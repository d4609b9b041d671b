"""Batches for the epoch loop, and what one training stage reads.

- `ImageLoader`: batches of normalized pictures from a decoded split, augmented (RandomResizedCrop + flip) for
  training, the stored centre crops for validation. On a GPU, loader processes make uint8 batches into pinned
  memory beside the GPU (`loader_settings`).
- `tensor_batches`: batches of tensors held in memory (cached features).
- `PictureInputs` and `TensorInputs`: a stage's inputs, each with `train_batches(epoch)` and `val_batches()`: what
  `engine.train_epochs` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from transferlab.data.decoding import DecodedSplit
from transferlab.data.presets import TrainPreset, normalize
from transferlab.utils.parallel import cpu_cores

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class SizedBatches:
    """A one-pass batch iterator that knows how many batches it will yield (for progress bars)."""

    def __init__(self, iterator: Iterator[tuple[torch.Tensor, torch.Tensor]], count: int):
        self.iterator, self.count = iterator, count

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterator

    def __len__(self) -> int:
        return self.count


def loader_settings(device: torch.device, workers: int | None = None) -> dict:
    """DataLoader settings for training batches, chosen from the machine.

    On a GPU: one loader process per spare CPU core (at most 8), pinned memory, workers kept across epochs, so
    cropping runs beside the GPU and copies overlap compute. On the CPU: none of that; the network already uses
    every core, cropping decoded tensors is ~2% of an epoch there, and extra processes would compete for cores.
    """
    if workers is None:
        workers = min(8, max(1, cpu_cores() - 1)) if device.type == "cuda" else 0
    return {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": workers > 0}


class _Pictures(torch.utils.data.Dataset):
    def __init__(self, split: DecodedSplit, input_size: int, augment: bool):
        self.split, self.preset = split, TrainPreset(input_size) if augment else None

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        picture = self.split.images[index]
        return (self.preset(picture) if self.preset else picture), self.split.labels[index]


class _Order(torch.utils.data.Sampler):
    """Yields whatever order it was last given; lets one (persistent) DataLoader serve every epoch."""

    def __init__(self):
        self.order: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class ImageLoader:
    """Batches of normalized pictures from a decoded split, in the order given per epoch: augmented (random
    resized crop + flip) for training, the stored centre crops for evaluation."""

    def __init__(
        self,
        split: DecodedSplit,
        spec,
        batch_size: int,
        device: torch.device,
        augment: bool,
        workers: int | None = None,
        *,
        seed: int = 0,
    ):
        self.spec, self.device, self.batch_size, self.order = spec, device, batch_size, _Order()
        settings = loader_settings(device, workers)
        self.loader = torch.utils.data.DataLoader(
            _Pictures(split, spec.input_size, augment),
            batch_size=batch_size,
            sampler=self.order,
            generator=torch.Generator().manual_seed(seed),
            **settings,
        )

    def batches(self, order: list[int]) -> SizedBatches:
        self.order.order = list(order)
        return SizedBatches(self._batches(), -(-len(order) // self.batch_size))

    def _batches(self):
        for pictures, labels in self.loader:
            pictures = pictures.to(self.device, non_blocking=True)
            yield normalize(pictures, self.spec), labels.to(self.device, non_blocking=True)


def tensor_batches(
    features: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device, order: list[int] | None = None
) -> SizedBatches:
    """Batches of cached feature vectors, in `order` (default: all, in turn)."""
    index = torch.tensor(order if order is not None else range(len(labels)), dtype=torch.long)
    return SizedBatches(_tensor_batches(features, labels, batch_size, device, index), -(-len(index) // batch_size))


def _tensor_batches(features, labels, batch_size, device, order):
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        yield features[index].to(device, non_blocking=True), labels[index].to(device, non_blocking=True)


class StageInputs(Protocol):
    """What one training stage reads: batches for training epoch `epoch`, and the validation batches."""

    def train_batches(self, epoch: int) -> Batches: ...

    def val_batches(self) -> Batches: ...


@dataclass(kw_only=True)
class TensorInputs:
    """Inputs held in memory as tensors: `train` is (views, N, ...), view (epoch - 1) % views is read in epoch
    `epoch`; `order` gives each epoch's training order (default: in turn), `val_share` the validation rows this
    process evaluates (default: all)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    batch_size: int
    device: torch.device
    order: Callable[[], list[int]] | None = None
    val_share: list[int] | None = None

    def train_batches(self, epoch: int) -> SizedBatches:
        order = self.order() if self.order else None
        return tensor_batches(
            self.train[(epoch - 1) % len(self.train)], self.train_labels, self.batch_size, self.device, order
        )

    def val_batches(self) -> SizedBatches:
        return tensor_batches(self.val, self.val_labels, self.batch_size, self.device, self.val_share)


@dataclass(kw_only=True)
class PictureInputs:
    """Inputs made from decoded pictures: augmented training batches in `order()`, validation crops of `val_share`."""

    train: ImageLoader
    val: ImageLoader
    order: Callable[[], list[int]]
    val_share: list[int]

    def train_batches(self, epoch: int) -> SizedBatches:
        return self.train.batches(self.order())

    def val_batches(self) -> SizedBatches:
        return self.val.batches(self.val_share)
