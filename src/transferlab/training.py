"""Train one strategy, or compare several on the same data: the Python API behind the CLI.

The data path reads top to bottom: folder -> samples (`data.load_dataset`) -> pictures decoded once
(`cache.decode_split`) -> for `extract` (and the first stage of `two-stage`), pooled features computed once or read
from the disk cache (`cache.extract_features`) -> model (`model.build_model`) -> epochs (`engine.fit`), one call per
stage -> run directory (`runs`) -> report (`report`).
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
from .cache import (DecodedSplit, FeatureCache, choose_store, decode_split, estimate_decoded_bytes, extract_features,
                    feature_key, load_features, save_features)
from .config import Recipe, TrainConfig, save_json, to_dict, train_config_from_dict
from .data import Dataset, load_dataset
from .distributed import Dist
from .distributed import setup as setup_distributed
from .doctor import near_duplicate_pairs
from .engine import (EpochRecord, ImageLoader, autocast_dtype, fit, make_optimizer, make_scaler, resolve_device,
                     tensor_batches)
from .machine import keep_freed_memory
from .model import build_model, count_parameters
from .parallel import default_workers
from .presets import train_side
from .runs import (LAST_STATE, append_metrics, load_training_state, new_run_dir, read_json, read_metrics, rng_state,
                   save_checkpoint, save_training_state, set_rng_state, truncate_metrics, versions)

log = logging.getLogger("transferlab")


@dataclass
class PreparedData:
    """A dataset with its pictures decoded once, shareable between runs with the same backbone preprocessing."""

    dataset: Dataset
    spec: BackboneSpec
    train: DecodedSplit
    val: DecodedSplit
    duplicates: list[tuple[Path, Path, str]] = field(default_factory=list)  # see duplicate_problems

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


def prepare_data(config: TrainConfig, dist: Dist | None = None) -> PreparedData:
    """Find the samples and decode every picture once (train up to `presets.train_side`, val as centre crops).

    Under torchrun each process decodes its share and the shares are exchanged, so all hold every picture.
    """
    dist = dist or Dist(0, 1, 0, torch.device("cpu"))
    keep_freed_memory()
    data = config.data
    dataset = load_dataset(data.root, data.val_fraction, data.split_seed, data.max_per_class)
    spec = get_spec(config.backbone)
    log.info("data: %s (%s); %d train / %d val images, classes: %s", dataset.root, dataset.layout,
             len(dataset.train), len(dataset.val), ", ".join(dataset.classes))
    workers = config.workers if config.workers is not None else max(1, default_workers() // dist.world)
    quiet = config.quiet or not dist.main
    side = data.train_side or train_side(spec)
    store = config.decode_cache
    if store == "auto":
        estimate = (estimate_decoded_bytes(dataset.train, side, None)
                    + estimate_decoded_bytes(dataset.val, spec.resize_size, spec.input_size))
        store = choose_store(estimate)
        log.info("decoded pictures: about %.0f MB, kept %s", estimate / 1e6,
                 "in memory" if store == "memory" else "in a memory-mapped file (more than half the free memory)")
    splits = []
    for samples, size, crop, name in ((dataset.train, side, None, "train"),
                                      (dataset.val, spec.resize_size, spec.input_size, "val")):
        share = [samples[i] for i in dist.shard(len(samples))]
        part = decode_split(share, size, crop, data.background, workers, f"decode {name}", quiet, store)
        splits.append(DecodedSplit.merge(dist.gather(part), [s.path for s in samples]) if dist.enabled else part)
    train, val = splits
    prepared = PreparedData(dataset, spec, train, val)
    prepared.duplicates = duplicate_problems(prepared)
    for first, second, kind in prepared.duplicates:
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


def _features(model, prepared: PreparedData, config: TrainConfig, dist: Dist,
              precision: torch.dtype | None) -> FeatureCache:
    """The frozen backbone's features of every picture: from the disk cache when every process has them, else
    computed (each process its share, shares exchanged) and cached."""
    if not config.feature_cache:
        return _sharded_features(model, prepared, config, dist, precision)
    key = feature_key(model.backbone, prepared.spec, prepared.train, prepared.val, config.views, precision)
    cached = load_features(key, prepared.train, prepared.val)
    if all(dist.gather(cached is not None)):
        log.info("features: read from the cache (%s...)", key[:12])
        return cached
    features = _sharded_features(model, prepared, config, dist, precision)
    save_features(key, features)  # every process writes (atomically): on several machines, each has its own cache
    return features


def _sharded_features(model, prepared: PreparedData, config: TrainConfig, dist: Dist,
                      precision: torch.dtype | None) -> FeatureCache:
    """The frozen backbone over this process's share of the pictures; shares exchanged so all hold every vector."""
    spec = prepared.spec
    train_idx, val_idx = dist.shard(len(prepared.train)), dist.shard(len(prepared.val))
    part = extract_features(model.backbone, spec, prepared.train.subset(train_idx), prepared.val.subset(val_idx),
                            config.views, config.recipe.batch_size, dist.device, config.quiet or not dist.main,
                            precision, train_index=train_idx)
    if not dist.enabled:
        return part
    parts = dist.gather((train_idx, val_idx, part.train, part.val, part.seconds))
    train = torch.empty(config.views, len(prepared.train), parts[0][2].shape[-1])
    val = torch.empty(len(prepared.val), parts[0][3].shape[-1])
    for t_idx, v_idx, t_feat, v_feat, _ in parts:
        train[:, t_idx] = t_feat
        val[v_idx] = v_feat
    return FeatureCache(train, prepared.train.labels, val, prepared.val.labels, max(p[4] for p in parts))


@dataclass(frozen=True)
class Stage:
    """A stretch of epochs (numbered over the whole run) that trains one part of the model on one kind of input:
    "head" trains the head on cached features, "finetune" trains the whole network on pictures."""

    name: str
    first: int
    last: int

    @property
    def epochs(self) -> int:
        return self.last - self.first + 1


def plan_stages(strategy: str, recipe: Recipe) -> list[Stage]:
    """finetune: all epochs on pictures; extract: all on features; two-stage: `head_epochs` on features, then
    `epochs` on pictures."""
    if strategy == "finetune":
        return [Stage("finetune", 1, recipe.epochs)]
    if strategy == "extract":
        return [Stage("head", 1, recipe.epochs)]
    stages = [Stage("head", 1, recipe.head_epochs),
              Stage("finetune", recipe.head_epochs + 1, recipe.head_epochs + recipe.epochs)]
    return [stage for stage in stages if stage.epochs > 0]


def resume(run_dir: str | Path) -> RunResult:
    """Continue an interrupted or killed run from its last completed epoch, with its saved configuration."""
    run_dir = Path(run_dir)
    if not (run_dir / LAST_STATE).exists():
        raise FileNotFoundError(f"{run_dir}: no {LAST_STATE} to resume from (no epoch finished yet?)")
    saved = read_json(run_dir / "config.json")
    saved.pop("resolved", None)
    return train(train_config_from_dict(saved), resume_dir=run_dir)


def train(config: TrainConfig, prepared: PreparedData | None = None, resume_dir: Path | None = None) -> RunResult:
    """Train one strategy and write its run directory. Ctrl-C stops it and keeps the best checkpoint so far.

    Launched by torchrun, the processes share the work (DistributedDataParallel); rank 0 alone writes.
    """
    dist = setup_distributed(resolve_device(config.device))
    device = dist.device
    if not dist.main:
        log.setLevel(logging.ERROR)
    quiet = config.quiet or not dist.main
    if prepared is None or prepared.spec.name != config.backbone:
        prepared = prepare_data(config, dist)
    # Seed after preparing the data (starting decode workers draws from the global generator), so a run on its
    # own and the same run inside `compare` start from the same random state.
    seed_everything(config.seed, config.deterministic)
    dataset, spec = prepared.dataset, prepared.spec
    model, spec, weights_info = build_model(config.backbone, len(dataset.classes), config.strategy, config.weights)
    model.to(device)
    if resume_dir is not None:
        run_dir = Path(resume_dir)
    else:
        run_dir = dist.broadcast(str(new_run_dir(config.out, config.name, f"{config.strategy}-{config.backbone}"))
                                 if dist.main else None)
        run_dir = Path(run_dir)
        if dist.main:
            save_json({**to_dict(config), "resolved": {
                "device": str(device), "processes": dist.world, "classes": dataset.classes, "layout": dataset.layout,
                "counts": dataset.counts(), "weights": dataclasses.asdict(weights_info), "versions": versions(),
                "skipped_files": [[str(p), reason] for p, reason in prepared.skipped],
                "duplicate_problems": [[str(a), str(b), kind] for a, b, kind in prepared.duplicates]}},
                run_dir / "config.json")

    recipe = config.recipe
    stages = plan_stages(config.strategy, recipe)
    precision = autocast_dtype(config.precision, device)
    scaler = make_scaler(device, precision)
    generator = torch.Generator().manual_seed(config.seed)  # the same on every rank: the same permutation
    val_share = dist.shard(len(prepared.val))
    summary = {
        "status": "running", "strategy": config.strategy, "backbone": config.backbone, "processes": dist.world,
        "train_images": len(prepared.train), "val_images": len(prepared.val),
        "skipped_files": len(prepared.skipped), "decode_seconds": prepared.train.seconds + prepared.val.seconds,
        "feature_seconds": 0.0,
        "trainable_params": count_parameters(model.parameters() if stages[-1].name == "finetune"
                                             else model.trainable_parameters()),
        "total_params": count_parameters(model.parameters()), "best_epoch": None, "best_val_acc": None,
        "precision": str(precision).replace("torch.", "") if precision else "float32",
    }
    metadata = {
        "backbone": spec.name, "classes": dataset.classes, "strategy": config.strategy,
        "input_size": spec.input_size, "resize_size": spec.resize_size, "mean": list(spec.mean),
        "std": list(spec.std), "background": list(config.data.background),
        "weights": dataclasses.asdict(weights_info), "versions": versions(),
    }
    best = {"epoch": None, "acc": -1.0}
    records: list[EpochRecord] = []
    state, done = None, 0
    if resume_dir is not None:
        state = load_training_state(run_dir)
        done, best = state["epoch"], state["best"]
        model.load_state_dict(state["model"])
        rngs = state["rng"]
        set_rng_state(rngs[dist.rank] if dist.rank < len(rngs) else rngs[0], generator)
        records = [EpochRecord(**r) for r in read_metrics(run_dir)[:done]]
        if dist.main:
            truncate_metrics(run_dir, done)
            summary.update(read_json(run_dir / "summary.json"), status="running")
        log.info("resuming %s after epoch %d", run_dir, done)
    if dist.main:
        save_json(summary, run_dir / "summary.json")

    def train_order() -> list[int]:
        return torch.randperm(len(prepared.train), generator=generator)[dist.rank::dist.world].tolist()

    status = "completed"
    start, feature_seconds = time.perf_counter(), 0.0
    try:
        for stage in stages:
            if stage.last <= done:
                continue
            if stage.name == "head":
                features = _features(model, prepared, config, dist, precision)
                feature_seconds += features.seconds
                summary["feature_seconds"] += features.seconds
                summary["features_from_cache"] = features.from_cache
                trained, parameters = model.head, model.trainable_parameters()

                def train_batches(epoch: int, features=features):
                    return tensor_batches(features.train[(epoch - 1) % config.views], features.train_labels,
                                          recipe.batch_size, device, train_order())

                def val_batches(features=features):
                    return tensor_batches(features.val, features.val_labels, recipe.batch_size, device, val_share)
            else:
                if model.frozen:  # two-stage: the head has learned on features; now everything trains
                    model.unfreeze_backbone()
                trained = model
                parameters = (model.parameter_groups(recipe.lr, recipe.backbone_lr_scale)
                              if config.strategy == "two-stage" else model.trainable_parameters())
                train_loader = ImageLoader(prepared.train, spec, recipe.batch_size, device, augment=True,
                                           workers=config.loader_workers, seed=config.seed)
                val_loader = ImageLoader(prepared.val, spec, recipe.batch_size, device, augment=False,
                                         workers=config.loader_workers)

                def train_batches(epoch: int, loader=train_loader):
                    return loader.batches(train_order())

                def val_batches(loader=val_loader):
                    return loader.batches(val_share)
            optimizer, scheduler = make_optimizer(parameters, recipe, stage.epochs)
            if state is not None and stage.first <= done and state.get("stage", stage.name) == stage.name:
                optimizer.load_state_dict(state["optimizer"])  # resuming inside this stage
                scheduler.load_state_dict(state["scheduler"])
                if state.get("scaler"):
                    scaler.load_state_dict(state["scaler"])
            module = _wrap_ddp(trained, dist)
            if config.compile and stage.name == "finetune":
                module = torch.compile(module)
            on_epoch = _epoch_writer(run_dir, model, optimizer, scheduler, scaler, generator, best, records,
                                     metadata, dist, stage.name)
            fit(module, optimizer, scheduler, train_batches, val_batches, stage.last, device, on_epoch, quiet,
                desc=f"{config.strategy} ({stage.name})" if len(stages) > 1 else config.strategy,
                start_epoch=max(stage.first, done + 1), reduce=dist.reduce_sums,
                eval_module=trained if dist.enabled else module, label_smoothing=recipe.label_smoothing,
                patience=recipe.patience, precision=precision, scaler=scaler, stage=stage.name)
    except KeyboardInterrupt:
        status = "interrupted"
        log.warning("interrupted: %s keeps the best checkpoint so far (epoch %s)", run_dir, best["epoch"])
    fit_seconds = time.perf_counter() - start - feature_seconds + (summary.get("fit_seconds") or 0.0)
    summary.update(_timing_summary(records, summary, fit_seconds))
    summary.update(status=status, best_epoch=best["epoch"], best_val_acc=best["acc"] if best["epoch"] else None)
    if dist.main:
        save_json(summary, run_dir / "summary.json")
    result = RunResult(run_dir, config.strategy, status, best["epoch"], summary["best_val_acc"], records, summary)
    if status == "interrupted":
        raise TrainingInterrupted(result)
    return result


