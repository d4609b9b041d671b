"""Train one strategy: the Python API behind `transferlab train`.

`train` reads top to bottom like torchvision's reference script: prepare the data (`prepare.prepare_data`), seed,
build the model (`model.build_model`), open the run folder (new, or resumed from `last.pt`), then for each stage
of the strategy (`plan_stages`): its inputs (cached features from `features`, or decoded pictures through
`loaders`) -> its optimizer -> `engine.fit`, with a `runs.CheckpointSaver` writing after every epoch. Ctrl-C stops
it and keeps the best checkpoint so far. Launched by torchrun, the processes share the work (`distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .backbones import resolve_backbone
from .config import Recipe, TrainConfig, to_dict
from .data import check_out_folder
from .distributed import Dist
from .distributed import setup as setup_distributed
from .engine import (EpochRecord, TrainStep, autocast_dtype, fit, make_optimizer, make_scaler, resolve_device,
                     seed_everything)
from .features import features_for
from .loaders import ImageLoader, PictureInputs, StageInputs, TensorInputs
from .model import TransferModel, build_model, check_weights, count_parameters
from .prepare import PreparedData, prepare_data
from .probe import fit_head
from .runs import (CheckpointSaver, RunSummary, load_training_state, new_run_dir, read_metrics,
                   read_summary, set_rng_state, truncate_metrics, versions, write_summary)
from .storage import save_json
from .weights import WeightsInfo

log = logging.getLogger("transferlab")


@dataclass
class RunResult:
    run_dir: Path
    strategy: str
    status: str  # "completed" or "interrupted"
    best_epoch: int | None
    best_val_acc: float | None
    epochs: list[EpochRecord] = field(default_factory=list)
    summary: RunSummary | None = None
    already_finished: bool = False  # `resume` found nothing left to do


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; `.result` describes the run directory left behind (best checkpoint kept)."""

    def __init__(self, result: RunResult):
        super().__init__(str(result.run_dir))
        self.result = result


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
    `epochs` on pictures. With the recipe's "probe" head solver, the head is fitted in one step ("probe", one
    epoch) instead of trained on features by epochs."""
    if strategy == "finetune":
        return [Stage("finetune", 1, recipe.epochs)]
    head = Stage("probe", 1, 1) if recipe.head_solver == "probe" else Stage("head", 1, recipe.head_epochs)
    if strategy == "extract":
        return [head] if head.name == "probe" else [Stage("head", 1, recipe.epochs)]
    stages = [head, Stage("finetune", head.last + 1, head.last + recipe.epochs)]
    return [stage for stage in stages if stage.epochs > 0]


def train(config: TrainConfig, prepared: PreparedData | None = None, resume_dir: Path | None = None,
          deadline: float | None = None) -> RunResult:
    """Train one strategy and write its run directory. Ctrl-C stops it and keeps the best checkpoint so far;
    with `deadline` (a time.monotonic() value), no epoch starts that would end past it, judged by the last one."""
    dist = setup_distributed(resolve_device(config.device))
    if not dist.main:
        log.setLevel(logging.ERROR)
    config = _resolved(config, check_out=prepared is None and resume_dir is None)
    if prepared is None or prepared.spec.name != config.backbone:
        check_weights(config.backbone, config.weights)  # before any photo is decoded
        prepared = prepare_data(config, dist)
    # Seed after preparing the data (starting decode workers draws from the global generator), so a run on its
    # own and the same run inside `compare` start from the same random state.
    seed_everything(config.seed, config.deterministic)
    model, _, weights_info = build_model(config.backbone, len(prepared.dataset.classes), config.strategy,
                                         config.weights)
    model.to(dist.device)
    recipe, stages = config.recipe, plan_stages(config.strategy, config.recipe)
    precision = autocast_dtype(config.precision, dist.device)
    scaler = make_scaler(dist.device, precision)
    generator = torch.Generator().manual_seed(config.seed)  # the same on every rank: the same permutation
    run = open_run(config, prepared, model, weights_info, stages, precision, dist, generator, resume_dir)
    run.saver.deadline = deadline

    def order() -> list[int]:  # each epoch: this process's share of one shuffled permutation
        return torch.randperm(len(prepared.train), generator=generator)[dist.rank::dist.world].tolist()

    status, start, features_before = "completed", time.perf_counter(), run.summary.feature_seconds
    try:
        for stage in stages:
            if stage.last <= run.done or run.stopped_early(stage):
                continue
            if stage.name == "probe":
                run.saver.begin_stage(stage.name, None, None, None, None)
                run.saver(probe_stage(model, prepared, config, dist, precision, run.summary))
                continue
            inputs, trained, parameters = stage_inputs(stage, model, prepared, config, dist, precision, order,
                                                       run.summary)
            optimizer, scheduler = make_optimizer(parameters, recipe, stage.epochs)
            run.restore_optimizer(stage, optimizer, scheduler, scaler)
            run.saver.begin_stage(stage.name, optimizer, scheduler, scaler, recipe.patience)
            run.restore_stopping(stage)
            module = _wrap(trained, config, stage, dist)
            step = TrainStep(optimizer, scheduler, nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
                             precision, scaler)
            fit(module, step, inputs, range(max(stage.first, run.done + 1), stage.last + 1), dist.device,
                run.saver, eval_module=trained if dist.enabled else module, reduce=dist.reduce_sums,
                desc=f"{config.strategy} ({stage.name})" if len(stages) > 1 else config.strategy,
                quiet=config.quiet or not dist.main, stage=stage.name)
    except KeyboardInterrupt:
        status = "interrupted"
        log.warning("interrupted: %s keeps the best checkpoint so far (epoch %s)", run.dir, run.saver.best["epoch"])
    feature_seconds = run.summary.feature_seconds - features_before
    epoch_seconds = time.perf_counter() - start - feature_seconds
    if status == "completed" and dist.main and run.saver.best["epoch"]:
        status = _fit_unknown(run, prepared, config, model, precision, dist)
    return run.finish(config.strategy, status, epoch_seconds, dist)


def _resolved(config: TrainConfig, check_out: bool) -> TrainConfig:
    """The config with its backbone resolved (`auto` -> a name, for config.json); a run of its own also has its
    output folder checked (not inside the photo folder)."""
    if check_out:
        check_out_folder(config.out, config.data.root)
    backbone, why = resolve_backbone(config.backbone, config.weights)
    if backbone == config.backbone:
        return config
    log.info("%s", why)
    return dataclasses.replace(config, backbone=backbone)


def _fit_unknown(run: OpenRun, prepared: PreparedData, config: TrainConfig, model: TransferModel,
                 precision: torch.dtype | None, dist: Dist) -> str:
    """The run's "unknown" detector (`unknown.fit_for_run`), by rank 0; Ctrl-C skips it."""
    from .unknown import fit_for_run

    start = time.perf_counter()
    try:
        detector = fit_for_run(run.dir, prepared, config, model.backbone, precision, dist.device)
    except KeyboardInterrupt:
        log.warning("interrupted while fitting the 'unknown' threshold: predict will answer a class for every photo")
        return "interrupted"
    summary = run.summary
    summary.unknown_threshold, summary.unknown_known_rejected = detector.threshold, detector.known_rejected
    summary.unknown_seconds = time.perf_counter() - start
    log.info("unknown: photos farther than %.3f from the training photos are answered 'unknown' (turns away "
             "about %.0f%% of known photos, cross-validated on val; %.0f s)", detector.threshold,
             100 * detector.known_rejected, summary.unknown_seconds)
    return "completed"


