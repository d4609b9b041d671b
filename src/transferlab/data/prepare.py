"""Prepared data: the samples of a photo folder with every picture decoded once, checked, ready for any run.

`prepare_data` finds the samples (`data.load_dataset`), decodes both splits (`decoding.decode_split`: only photos
the per-photo store has not seen; under torchrun each process its share, shares exchanged) and warns about the same
picture in train and val or under two classes, from the fingerprints taken while decoding (or stored). `compare`
prepares once and hands the result to every run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transferlab.config import TrainConfig
from transferlab.data.decoding import DecodedSplit, decode_split
from transferlab.data.findings import COPY_PROBLEMS, FindingKind
from transferlab.data.fingerprints import near_duplicate_pairs
from transferlab.data.layout import Dataset, load_dataset
from transferlab.data.presets import train_side
from transferlab.errors import DatasetError
from transferlab.models.backbones import BackboneSpec, get_spec
from transferlab.utils.distributed import Dist
from transferlab.utils.machine import keep_freed_memory
from transferlab.utils.parallel import default_workers

log = logging.getLogger("transferlab")


@dataclass(kw_only=True)
class PreparedData:
    """A dataset with its pictures decoded once, shareable between runs with the same backbone preprocessing."""

    dataset: Dataset
    spec: BackboneSpec
    train: DecodedSplit
    val: DecodedSplit
    duplicates: list[tuple[Path, Path, FindingKind]] = field(default_factory=list)  # see duplicate_problems

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        return self.train.skipped + self.val.skipped


def prepare_data(config: TrainConfig, dist: Dist | None = None) -> PreparedData:
    """Find the samples and decode every picture once (train up to `presets.train_side`, val as centre crops).

    Under torchrun each process decodes its share and the shares are exchanged, so all hold every picture.
    """
    dist = dist or Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    keep_freed_memory()
    data = config.data
    dataset = load_dataset(
        data.root, data.val_fraction, data.split_seed, data.max_per_class, quiet=config.quiet or not dist.main
    )
    for group in dataset.excluded:
        log.warning("left out of the split, one picture under two classes: %s", " = ".join(map(str, group)))
    spec = get_spec(config.backbone)
    log.info(
        "data: %s (%s); %d train / %d val images, classes: %s",
        dataset.root,
        dataset.layout,
        len(dataset.train),
        len(dataset.val),
        ", ".join(dataset.classes),
    )
    workers = config.workers if config.workers is not None else max(1, default_workers() // dist.world)
    quiet = config.quiet or not dist.main
    side = data.train_side or train_side(spec)
    keep = "memory" if config.decode_cache == "memory" else "store"  # "auto"/"disk": the store, memory-mapped
    splits = []
    for samples, size, crop, name in (
        (dataset.train, side, None, "train"),
        (dataset.val, spec.resize_size, spec.input_size, "val"),
    ):
        share = [samples[i] for i in dist.shard(len(samples))]
        part = decode_split(share, size, crop, data.background, workers, f"decode {name}", quiet=quiet, keep=keep)
        splits.append(DecodedSplit.merge(dist.gather(part), [s.path for s in samples]) if dist.enabled else part)
    train, val = splits
    prepared = PreparedData(dataset=dataset, spec=spec, train=train, val=val)
    prepared.duplicates = duplicate_problems(prepared)
    for first, second, kind in prepared.duplicates:
        log.warning("%s: %s = %s (run `transferlab doctor` for a full check)", COPY_PROBLEMS[kind], first, second)
    for split, name in ((train, "train"), (val, "val")):
        if len(split) == 0:
            raise DatasetError(f"no readable images left in the {name} split")
        missing = set(range(len(dataset.classes))) - set(split.labels.tolist())
        if missing:
            names = ", ".join(dataset.classes[i] for i in sorted(missing))
            raise DatasetError(f"every image of class(es) {names} in the {name} split was unreadable")
    return prepared


def duplicate_problems(prepared: PreparedData) -> list[tuple[Path, Path, FindingKind]]:
    """The same picture in train and val ("leakage") or under two classes ("conflicting-labels"): the doctor's
    kinds.

    Cheap: the perceptual fingerprints were computed while decoding.
    """
    train, val = prepared.train, prepared.val
    paths, labels = train.paths + val.paths, train.labels.tolist() + val.labels.tolist()
    problems: list[tuple[Path, Path, FindingKind]] = []
    for i, j in near_duplicate_pairs(train.fingerprints + val.fingerprints):
        if labels[i] != labels[j]:
            problems.append((paths[i], paths[j], "conflicting-labels"))
        elif i < len(train) <= j:
            problems.append((paths[i], paths[j], "leakage"))
    return problems
