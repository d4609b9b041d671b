"""Finished runs read back from a compare folder, and the numbers a reader compares them by: the table, the
confidence intervals, the pairing of two cells' per-image results, and the accuracies line.

Everything is computed from files (`load_runs`), so the results can be rebuilt from disk at any time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np

from transferlab.analysis.evaluate import read_evaluation, wilson_interval
from transferlab.analysis.stats import bootstrap_interval
from transferlab.config import TrainConfig
from transferlab.models.backbones import short_name
from transferlab.runs import Resolved, RunSummary, is_run_folder, read_metrics, read_run_config, read_summary

COLUMNS = (
    "backbone",
    "strategy",
    "runs",
    "best val acc",
    "95% CI",
    "final-epoch acc",
    "best epoch",
    "batch",
    "total time",
    "time/epoch",
    "trainable params",
    "waiting for data",
    "verdict",
)
STRATEGY_ORDER = {"finetune": 0, "extract": 1, "two-stage": 2}


class Cell(NamedTuple):
    """What a comparison varies: one backbone, one strategy, one batch size (seeds are repeats of a cell)."""

    backbone: str
    strategy: str
    batch_size: int

    @property
    def label(self) -> str:
        return f"{self.strategy} ({short_name(self.backbone)}, batch {self.batch_size})"


@dataclass(kw_only=True)
class LoadedRun:
    """One run folder read back: its summary, per-epoch metrics, saved settings and what it found, and per-image
    results."""

    name: str
    dir: Path
    summary: RunSummary
    metrics: list[dict]
    config: TrainConfig
    resolved: Resolved = field(default_factory=Resolved)
    correct: np.ndarray | None  # per validation image: was the best model right? (None: not evaluated)
    paths: list[str] | None = None  # the validation images `correct` is about, in the same order
    labels: np.ndarray | None = None  # their true classes (indices), in the same order

    @property
    def cell(self) -> Cell:
        return Cell(self.config.backbone, self.summary.strategy, self.config.recipe.batch_size)


def load_runs(compare_dir: str | Path) -> list[LoadedRun]:
    """The runs inside a compare folder, ordered by strategy, then seed."""
    runs = []
    for run_dir in sorted(p for p in Path(compare_dir).iterdir() if is_run_folder(p)):
        evaluation = read_evaluation(run_dir)
        saved = read_run_config(run_dir)
        runs.append(
            LoadedRun(
                name=run_dir.name,
                dir=run_dir,
                summary=read_summary(run_dir),
                metrics=read_metrics(run_dir),
                config=saved.config,
                resolved=saved.resolved,
                correct=evaluation.correct if evaluation is not None else None,
                paths=evaluation.paths if evaluation is not None else None,
                labels=evaluation.labels if evaluation is not None else None,
            )
        )
    return sorted(
        runs,
        key=lambda r: (
            r.config.backbone,
            STRATEGY_ORDER.get(r.summary.strategy, 9),
            r.config.recipe.batch_size,
            r.config.seed,
            r.name,
        ),
    )


def by_cell(runs: list[LoadedRun]) -> dict[Cell, list[LoadedRun]]:
    groups: dict[Cell, list[LoadedRun]] = {}
    for run in runs:
        groups.setdefault(run.cell, []).append(run)
    return groups


def first_runs(runs: list[LoadedRun]) -> list[LoadedRun]:
    """One run per cell (its first seed): what the timing story and the evaluations are told with."""
    return [group[0] for group in by_cell(runs).values()]


def paired_correct(
    a: list[LoadedRun], b: list[LoadedRun], weights: dict[str, float] | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(seeds, images) arrays of right/wrong for two cells over the seeds both completed and the validation
    images both evaluated, paired by image path (never by row position). With `weights` (per path), each image
    counts by its weight, so that the mean is a balanced accuracy."""
    seeds_a = {r.config.seed: r for r in a if r.correct is not None}
    seeds_b = {r.config.seed: r for r in b if r.correct is not None}
    common = sorted(set(seeds_a) & set(seeds_b))
    if not common:
        return None, None
    rows_a, rows_b = [], []
    for seed in common:
        ra, rb = seeds_a[seed], seeds_b[seed]
        index_a = {p: i for i, p in enumerate(ra.paths or [])}
        index_b = {p: i for i, p in enumerate(rb.paths or [])}
        shared = sorted(set(index_a) & set(index_b))
        scale = np.array([weights.get(p, 1.0) for p in shared]) if weights else 1
        rows_a.append(cast(np.ndarray, ra.correct)[[index_a[p] for p in shared]] * scale)  # evaluated runs only
        rows_b.append(cast(np.ndarray, rb.correct)[[index_b[p] for p in shared]] * scale)
    if len({len(r) for r in rows_a}) != 1 or not len(rows_a[0]):
        return None, None
    return np.stack(rows_a), np.stack(rows_b)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def verdict(summaries: list[RunSummary]) -> str:
    """One line on what limited the runs' speed (data preparation vs the network)."""
    done = [s for s in summaries if s.data_share is not None and s.total_seconds]
    if not done:
        return "-"
    share = float(np.mean([s.data_share for s in done]))
    if share >= 0.5:
        return f"data-bound: {share:.0%} of the time preparing images"
    network = np.mean([(s.feature_seconds + s.compute_seconds + s.val_seconds) / (s.total_seconds or 1) for s in done])
    return f"compute-bound: {network:.0%} of the time in the network"


