"""Train one strategy: the Python API behind `transferlab train`.

`train` reads top to bottom like torchvision's reference script: prepare the data (`prepare.prepare_data`), seed,
build the model (`model.build_model`), open the run folder (new, or resumed from `last.pt`), then for each stage
of the strategy (`plan_stages`): its inputs (cached features from `features`, or decoded pictures through
`loaders`) -> its optimizer -> `engine.train_epochs`, with a `checkpoint.CheckpointSaver` writing after every
epoch. Ctrl-C stops it and keeps the best checkpoint so far. Launched by torchrun, the processes share the work
(`distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch
from torch import nn

from transferlab.config import TrainConfig
from transferlab.data.layout import check_out_folder
from transferlab.data.prepare import PreparedData, prepare_data
from transferlab.models.backbones import resolve_backbone
from transferlab.models.model import TransferModel, build_model, check_weights
from transferlab.runs import (
    Status,
)
from transferlab.training.engine import (
    TrainStep,
    autocast_dtype,
    make_optimizer,
    make_scaler,
    seed_everything,
    train_epochs,
)
from transferlab.training.run_folder import OpenRun, RunResult, TrainingInterrupted, open_run
from transferlab.training.stages import Stage, StageSetup, plan_stages, probe_stage, stage_inputs, wrap
from transferlab.utils.device import resolve_device
from transferlab.utils.distributed import Dist
from transferlab.utils.distributed import setup as setup_distributed

__all__ = ["RunResult", "Stage", "TrainingInterrupted", "plan_stages", "train"]

log = logging.getLogger("transferlab")


def train(
    config: TrainConfig,
    prepared: PreparedData | None = None,
    resume_dir: Path | None = None,
    deadline: float | None = None,
) -> RunResult:
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
    classes = len(prepared.dataset.classes)
    model, _, weights_info = build_model(config.backbone, classes, config.strategy, config.weights)
    model.to(dist.device)
    stages = plan_stages(config.strategy, config.recipe)
    precision = autocast_dtype(config.precision, dist.device)
    scaler = make_scaler(dist.device, precision)
    generator = torch.Generator().manual_seed(config.seed)  # the same on every rank: the same permutation
    run = open_run(config, prepared, model, weights_info, stages, precision,
                   dist=dist, generator=generator, resume_dir=resume_dir)  # fmt: skip
    run.saver.deadline = deadline

    def order() -> list[int]:  # each epoch: this process's share of one shuffled permutation
        return torch.randperm(len(prepared.train), generator=generator)[dist.rank :: dist.world].tolist()

    status: Status = "completed"
    start, features_before = time.perf_counter(), run.summary.feature_seconds
    try:
        for stage in stages:
            if stage.last <= run.done or run.stopped_early(stage):
                continue
            if stage.one_step:
                run.saver.begin_stage(stage.name)
                run.saver(probe_stage(model, prepared, config, dist, precision, run.summary))
                continue
            if stage.trains_backbone and model.frozen:  # two-stage: the head has learned on features
                model.unfreeze_backbone()
            setup = stage_inputs(stage, model, prepared, config, dist, precision, order=order, summary=run.summary)
            desc = f"{config.strategy} ({stage.name})" if len(stages) > 1 else config.strategy
            _train_stage(run, stage, setup, config, dist=dist, precision=precision, scaler=scaler, desc=desc)
    except KeyboardInterrupt:
        status = "interrupted"
        log.warning("interrupted: %s keeps the best checkpoint so far (epoch %s)", run.dir, run.saver.best.epoch)
    feature_seconds = run.summary.feature_seconds - features_before
    epoch_seconds = time.perf_counter() - start - feature_seconds
    if status == "completed" and dist.main and run.saver.best.epoch:
        status = _fit_unknown(run, prepared, config, model, precision, dist)
    return run.finish(config.strategy, status, epoch_seconds, dist)


def _train_stage(
    run: OpenRun,
    stage: Stage,
    setup: StageSetup,
    config: TrainConfig,
    *,
    dist: Dist,
    precision: torch.dtype | None,
    scaler: torch.amp.GradScaler | None,
    desc: str,
) -> None:
    """The epochs of one stage: its optimizer and schedule (restored when resuming), then `engine.train_epochs`."""
    recipe = config.recipe
    optimizer, scheduler = make_optimizer(setup.parameters, recipe, stage.epochs)
    run.restore_optimizer(stage, optimizer, scheduler, scaler)
    run.saver.begin_stage(stage.name, optimizer=optimizer, scheduler=scheduler, scaler=scaler, patience=recipe.patience)
    run.restore_stopping(stage)
    module = wrap(setup.module, config, stage, dist)
    loss = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    step = TrainStep(optimizer=optimizer, scheduler=scheduler, criterion=loss, precision=precision, scaler=scaler)
    epochs = range(max(stage.first, run.done + 1), stage.last + 1)
    eval_module = setup.module if dist.enabled else module
    train_epochs(
        module,
        step,
        setup.inputs,
        epochs,
        dist.device,
        run.saver,
        eval_module=eval_module,
        reduce=dist.reduce_sums,
        desc=desc,
        quiet=config.quiet or not dist.main,
        stage=stage.name,
    )


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


def _fit_unknown(
    run: OpenRun,
    prepared: PreparedData,
    config: TrainConfig,
    model: TransferModel,
    precision: torch.dtype | None,
    dist: Dist,
) -> Status:
    """The run's "unknown" detector (`calibrate.fit_unknown_for_run`), by rank 0; Ctrl-C skips it."""
    from transferlab.training.calibrate import fit_unknown_for_run

    start = time.perf_counter()
    try:
        detector = fit_unknown_for_run(run.dir, prepared, config, model.backbone, precision, dist.device)
    except KeyboardInterrupt:
        log.warning("interrupted while fitting the 'unknown' threshold: predict will answer a class for every photo")
        return "interrupted"
    summary = run.summary
    summary.unknown_threshold, summary.unknown_known_rejected = detector.threshold, detector.known_rejected
    summary.unknown_seconds = time.perf_counter() - start
    log.info(
        "unknown: photos farther than %.3f from the training photos are answered 'unknown' (turns away "
        "about %.0f%% of known photos, cross-validated on val; %.0f s)",
        detector.threshold,
        100 * detector.known_rejected,
        summary.unknown_seconds,
    )
    return "completed"
