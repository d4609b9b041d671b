"""The evaluation record: what `evaluate` measured of a run on its validation photos, and the Wilson interval its
accuracy is reported with. Kept apart so that the evaluation's plots and readers need not import the evaluator."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np

CALIBRATION_BINS = 15


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """The top-1 expected calibration error over `bins` equal-width confidence bins (torchmetrics'
    `multiclass_calibration_error` with norm "l1", the same bins: tested against it; ten lines of numpy rather
    than a library whose import takes four seconds of every evaluation)."""
    probs = np.asarray(probs, dtype=np.float32)
    confidence, correct = probs.max(1), probs.argmax(1) == np.asarray(labels)
    index = np.searchsorted(np.linspace(0, 1, bins + 1, dtype=np.float32), confidence, side="right") - 1
    gap = 0.0
    for b in np.unique(index):
        chosen = index == b
        gap += abs(float(correct[chosen].mean()) - float(confidence[chosen].mean())) * int(chosen.sum())
    return gap / max(1, len(confidence))


@dataclass(kw_only=True)
class Evaluation:
    run_dir: Path
    classes: list[str]
    paths: list[str]
    labels: np.ndarray  # (N,) true class indices
    probs: np.ndarray  # (N, C) predicted probabilities
    skipped: list[tuple[str, str]] = field(default_factory=list)
    answered_unknown: float | None = None  # share of these photos answered "unknown" (None: the run has no detector)

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    def accuracy_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        return wilson_interval(int(self.correct.sum()), len(self.labels), confidence)

    def per_class(self) -> dict[str, dict[str, float]]:
        # scikit-learn's precision_recall_fscore_support(zero_division=0), from the confusion matrix (tested equal;
        # importing sklearn.metrics took a second of every run's start)
        confusion = self.confusion()
        hits, support, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
        precision = np.divide(hits, predicted, out=np.zeros(len(hits)), where=predicted > 0)
        recall = np.divide(hits, support, out=np.zeros(len(hits)), where=support > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros(len(hits)), where=both > 0)
        return {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(self.classes)
        }

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes these photos hold or were predicted as (scikit-learn's default set): a test
        folder may hold some of the model's classes only, and a class nothing touched says nothing."""
        seen = set(self.labels.tolist()) | set(self.predicted.tolist())
        return float(np.mean([c["f1"] for i, c in enumerate(self.per_class().values()) if i in seen]))

    def confusion(self) -> np.ndarray:
        """counts[true, predicted] (scikit-learn's confusion_matrix)."""
        k = len(self.classes)
        return np.bincount(k * np.asarray(self.labels) + np.asarray(self.predicted), minlength=k * k).reshape(k, k)

    @property
    def calibration_error(self) -> float:
        return expected_calibration_error(self.probs, self.labels, CALIBRATION_BINS)

    def losses(self) -> np.ndarray:
        return -np.log(np.clip(self.probs[np.arange(len(self.labels)), self.labels], 1e-12, None))

    def summary(self) -> dict:
        low, high = self.accuracy_interval()
        return {
            "images": len(self.labels),
            "correct": int(self.correct.sum()),
            "accuracy": self.accuracy,
            "accuracy_ci95": [low, high],
            "macro_f1": self.macro_f1,
            "ece": self.calibration_error,
            "per_class": self.per_class(),
            "confusion": self.confusion().tolist(),
            "classes": self.classes,
            "skipped": [list(s) for s in self.skipped],
            "answered_unknown": self.answered_unknown,
        }

    def summary_line(self) -> str:
        low, high = self.accuracy_interval()
        return (
            f"accuracy {self.accuracy:.1%} ({int(self.correct.sum())}/{len(self.labels)}; 95% Wilson CI "
            f"{low:.1%}-{high:.1%}), macro F1 {self.macro_f1:.3f}, ECE {self.calibration_error:.3f}"
            + (
                ""
                if self.answered_unknown is None
                else f"; {self.answered_unknown:.1%} answered 'unknown' (like none of the training photos)"
            )
        )


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion: the closed form scipy's `binomtest(...).proportion_ci(method="wilson")`
    computes (tests/test_evaluate.py compares them), without importing scipy.stats (1.2 s of every run's start)."""
    if trials == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, z2 = successes / trials, z * z / trials
    centre = (p + z2 / 2) / (1 + z2)
    half = z / (1 + z2) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


_MARKDOWN_ESCAPES = {c: "\\" + c for c in "\\`*_{}[]()#+-.!|"} | {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def markdown_text(text: object) -> str:
    """`text` (a class, file or run name) as Markdown that shows it as written and is never markup: no link, no
    emphasis, no HTML, no table cell broken, whatever the name holds."""
    return "".join(_MARKDOWN_ESCAPES.get(c, c) for c in str(text).replace("\n", " ").replace("\r", " "))
