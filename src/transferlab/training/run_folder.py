"""The folder of a run being trained: made new (config.json, summary.json) or reopened to resume from `last.pt`,
and finished with its summary. `train` opens one with `open_run` and ends it with `OpenRun.finish`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transferlab.config import Strategy, TrainConfig
from transferlab.data.prepare import PreparedData
from transferlab.models.model import TransferModel, count_parameters
from transferlab.models.weights import WeightsInfo
from transferlab.runs import (
    EpochRecord,
    ModelMeta,
    Resolved,
    RunSummary,
    Status,
    new_run_dir,
    read_metrics,
    read_summary,
    truncate_metrics,
    versions,
    write_run_config,
    write_summary,
)
from transferlab.training.checkpoint import CheckpointSaver, TrainingState, load_training_state, set_rng_state
from transferlab.training.stages import Stage
from transferlab.utils.distributed import Dist

log = logging.getLogger("transferlab")


@dataclass(kw_only=True)
class RunResult:
    """What `train` and `resume` return: the run folder and how the run ended."""

    run_dir: Path
    strategy: Strategy
    status: Status  # "completed" or "interrupted"
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


@dataclass(kw_only=True)
class OpenRun:
    """A run folder being trained: its summary, its checkpoint saver, and what a resumed run had done already."""

    dir: Path
    summary: RunSummary
    saver: CheckpointSaver
    done: int = 0  # epochs completed before this process started
    state: TrainingState | None = None  # the saved training state, when resuming
    extending: bool = False  # resuming a run that had finished, with more epochs

    def restore_optimizer(self, stage: Stage, optimizer, scheduler, scaler) -> None:
        """Resuming inside `stage`: put back its optimizer, schedule and scaler states."""
        state = self.state
        if state is not None and stage.first <= self.done and state.in_stage(stage.name):
            optimizer.load_state_dict(state.optimizer)
            scheduler.load_state_dict(state.scheduler)
            if state.scaler:
                scaler.load_state_dict(state.scaler)

    def stopped_early(self, stage: Stage) -> bool:
        """Killed right after `stage` stopped early: the rest of that stage is not trained after all."""
        state = self.state
        return state is not None and state.stopped_early and not self.extending and state.stage == stage.name

    def restore_stopping(self, stage: Stage) -> None:
        """Resuming inside `stage`: the early-stopping count goes on where it was (not when extending a finished
        run: more epochs were asked for)."""
        state = self.state
        if state is None or not state.stopping or self.extending:
            return
        if state.stage == stage.name and stage.first <= self.done:
            self.saver.stopping.load(state.stopping)

    def finish(self, strategy: Strategy, status: Status, epoch_seconds: float, dist: Dist) -> RunResult:
        """Write the final summary; raise TrainingInterrupted after Ctrl-C (the run folder stays usable)."""
        best = self.saver.best
        self.summary.add_timings(self.saver.records, epoch_seconds + self.summary.fit_seconds)
        self.summary.status, self.summary.best_epoch = status, best.epoch
        self.summary.best_val_acc = best.acc if best.epoch else None
        if dist.main:
            write_summary(self.dir, self.summary)
        result = RunResult(
            run_dir=self.dir,
            strategy=strategy,
            status=status,
            best_epoch=best.epoch,
            best_val_acc=self.summary.best_val_acc,
            epochs=self.saver.records,
            summary=self.summary,
        )
        if status == "interrupted":
            raise TrainingInterrupted(result)
        return result


def open_run(
    config: TrainConfig,
    prepared: PreparedData,
    model: TransferModel,
    weights_info: WeightsInfo,
    stages: list[Stage],
    precision: torch.dtype | None,
    *,
    dist: Dist,
    generator: torch.Generator,
    resume_dir: Path | None,
) -> OpenRun:
    """A new run folder (config.json written), or the folder of a run to resume with its state loaded back."""
    spec, dataset = prepared.spec, prepared.dataset
    metadata = ModelMeta(
        backbone=spec.name,
        classes=dataset.classes,
        strategy=config.strategy,
        input_size=spec.input_size,
        resize_size=spec.resize_size,
        mean=list(spec.mean),
        std=list(spec.std),
        background=list(config.data.background),
        weights=dataclasses.asdict(weights_info),
        versions=versions(),
        revision=spec.revision,  # how its features are computed (ensembles)
    )
    if resume_dir is None:
        run_dir = _create_run_folder(config, prepared, weights_info, dist)
        trainable = model.parameters() if stages[-1].trains_backbone else model.trainable_parameters()
        summary = RunSummary(
            status="running",
            strategy=config.strategy,
            backbone=config.backbone,
            processes=dist.world,
            train_images=len(prepared.train),
            val_images=len(prepared.val),
            skipped_files=len(prepared.skipped),
            decode_seconds=prepared.train.seconds + prepared.val.seconds,
            photos_decoded=prepared.train.decoded + prepared.val.decoded,
            trainable_params=count_parameters(trainable),
            total_params=count_parameters(model.parameters()),
            precision=str(precision).replace("torch.", "") if precision else "float32",
        )
        run = OpenRun(dir=run_dir, summary=summary, saver=CheckpointSaver(run_dir, model, metadata, dist, generator))
    else:
        run = _reopen(Path(resume_dir), model, metadata, dist, generator)
    if dist.main:
        write_summary(run.dir, run.summary)
    return run


def _create_run_folder(config: TrainConfig, prepared: PreparedData, weights_info: WeightsInfo, dist: Dist) -> Path:
    """Create the run folder (rank 0; its name sent to the others) and write config.json into it."""
    run_dir = Path(
        dist.broadcast(
            str(new_run_dir(config.out, config.name, f"{config.strategy}-{config.backbone}")) if dist.main else None
        )
    )
    if dist.main:
        dataset = prepared.dataset
        resolved = Resolved(
            device=str(dist.device),
            processes=dist.world,
            classes=dataset.classes,
            data_root=str(Path(config.data.root).resolve()),
            layout=dataset.layout,
            counts=dataset.counts(),
            weights=dataclasses.asdict(weights_info),
            versions=versions(),
            skipped_files=[[str(p), reason] for p, reason in prepared.skipped],
            duplicate_problems=[[str(a), str(b), kind] for a, b, kind in prepared.duplicates],
        )
        write_run_config(run_dir, config, resolved)
    return run_dir


def _reopen(
    run_dir: Path, model: TransferModel, metadata: ModelMeta, dist: Dist, generator: torch.Generator
) -> OpenRun:
    """Load a run's last.pt back: weights, random states, best-so-far, the epochs' records, the summary."""
    state = load_training_state(run_dir)
    done = state.epoch
    model.load_state_dict(state.model)
    rngs = state.rng
    set_rng_state(rngs[dist.rank] if dist.rank < len(rngs) else rngs[0], generator)
    records = [EpochRecord(**r) for r in read_metrics(run_dir)[:done]]
    summary = read_summary(run_dir)
    extending = summary.status == "completed"  # `resume` lets a finished run through only with more epochs
    summary.status = "running"
    if dist.main:
        truncate_metrics(run_dir, done)
    log.info("resuming %s after epoch %d", run_dir, done)
    saver = CheckpointSaver(run_dir, model, metadata, dist, generator, state.best, records=records)
    return OpenRun(dir=run_dir, summary=summary, saver=saver, done=done, state=state, extending=extending)