def probe_stage(model: TransferModel, prepared: PreparedData, config: TrainConfig, dist: Dist,
                precision: torch.dtype | None, summary: RunSummary) -> EpochRecord:
    """The "probe" stage: frozen features (centre crops and/or views), then the head fitted by cross-validated
    logistic regression (`probe.fit_head`); its one record."""
    recipe = config.recipe
    views = config.views if recipe.probe_features in ("views", "both") else 0
    features = features_for(model.backbone, prepared.spec, prepared.train, prepared.val, views, recipe.batch_size,
                            precision, dist, config.feature_cache, config.quiet,
                            centre=recipe.probe_features in ("centre", "both"))
    summary.add_features(features)
    record, probe = fit_head(model.head[-1], features, recipe.probe_features, seed=config.seed)
    summary.probe_C, summary.probe_cv_accuracy = probe.C, probe.cv_accuracy
    log.info("probe: C=%g chosen by %d-fold cross-validation (%.1f%% there); val accuracy %.1f%%", probe.C,
             probe.folds, 100 * probe.cv_accuracy, 100 * record.val_acc)
    return record


def stage_inputs(stage: Stage, model: TransferModel, prepared: PreparedData, config: TrainConfig, dist: Dist,
                 precision: torch.dtype | None, order, summary: RunSummary
                 ) -> tuple[StageInputs, nn.Module, list]:
    """(inputs, the module that trains, its parameters or parameter groups) for `stage`.

    "head": the frozen backbone's features (computed once or read from the cache) and the head alone.
    "finetune": decoded pictures, augmented each epoch, and the whole network (two-stage: the backbone at
    `backbone_lr_scale` x the head's learning rate).
    """
    recipe, val_share = config.recipe, dist.shard(len(prepared.val))
    if stage.name == "head":
        features = features_for(model.backbone, prepared.spec, prepared.train, prepared.val, config.views,
                                recipe.batch_size, precision, dist, config.feature_cache, config.quiet)
        summary.add_features(features)
        inputs = TensorInputs(features.train, features.train_labels, features.val, features.val_labels,
                              recipe.batch_size, dist.device, order, val_share)
        return inputs, model.head, model.trainable_parameters()
    if model.frozen:  # two-stage: the head has learned on features; now everything trains
        model.unfreeze_backbone()
    parameters = (model.parameter_groups(recipe.lr, recipe.backbone_lr_scale) if config.strategy == "two-stage"
                  else model.trainable_parameters())
    train_loader = ImageLoader(prepared.train, prepared.spec, recipe.batch_size, dist.device, augment=True,
                               workers=config.loader_workers, seed=config.seed)
    val_loader = ImageLoader(prepared.val, prepared.spec, recipe.batch_size, dist.device, augment=False,
                             workers=config.loader_workers)
    return PictureInputs(train_loader, val_loader, order, val_share), model, parameters


def _wrap(module: nn.Module, config: TrainConfig, stage: Stage, dist: Dist) -> nn.Module:
    """DistributedDataParallel under torchrun; torch.compile for fine-tuning stages with --compile."""
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [dist.device.index] if dist.device.type == "cuda" else None
        module = DistributedDataParallel(module, device_ids=device_ids)
    if config.compile and stage.name == "finetune":
        module = torch.compile(module)
    return module


@dataclass
class OpenRun:
    """A run folder being trained: its summary, its checkpoint saver, and what a resumed run had done already."""

    dir: Path
    summary: RunSummary
    saver: CheckpointSaver
    done: int = 0  # epochs completed before this process started
    state: dict | None = None  # the saved training state, when resuming
    extending: bool = False  # resuming a run that had finished, with more epochs

    def restore_optimizer(self, stage: Stage, optimizer, scheduler, scaler) -> None:
        """Resuming inside `stage`: put back its optimizer, schedule and scaler states."""
        state = self.state
        if state is not None and stage.first <= self.done and state.get("stage", stage.name) == stage.name:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])

    def stopped_early(self, stage: Stage) -> bool:
        """Killed right after `stage` stopped early: the rest of that stage is not trained after all."""
        saved = (self.state or {}).get("stopping") or {}
        return bool(saved.get("stopped")) and not self.extending and self.state.get("stage") == stage.name

    def restore_stopping(self, stage: Stage) -> None:
        """Resuming inside `stage`: the early-stopping count goes on where it was (not when extending a finished
        run: more epochs were asked for)."""
        saved = (self.state or {}).get("stopping")
        if saved and not self.extending and self.state.get("stage") == stage.name and stage.first <= self.done:
            self.saver.stopping.load(saved)

    def finish(self, strategy: str, status: str, epoch_seconds: float, dist: Dist) -> RunResult:
        """Write the final summary; raise TrainingInterrupted after Ctrl-C (the run folder stays usable)."""
        best = self.saver.best
        self.summary.add_timings(self.saver.records, epoch_seconds + self.summary.fit_seconds)
        self.summary.status, self.summary.best_epoch = status, best["epoch"]
        self.summary.best_val_acc = best["acc"] if best["epoch"] else None
        if dist.main:
            write_summary(self.dir, self.summary)
        result = RunResult(self.dir, strategy, status, best["epoch"], self.summary.best_val_acc, self.saver.records,
                           self.summary)
        if status == "interrupted":
            raise TrainingInterrupted(result)
        return result


def open_run(config: TrainConfig, prepared: PreparedData, model: TransferModel, weights_info: WeightsInfo,
             stages: list[Stage], precision: torch.dtype | None, dist: Dist, generator: torch.Generator,
             resume_dir: Path | None) -> OpenRun:
    """A new run folder (config.json written), or the folder of a run to resume with its state loaded back."""
    spec, dataset = prepared.spec, prepared.dataset
    metadata = {
        "backbone": spec.name, "classes": dataset.classes, "strategy": config.strategy,
        "input_size": spec.input_size, "resize_size": spec.resize_size, "mean": list(spec.mean),
        "std": list(spec.std), "background": list(config.data.background),
        "weights": dataclasses.asdict(weights_info), "versions": versions(),
    }
    if resume_dir is None:
        run_dir = _new_run_dir(config, prepared, weights_info, dist)
        trainable = model.parameters() if stages[-1].name == "finetune" else model.trainable_parameters()
        summary = RunSummary(
            "running", config.strategy, config.backbone, dist.world, len(prepared.train), len(prepared.val),
            len(prepared.skipped), prepared.train.seconds + prepared.val.seconds,
            trainable_params=count_parameters(trainable), total_params=count_parameters(model.parameters()),
            precision=str(precision).replace("torch.", "") if precision else "float32")
        run = OpenRun(run_dir, summary, CheckpointSaver(run_dir, model, metadata, dist, generator))
    else:
        run = _reopen(Path(resume_dir), model, metadata, dist, generator)
    if dist.main:
        write_summary(run.dir, run.summary)
    return run


def _new_run_dir(config: TrainConfig, prepared: PreparedData, weights_info: WeightsInfo, dist: Dist) -> Path:
    """Create the run folder (rank 0; its name sent to the others) and write config.json into it."""
    run_dir = Path(dist.broadcast(str(new_run_dir(config.out, config.name, f"{config.strategy}-{config.backbone}"))
                                  if dist.main else None))
    if dist.main:
        dataset = prepared.dataset
        save_json({**to_dict(config), "resolved": {
            "device": str(dist.device), "processes": dist.world, "classes": dataset.classes,
            "data_root": str(Path(config.data.root).resolve()),
            "layout": dataset.layout, "counts": dataset.counts(), "weights": dataclasses.asdict(weights_info),
            "versions": versions(), "skipped_files": [[str(p), reason] for p, reason in prepared.skipped],
            "duplicate_problems": [[str(a), str(b), kind] for a, b, kind in prepared.duplicates]}},
            run_dir / "config.json")
    return run_dir


def _reopen(run_dir: Path, model: TransferModel, metadata: dict, dist: Dist, generator: torch.Generator) -> OpenRun:
    """Load a run's last.pt back: weights, random states, best-so-far, the epochs' records, the summary."""
    state = load_training_state(run_dir)
    done = state["epoch"]
    model.load_state_dict(state["model"])
    rngs = state["rng"]
    set_rng_state(rngs[dist.rank] if dist.rank < len(rngs) else rngs[0], generator)
    records = [EpochRecord(**r) for r in read_metrics(run_dir)[:done]]
    summary = read_summary(run_dir)
    extending = summary.status == "completed"  # `resume` lets a finished run through only with more epochs
    summary.status = "running"
    if dist.main:
        truncate_metrics(run_dir, done)
    log.info("resuming %s after epoch %d", run_dir, done)
    saver = CheckpointSaver(run_dir, model, metadata, dist, generator, state["best"], records)
    return OpenRun(run_dir, summary, saver, done, state, extending)
