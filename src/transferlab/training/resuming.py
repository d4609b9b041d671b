"""Resuming a run (`transferlab train --resume RUN [--epochs N]`): from its last finished epoch, with its own
settings, on the same classes; a finished run says so and does nothing, unless `--epochs N` extends it. A run of a
comparison, once finished, is evaluated and its compare folder's report written again, so the answer counts it."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from transferlab.config import TrainConfig, to_dict, train_config_from_dict
from transferlab.data.layout import load_dataset
from transferlab.errors import DamagedFile, DatasetError, RunNotFound, UsageError, first_line
from transferlab.runs import LAST_STATE, META_FILE, read_summary
from transferlab.training.run_folder import RunResult
from transferlab.training.stages import plan_stages
from transferlab.training.trainer import train
from transferlab.utils.storage import read_json, read_json_object, save_json

log = logging.getLogger("transferlab")


def resume(run_dir: str | Path, epochs: int | None = None) -> RunResult:
    """Continue an interrupted or killed run from its last completed epoch. A completed (or early-stopped) run is
    left as it is, unless `epochs` extends it to that many epochs of its recipe."""
    run_dir = Path(run_dir)
    if not (run_dir / LAST_STATE).exists():
        raise RunNotFound(f"{run_dir}: no {LAST_STATE} to resume from (no epoch finished yet?)")
    saved = read_json_object(run_dir / "config.json")
    resolved = saved.pop("resolved", {})
    config = saved_config(saved, run_dir)
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
        save_json({**to_dict(config), "resolved": resolved}, run_dir / "config.json")
    check_unchanged(config, resolved, run_dir)
    result = train(config, resume_dir=run_dir)
    refresh_comparison(run_dir)
    return result


def refresh_comparison(run_dir: Path) -> Path | None:
    """A run inside a compare folder (compare.json beside it): evaluate it on its validation images and write the
    compare report again, so the recommendation weighs the finished run (not the one cut short). Rank 0 only."""
    if not (run_dir.parent / "compare.json").exists() or int(os.environ.get("RANK", "0")) != 0:
        return None
    from transferlab.analysis.evaluate import evaluate_run
    from transferlab.analysis.report import write_report

    evaluate_run(run_dir, quiet=True)
    report = write_report(run_dir.parent)
    log.info("%s is part of a comparison: its report is written again with the finished run: %s", run_dir.name, report)
    return report


def saved_config(saved: dict, run_dir: Path) -> TrainConfig:
    """The run's TrainConfig from its config.json; a setting this version does not know is a clear error."""
    try:
        return train_config_from_dict(saved)
    except (UsageError, TypeError, KeyError, AttributeError, ValueError) as error:  # another version's, or damaged
        raise DamagedFile(
            run_dir / "config.json",
            f"cannot be read by this version of transferlab ({first_line(error)})",
            "resume it with the version that wrote it, or train it again",
        ) from None


def _extended(config: TrainConfig, epochs: int, done: int) -> TrainConfig:
    recipe = dataclasses.replace(config.recipe, epochs=epochs)
    last = plan_stages(config.strategy, recipe)[-1].last
    if last <= done:
        raise UsageError(f"--epochs {epochs}: the run has trained {done} epoch(s) already; ask for more to extend it")
    return dataclasses.replace(config, recipe=recipe)


def check_unchanged(config: TrainConfig, resolved: dict, run_dir: Path) -> None:
    """The same classes and backbone as when the run started, checked before any photo is decoded: a renamed
    class folder would silently remap labels."""
    data = config.data
    classes = load_dataset(data.root, data.val_fraction, data.split_seed, data.max_per_class).classes
    if resolved.get("classes") is not None and classes != resolved["classes"]:
        raise DatasetError(
            f"the class folders of {data.root} changed since {run_dir} started: now "
            f"{', '.join(classes)}, then {', '.join(resolved['classes'])}; rename them back, or "
            "train a new run"
        )
    meta = run_dir / META_FILE
    if meta.exists() and read_json(meta).get("backbone") != config.backbone:
        raise UsageError(
            f"{run_dir}: its checkpoint is a {read_json(meta).get('backbone')}, its config says {config.backbone}"
        )
