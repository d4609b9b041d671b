"""Train one strategy, or compare several on the same data: the Python API behind the CLI.

The data path reads top to bottom: folder -> samples (`data.load_dataset`) -> pictures decoded once
(`cache.decode_split`) -> for `extract`, pooled features computed once (`cache.extract_features`) -> model
(`model.build_model`) -> epochs (`engine.fit`) -> run directory (`runs`) -> report (`report`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backbones import BackboneSpec, get_spec
from .cache import DecodedSplit, decode_split, extract_features
from .config import TrainConfig, save_json, to_dict
from .data import Dataset, load_dataset
from .doctor import near_duplicate_pairs
from .engine import EpochRecord, fit, image_batches, resolve_device, tensor_batches
from .model import build_model, count_parameters
from .runs import append_metrics, new_run_dir, save_checkpoint, versions

log = logging.getLogger("transferlab")


@dataclass
class PreparedData:
    """A dataset with its pictures decoded once, shareable between runs with the same backbone preprocessing."""

    dataset: Dataset
    spec: BackboneSpec
    train: DecodedSplit
    val: DecodedSplit

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        return self.train.skipped + self.val.skipped


@dataclass
class RunResult:
    run_dir: Path
    strategy: str
    status: str  # "completed" or "interrupted"
    best_epoch: int | None
    best_val_acc: float | None
    epochs: list[EpochRecord] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed every generator; with `deterministic`, also forbid non-deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def prepare_data(config: TrainConfig) -> PreparedData:
    """Find the samples and decode every picture once (train at the resize size, val as centre crops)."""
    data = config.data
    dataset = load_dataset(data.root, data.val_fraction, data.split_seed, data.max_per_class)
    spec = get_spec(config.backbone)
    log.info("data: %s (%s); %d train / %d val images, classes: %s", dataset.root, dataset.layout,
             len(dataset.train), len(dataset.val), ", ".join(dataset.classes))
    train = decode_split(dataset.train, spec.resize_size, None, data.background, config.workers,
                         "decode train", config.quiet)
    val = decode_split(dataset.val, spec.resize_size, spec.input_size, data.background, config.workers,
                       "decode val", config.quiet)
    prepared = PreparedData(dataset, spec, train, val)
    for first, second, kind in duplicate_problems(prepared):
        log.warning("%s: %s = %s (run `transferlab doctor` for a full check)", kind, first, second)
    for split, name in ((train, "train"), (val, "val")):
        if len(split) == 0:
            raise ValueError(f"no readable images left in the {name} split")
        missing = set(range(len(dataset.classes))) - set(split.labels.tolist())
        if missing:
            names = ", ".join(dataset.classes[i] for i in sorted(missing))
            raise ValueError(f"every image of class(es) {names} in the {name} split was unreadable")
    return prepared


def duplicate_problems(prepared: PreparedData) -> list[tuple[Path, Path, str]]:
    """The same picture in train and val ("leakage") or under two classes ("conflicting labels").

    Cheap: the perceptual fingerprints were computed while decoding.
    """
    train, val = prepared.train, prepared.val
    paths, labels = train.paths + val.paths, train.labels.tolist() + val.labels.tolist()
    problems = []
    for i, j in near_duplicate_pairs(train.fingerprints + val.fingerprints):
        if labels[i] != labels[j]:
            problems.append((paths[i], paths[j], "conflicting labels"))
        elif i < len(train) <= j:
            problems.append((paths[i], paths[j], "leakage between train and val"))
    return problems


def train(config: TrainConfig, prepared: PreparedData | None = None) -> RunResult:
    """Train one strategy and write its run directory. Ctrl-C stops it and keeps the best checkpoint so far."""
    seed_everything(config.seed, config.deterministic)
    device = resolve_device(config.device)
    if prepared is None or prepared.spec.name != config.backbone:
        prepared = prepare_data(config)
    dataset, spec = prepared.dataset, prepared.spec
    model, spec, weights_info = build_model(config.backbone, len(dataset.classes), config.strategy, config.weights)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    run_dir = new_run_dir(config.out, config.name, f"{config.strategy}-{config.backbone}")
    save_json({**to_dict(config), "resolved": {
        "device": str(device), "classes": dataset.classes, "layout": dataset.layout, "counts": dataset.counts(),
        "weights": dataclasses.asdict(weights_info), "versions": versions(),
        "skipped_files": [[str(p), reason] for p, reason in prepared.skipped],
        "duplicate_problems": [[str(a), str(b), kind] for a, b, kind in duplicate_problems(prepared)]}},
        run_dir / "config.json")

    recipe, generator = config.recipe, torch.Generator().manual_seed(config.seed)
    feature_seconds = 0.0
    if config.strategy == "extract":
        features = extract_features(model.backbone, spec, prepared.train, prepared.val, config.views,
                                    recipe.batch_size, device, config.quiet)
        feature_seconds = features.seconds
        module = model.head
        views = config.views

        def train_batches(epoch: int):
            return tensor_batches(features.train[(epoch - 1) % views], features.train_labels, recipe.batch_size,
                                  device, shuffle=True, generator=generator)

        def val_batches():
            return tensor_batches(features.val, features.val_labels, recipe.batch_size, device, shuffle=False)
    else:
        module = model

        def train_batches(epoch: int):
            return image_batches(prepared.train, spec, recipe.batch_size, device, augment=True, generator=generator)

        def val_batches():
            return image_batches(prepared.val, spec, recipe.batch_size, device, augment=False)

    parameters = model.trainable_parameters()
    summary = {
        "status": "running", "strategy": config.strategy, "backbone": config.backbone,
        "train_images": len(prepared.train), "val_images": len(prepared.val),
        "skipped_files": len(prepared.skipped), "decode_seconds": prepared.train.seconds + prepared.val.seconds,
        "feature_seconds": feature_seconds, "trainable_params": count_parameters(parameters),
        "total_params": count_parameters(model.parameters()), "best_epoch": None, "best_val_acc": None,
    }
    save_json(summary, run_dir / "summary.json")
    metadata = {
        "backbone": spec.name, "classes": dataset.classes, "strategy": config.strategy,
        "input_size": spec.input_size, "resize_size": spec.resize_size, "mean": list(spec.mean),
        "std": list(spec.std), "background": list(config.data.background),
        "weights": dataclasses.asdict(weights_info), "versions": versions(),
    }
    best = {"epoch": None, "acc": -1.0}
    records: list[EpochRecord] = []

    def on_epoch(record: EpochRecord) -> None:
        records.append(record)
        append_metrics(run_dir, record.as_dict())
        if record.val_acc > best["acc"]:
            best.update(epoch=record.epoch, acc=record.val_acc)
            save_checkpoint(run_dir, model, {**metadata, "best_epoch": record.epoch, "val_acc": record.val_acc})

    status = "completed"
    start = time.perf_counter()
    try:
        fit(module, parameters, train_batches, val_batches, recipe, device, on_epoch, config.quiet,
            desc=config.strategy)
    except KeyboardInterrupt:
        status = "interrupted"
        log.warning("interrupted: %s keeps the best checkpoint so far (epoch %s)", run_dir, best["epoch"])
    summary.update(_timing_summary(records, summary, time.perf_counter() - start))
    summary.update(status=status, best_epoch=best["epoch"], best_val_acc=best["acc"] if best["epoch"] else None)
    save_json(summary, run_dir / "summary.json")
    result = RunResult(run_dir, config.strategy, status, best["epoch"], summary["best_val_acc"], records, summary)
    if status == "interrupted":
        raise TrainingInterrupted(result)
    return result


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; `.result` describes the run directory left behind (best checkpoint kept)."""

    def __init__(self, result: RunResult):
        super().__init__(str(result.run_dir))
        self.result = result