def mean_std(values: list[float]) -> str:
    """Accuracy as "96.3%", or "96.1% ± 0.4%" (mean ± sample standard deviation) over several runs."""
    if not values:
        return "-"
    fmt = lambda v: f"{v:.1%}"  # noqa: E731
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(float(np.mean(values)))} ± {fmt(float(np.std(values, ddof=1)))}"


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def accuracy_interval(group: list[LoadedRun]) -> tuple[float, float] | None:
    """95% CI of a strategy's accuracy: Wilson for one run, bootstrap over images and seeds for several."""
    matrix = [r.correct for r in group if r.correct is not None]
    if not matrix or len({len(m) for m in matrix}) != 1:
        return None
    if len(matrix) == 1:
        return wilson_interval(int(matrix[0].sum()), len(matrix[0]))
    return bootstrap_interval(np.stack(matrix))


def table_rows(runs: list[LoadedRun]) -> list[list[str]]:
    rows = []
    for cell, group in by_cell(runs).items():
        summaries = [r.summary for r in group]
        status = {s.status for s in summaries} - {"completed"}
        best = [s.best_val_acc for s in summaries if s.best_val_acc is not None]
        final = [r.metrics[-1]["val_acc"] for r in group if r.metrics]
        interval = accuracy_interval(group)
        share = mean([s.data_share for s in summaries])
        rows.append(
            [
                cell.backbone,
                cell.strategy + (f" ({', '.join(sorted(status))})" if status else ""),
                str(len(group)),
                mean_std(best),
                f"{interval[0]:.1%}-{interval[1]:.1%}" if interval else "-",
                mean_std(final),
                ", ".join(str(s.best_epoch or "-") for s in summaries),
                str(cell.batch_size),
                format_seconds(mean([s.total_seconds for s in summaries])),
                format_seconds(mean([s.seconds_per_epoch for s in summaries])),
                f"{summaries[0].trainable_params:,}",
                f"{share:.0%}" if share is not None else "-",
                verdict(summaries),
            ]
        )
    return rows


def text_table(runs: list[LoadedRun]) -> str:
    """The comparison as a fixed-width text table, for the terminal."""
    rows = [list(COLUMNS)] + table_rows(runs)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(runs: list[LoadedRun]) -> str:
    rows = table_rows(runs)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def accuracies_line(runs: list[LoadedRun]) -> str:
    """Each cell's accuracy and time, e.g. "finetune (efficientnet_lite0, batch 32) 93.4% in 1m28s, ..."."""
    parts = []
    for cell, group in by_cell(runs).items():
        best = [r.summary.best_val_acc for r in group if r.summary.best_val_acc is not None]
        if best:
            parts.append(
                f"{cell.label} {mean_std(best)} in {format_seconds(mean([r.summary.total_seconds for r in group]))}"
            )
    return ", ".join(parts)
