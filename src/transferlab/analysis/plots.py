"""Plots of a comparison, each a matplotlib Figure (no pyplot: no GUI backend, no global state), so a notebook
shows it inline and the report saves it: learning curves, accuracy against time, where the time went."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from transferlab.analysis.results import Cell, LoadedRun, by_cell, first_runs
from transferlab.runs import RunSummary

PHASES = ("decode images once", "frozen-backbone features", "waiting for batches", "training compute", "validation")


def time_breakdown(summary: RunSummary) -> dict[str, float]:
    """Seconds spent in each phase of a run (the names in PHASES)."""
    seconds = (
        summary.decode_seconds,
        summary.feature_seconds,
        summary.data_seconds,
        summary.compute_seconds,
        summary.val_seconds,
    )
    return dict(zip(PHASES, seconds))


def _colours(runs: list[LoadedRun]) -> dict[Cell, str]:
    return {cell: f"C{i % 10}" for i, cell in enumerate(by_cell(runs))}


def _name(cell: Cell, runs: list[LoadedRun]) -> str:
    """The cell's strategy alone when nothing else varies, else its full label."""
    return cell.strategy if len({(c.backbone, c.batch_size) for c in by_cell(runs)}) == 1 else cell.label


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (seconds, accuracy) points no other point beats on both (faster and at least as accurate,
    or as fast and more accurate), in order of time."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_curves(runs: list[LoadedRun]) -> Figure:
    """Loss and accuracy per epoch for each cell (every seed), on shared axes."""
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    colours = _colours(runs)
    for cell, group in by_cell(runs).items():
        name = _name(cell, runs)
        for k, run in enumerate(group):
            m = run.metrics
            if not m:
                continue
            epochs = [r["epoch"] for r in m]
            style = {
                "color": colours[cell],
                "alpha": 1.0 if k == 0 else 0.35,
                "linewidth": 1.6 if k == 0 else 1,
                "marker": "o",  # one epoch is a point, not an empty plot
                "markersize": 3,
            }
            label = (lambda what, name=name: f"{name} {what}") if k == 0 else (lambda what: None)
            ax_loss.plot(epochs, [r["train_loss"] for r in m], linestyle="--", label=label("train"), **style)
            ax_loss.plot(epochs, [r["val_loss"] for r in m], label=label("val"), **style)
            ax_acc.plot(epochs, [r["train_acc"] for r in m], linestyle="--", label=label("train"), **style)
            ax_acc.plot(epochs, [r["val_acc"] for r in m], label=label("val"), **style)
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="cross-entropy loss")
    ax_acc.set(title="Accuracy per epoch (faint: other seeds)", xlabel="epoch", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_time(runs: list[LoadedRun]) -> Figure:
    """Best validation accuracy against total training time, one point per run; the cells' means on the Pareto
    front (no other cell both faster and at least as accurate) circled and joined."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    colours = _colours(runs)
    means, cells = [], []
    for cell, group in by_cell(runs).items():
        points = [
            (r.summary.total_seconds, r.summary.best_val_acc)
            for r in group
            if r.summary.best_val_acc is not None and r.summary.total_seconds is not None
        ]
        if points:
            xs, ys = [float(p[0] or 0) for p in points], [float(p[1] or 0) for p in points]  # None filtered above
            ax.scatter(xs, ys, color=colours[cell], s=40, label=_name(cell, runs))
            means.append((float(np.mean(xs)), float(np.mean(ys))))
            cells.append(cell)
    front = [means[i] for i in pareto_front(means)]
    if front:
        xs, ys = [x for x, _ in front], [y for _, y in front]
        ax.plot(xs, ys, color="black", linewidth=1, zorder=0)
        ax.scatter(xs, ys, s=160, facecolors="none", edgecolors="black", label="Pareto front")
    ax.set(title="Best validation accuracy vs training time", xlabel="total time (s)", ylabel="best val accuracy")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_time_breakdown(runs: list[LoadedRun]) -> Figure:
    """Stacked bars: where each cell's seconds went (first seed)."""
    firsts = first_runs(runs)
    fig = Figure(figsize=(8, 1.9 + 0.5 * len(firsts)))
    ax = fig.subplots()
    names = [_name(r.cell, runs) for r in firsts]
    left = [0.0] * len(firsts)
    for j, phase in enumerate(PHASES):
        values = [time_breakdown(r.summary)[phase] for r in firsts]
        ax.barh(names, values, left=left, color=f"C{j}", label=phase)
        left = [a + b for a, b in zip(left, values)]
    ax.set(title="Where the time went", xlabel="seconds")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig
