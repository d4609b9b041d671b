"""The figures of an evaluation: the confusion matrix and the reliability diagram (with its bins) as matplotlib
Figures; the top losses (also with their heat maps) and a prediction grid like the reference project's as Pillow
galleries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from transferlab.analysis.evaluation import CALIBRATION_BINS, Evaluation
from transferlab.analysis.gallery import gallery


def plot_confusion(evaluation: Evaluation) -> Figure:
    fig = Figure(figsize=(1.2 * len(evaluation.classes) + 2.5, 1.2 * len(evaluation.classes) + 2))
    ax = fig.subplots()
    counts = evaluation.confusion()
    ax.imshow(counts, cmap="Blues", vmin=0)
    ticks = range(len(evaluation.classes))
    ax.set_xticks(ticks, evaluation.classes, rotation=45, ha="right")
    ax.set_yticks(ticks, evaluation.classes)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    for (t, p), n in np.ndenumerate(counts):  # dark cells get white numbers
        ax.text(p, t, str(n), ha="center", va="center", color="white" if n > counts.max() / 2 else "black")
    ax.set_title(f"Confusion matrix ({len(evaluation.labels)} validation images)")
    fig.tight_layout()
    return fig


def reliability_bins(evaluation: Evaluation, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per confidence bin: mean confidence, accuracy and count (for the reliability diagram)."""
    confidence = evaluation.probs.max(1)
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            rows.append(
                {
                    "low": float(low),
                    "high": float(high),
                    "confidence": float(confidence[inside].mean()),
                    "accuracy": float(evaluation.correct[inside].mean()),
                    "count": int(inside.sum()),
                }
            )
    return rows


def plot_reliability(evaluation: Evaluation) -> Figure:
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    rows = reliability_bins(evaluation)
    width = 1.0 / CALIBRATION_BINS
    ax.bar(
        [r["low"] for r in rows],
        [r["accuracy"] for r in rows],
        width=width,
        align="edge",
        alpha=0.7,
        edgecolor="black",
        label="accuracy in bin",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    for r in rows:
        ax.annotate(str(r["count"]), (r["low"] + width / 2, r["accuracy"]), ha="center", va="bottom", fontsize=7)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.05),
        xlabel="confidence (max probability)",
        ylabel="accuracy",
        title=f"Reliability (ECE {evaluation.calibration_error:.3f}; numbers = images)",
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def top_losses(evaluation: Evaluation, count: int = 12) -> list[int]:
    """The indices of the `count` most confidently wrong images, the most confident first."""
    wrong = np.nonzero(~evaluation.correct)[0]
    return wrong[np.argsort(-evaluation.losses()[wrong])][:count].tolist()


def plot_top_losses(
    evaluation: Evaluation, count: int = 12, overlay: Callable[[int], Image.Image] | None = None
) -> Image.Image:
    """The most confidently wrong images: true label, predicted label and its probability; with `overlay`, each
    image's heat map (overlay(i): where the wrong answer comes from) instead of the photo."""
    order = top_losses(evaluation, count)
    classes = evaluation.classes

    def caption(i):
        p = evaluation.predicted[i]
        return (
            f"true {classes[evaluation.labels[i]]} / predicted {classes[p]} {evaluation.probs[i, p]:.0%}\n"
            f"{Path(evaluation.paths[i]).name}",
            True,
        )

    title = f"Top losses: the {len(order)} most confidently wrong" if order else "No validation image was wrong"
    if overlay is not None and order:
        title += ", and where each answer comes from"
    return gallery(evaluation.paths, order, title, caption, overlay)


def plot_prediction_grid(evaluation: Evaluation, count: int = 16, seed: int = 0) -> Image.Image:
    """Validation images titled 'predicted / true', wrong ones in red (like the reference project's grid)."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(evaluation.labels), size=min(count, len(evaluation.labels)), replace=False).tolist())
    classes = evaluation.classes

    def caption(i):
        p, t = evaluation.predicted[i], evaluation.labels[i]
        mark = "" if p == t else "  WRONG"
        return f"predicted {classes[p]} ({evaluation.probs[i, p]:.0%}) / true {classes[t]}{mark}", p != t

    return gallery(evaluation.paths, chosen, "Predictions on validation images", caption)