def _timing_summary(records: list[EpochRecord], summary: dict, fit_seconds: float) -> dict:
    data = sum(r.data_seconds for r in records)
    compute = sum(r.compute_seconds for r in records)
    val = sum(r.val_seconds for r in records)
    total = summary["decode_seconds"] + summary["feature_seconds"] + fit_seconds
    return {
        "epochs_completed": len(records), "fit_seconds": fit_seconds, "total_seconds": total,
        "seconds_per_epoch": fit_seconds / len(records) if records else None,
        "data_seconds": data, "compute_seconds": compute, "val_seconds": val,
        # share of the whole run spent producing input (decoding once, then batching) rather than computing
        "data_share": (summary["decode_seconds"] + data) / total if total else None,
    }


@dataclass
class Comparison:
    out_dir: Path
    results: list[RunResult]
    report: Path
    interrupted: bool = False


def compare(config: TrainConfig, strategies: tuple[str, ...] = ("finetune", "extract"), seeds: int = 1,
            evaluate: bool = True) -> Comparison:
    """Train every strategy on the same split, decoded pictures and recipe, `seeds` times each (training seeds
    config.seed, config.seed + 1, ...); evaluate every run; then write the report.

    Each run gets its own folder inside one compare folder. Ctrl-C stops the comparison, keeps every finished
    run and the interrupted run's best checkpoint, and still writes the report.
    """
    from .evaluate import evaluate_decoded
    from .report import write_report

    if seeds < 1:
        raise ValueError("--seeds must be at least 1")
    out_dir = new_run_dir(config.out, config.name, f"compare-{config.backbone}")
    save_json({"strategies": list(strategies), "seeds": seeds, "config": to_dict(config)}, out_dir / "compare.json")
    prepared = prepare_data(config)
    results, interrupted = [], False
    for k in range(seeds):  # seeds outside, strategies inside: an interruption leaves complete pairs
        for strategy in strategies:
            seed = config.seed + k
            name = strategy if seeds == 1 else f"{strategy}-seed{seed}"
            run_config = dataclasses.replace(config, strategy=strategy, seed=seed, out=str(out_dir), name=name)
            try:
                result = train(run_config, prepared)
            except TrainingInterrupted as stop:
                results.append(stop.result)
                interrupted = True
                break
            results.append(result)
            if evaluate:
                evaluate_decoded(result.run_dir, prepared.val, config.device)
        if interrupted:
            break
    report = write_report(out_dir)
    return Comparison(out_dir, results, report, interrupted)
