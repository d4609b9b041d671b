"""What `compare` and `fit --budget` share: the workflow around many runs in one folder.

`open_folder` makes the folder on rank 0 (the other torchrun processes get its name broadcast) and writes the plan
(`compare.json`); `run_plan` trains the runs a plan yields one by one (a generator: `compare`'s every cell, `fit`'s
probes then two-stage), keeps what finished after Ctrl-C (an interruption propagates to it: no "was I interrupted"
flags), writes the report on rank 0, and removes a folder in which no run started when the plan fails or is
interrupted; `train_and_evaluate` trains one run and evaluates it on rank 0; `write_report` writes the report and
the recommendation on rank 0.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transferlab.config import TrainConfig, to_dict
from transferlab.data.prepare import PreparedData
from transferlab.errors import RunNotFound, WeightsUnavailable
from transferlab.models.backbones import resolve_backbone
from transferlab.models.model import check_weights
from transferlab.runs import ComparePlan, is_run_folder, new_run_dir, write_compare_plan
from transferlab.training.run_folder import RunResult, TrainingInterrupted
from transferlab.training.trainer import train
from transferlab.utils.distributed import Dist

log = logging.getLogger("transferlab")


def usable_backbones(names: list[str], weights: str | None) -> tuple[list[str], dict[str, str]]:
    """The backbones whose ImageNet weights can be had (resolving "auto"), and a one-line reason for the others."""
    usable: list[str] = []
    skipped: dict[str, str] = {}
    for name in names:
        resolved, why = resolve_backbone(name, weights)
        if why:
            log.info("%s", why)
        try:
            check_weights(resolved, weights)
        except WeightsUnavailable as error:
            skipped[resolved] = str(error).split(". ")[0]
            log.warning("skipping %s: %s", resolved, skipped[resolved])
            continue
        if resolved not in usable:
            usable.append(resolved)
    return usable, skipped


def open_folder(config: TrainConfig, dist: Dist, default_name: str, plan: ComparePlan) -> Path:
    """A new folder for the runs, made by rank 0 and named to every process, with the plan in compare.json."""
    out_dir = Path(dist.broadcast(str(new_run_dir(config.out, config.name, default_name)) if dist.main else None))
    if dist.main:
        write_compare_plan(out_dir, dataclasses.replace(plan, config=to_dict(config)))
    return out_dir


@dataclass(kw_only=True)
class Comparison:
    """What `compare` and `fit_within` return: the folder, its runs and report, and what was left out."""

    out_dir: Path
    results: list[RunResult]
    report: Path
    interrupted: bool = False
    skipped_backbones: dict[str, str] = field(default_factory=dict)  # backbone -> why it was left out


def run_plan(out_dir: Path, dist: Dist, runs: Iterator[RunResult], skipped: dict[str, str]) -> Comparison:
    """Train every run `runs` yields, then write the report; Ctrl-C keeps what finished (a run cut short is kept as
    it is). A plan that fails, or a folder in which no run started, leaves no folder behind (finished runs are
    always kept)."""
    results: list[RunResult] = []
    interrupted = False
    try:
        for result in runs:
            results.append(result)
    except TrainingInterrupted as stop:  # in the middle of a run: it keeps its best checkpoint
        results.append(stop.result)
        interrupted = True
    except KeyboardInterrupt:  # while decoding, computing features or evaluating: keep what finished
        interrupted = True
    except BaseException:
        abandon(out_dir, dist)
        raise
    if not has_runs(out_dir):
        abandon(out_dir, dist)
        raise KeyboardInterrupt if interrupted else RunNotFound(f"no run of {out_dir.name} started")
    report = write_report(out_dir, dist)
    return Comparison(
        out_dir=out_dir, results=results, report=report, interrupted=interrupted, skipped_backbones=skipped
    )


def train_and_evaluate(
    run_config: TrainConfig, prepared: PreparedData, dist: Dist, evaluate: bool, deadline: float | None = None
) -> RunResult:
    """Train one run and evaluate it on rank 0. An interruption propagates (`TrainingInterrupted`, with the run
    as it was kept)."""
    from transferlab.analysis.evaluate import evaluate_decoded

    result = train(run_config, prepared, deadline=deadline)
    if evaluate and dist.main:
        evaluate_decoded(result.run_dir, prepared.val, run_config.device)
    return result


def abandon(out_dir: Path, dist: Dist) -> None:
    """Remove a folder in which no run has started (only its compare.json and caches' leftovers)."""
    if dist.main and out_dir.is_dir() and not has_runs(out_dir):
        shutil.rmtree(out_dir, ignore_errors=True)


def has_runs(out_dir: Path) -> bool:
    return out_dir.is_dir() and any(is_run_folder(p) for p in out_dir.iterdir())


def write_report(out_dir: Path, dist: Dist) -> Path:
    """The report and the recommendation, written by rank 0; every process gets the report's path."""
    from transferlab.analysis.report import write_report as write

    report = write(out_dir) if dist.main else out_dir / "report.md"
    dist.barrier()
    return report
