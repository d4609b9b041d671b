"""Resuming a run (`transferlab train --resume RUN [--epochs N]`): from its last finished epoch, with its own
settings, on the same classes; a finished run says so and does nothing, unless `--epochs N` extends it. A run of a
comparison, once finished, is evaluated and its compare folder's report written again, so the answer counts it."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from transferlab.config import TrainConfig
from transferlab.data.layout import dataset_for
from transferlab.errors import DatasetError, RunNotFound, UsageError
from transferlab.runs import (
    LAST_STATE,
    Resolved,
    read_compare_plan,
    read_model_backbone,
    read_run_config,
    read_summary,
    write_run_config,
)
from transferlab.training.run_folder import RunResult
from transferlab.training.stages import plan_stages
from transferlab.training.trainer import train
from transferlab.utils.distributed import is_main_process

log = logging.getLogger("transferlab")


def resume(run_dir: str | Path, epochs: int | None = None) -> RunResult:
    """Continue an interrupted or killed run from its last completed epoch. A completed (or early-stopped) run is
    left as it is, unless `epochs` extends it to that many epochs of its recipe."""
    run_dir = Path(run_dir)
    if not (run_dir / LAST_STATE).exists():
        raise RunNotFound(f"{run_dir}: no {LAST_STATE} to resume from (no epoch finished yet?)")
    saved = read_run_config(run_dir)
    config, resolved = saved.config, saved.resolved
    summary = read_summary(run_dir)
    if summary.status == "completed" and epochs is None:
        return RunResult(
            run_dir=run_dir,
            strategy=config.strategy,
            status="completed",
            best_epoch=summary.best_epoch,
            best_val_acc=summary.best_val_acc,
            summary=summary,
            already_finished=True,
        )
    if epochs is not None:
        config = _extended(config, epochs, summary.epochs_completed)
        write_run_config(run_dir, config, resolved)
    check_unchanged(config, resolved, run_dir)
    result = train(config, resume_dir=run_dir)
    refresh_comparison(run_dir)
    return result


def refresh_comparison(run_dir: Path) -> Path | None:
    """A run inside a compare folder (compare.json beside it): evaluate it on its validation images and write the
    compare report again, so the recommendation weighs the finished run (not the one cut short). Rank 0 only."""
    if read_compare_plan(run_dir.parent) is None or not is_main_process():
        return None
    from transferlab.analysis.evaluate import evaluate_run
    from transferlab.analysis.report import write_report

    evaluate_run(run_dir, quiet=True)
    report = write_report(run_dir.parent)
    log.info("%s is part of a comparison: its report is written again with the finished run: %s", run_dir.name, report)
    return report


def _extended(config: TrainConfig, epochs: int, done: int) -> TrainConfig:
    recipe = dataclasses.replace(config.recipe, epochs=epochs)
    last = plan_stages(config.strategy, recipe)[-1].last
    if last <= done:
        raise UsageError(f"--epochs {epochs}: the run has trained {done} epoch(s) already; ask for more to extend it")
    return dataclasses.replace(config, recipe=recipe)


def check_unchanged(config: TrainConfig, resolved: Resolved, run_dir: Path) -> None:
    """The same classes and backbone as when the run started, checked before any photo is decoded: a renamed
    class folder would silently remap labels."""
    classes = dataset_for(config.data).classes
    if resolved.classes and classes != resolved.classes:
        raise DatasetError(
            f"the class folders of {config.data.root} changed since {run_dir} started: now "
            f"{', '.join(classes)}, then {', '.join(resolved.classes)}; rename them back, or "
            "train a new run"
        )
    saved = read_model_backbone(run_dir)
    if saved is not None and saved != config.backbone:
        raise UsageError(f"{run_dir}: its checkpoint is a {saved}, its config says {config.backbone}")