def _epoch_writer(run_dir: Path, model, optimizer, scheduler, scaler, generator, best: dict,
                  records: list[EpochRecord], metadata: dict, dist: Dist, stage: str):
    """The callback run after every epoch: metrics line, best weights, resume state."""

    def on_epoch(record: EpochRecord) -> None:
        # Order matters for a Ctrl-C or kill at any point: metrics line, then best weights, then `best`, then the
        # resume state; each file is replaced atomically, and `best` never names weights that were not written.
        improved = record.val_acc > best["acc"]
        rng = dist.gather(rng_state(generator))
        if dist.main:
            append_metrics(run_dir, record.as_dict())
            if improved:
                save_checkpoint(run_dir, model, {**metadata, "best_epoch": record.epoch, "val_acc": record.val_acc})
        records.append(record)
        if improved:
            best.update(epoch=record.epoch, acc=record.val_acc)
        if dist.main:
            save_training_state(run_dir, record.epoch, model, optimizer, scheduler, rng, best, scaler, stage)
        dist.barrier()

    return on_epoch


def _wrap_ddp(module: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    if not dist.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


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
    dist = setup_distributed(resolve_device(config.device))
    out_dir = Path(dist.broadcast(str(new_run_dir(config.out, config.name, f"compare-{config.backbone}"))
                                  if dist.main else None))
    if dist.main:
        save_json({"strategies": list(strategies), "seeds": seeds, "config": to_dict(config)},
                  out_dir / "compare.json")
    prepared = prepare_data(config, dist)
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
            if evaluate and dist.main:
                evaluate_decoded(result.run_dir, prepared.val, config.device)
        if interrupted:
            break
    report = write_report(out_dir) if dist.main else out_dir / "report.md"
    dist.barrier()
    return Comparison(out_dir, results, report, interrupted)
