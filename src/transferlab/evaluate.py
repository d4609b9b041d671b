"""Evaluate a trained run on validation images, with the uncertainty a careful reader needs.

`evaluate_run(run_dir)` predicts every validation image of the run's dataset (or of another folder) with the
saved best weights and reports: accuracy with a 95% Wilson confidence interval (scipy), per-class
precision/recall/F1 and macro F1 (scikit-learn), the confusion matrix, expected calibration error (torchmetrics)
with a reliability diagram, the most confidently wrong images (top losses), and a prediction grid like the
reference project's. Everything lands in `<run>/evaluation/`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import binomtest
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix, precision_recall_fscore_support
from torchmetrics.functional.classification import multiclass_calibration_error

from .decoding import DecodedSplit
from .data import evaluation_files, load_dataset
from .errors import DatasetError
from .engine import resolve_device
from .gallery import gallery
from .predict import Classifier
from .runs import resolve_run
from .storage import read_json

CALIBRATION_BINS = 15


@dataclass
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
        precision, recall, f1, support = precision_recall_fscore_support(
            self.labels, self.predicted, labels=range(len(self.classes)), zero_division=0)
        return {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                       "support": int(support[i])} for i, name in enumerate(self.classes)}

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes these photos hold or were predicted as (scikit-learn's default set): a test
        folder may hold some of the model's classes only, and a class nothing touched says nothing."""
        seen = set(self.labels.tolist()) | set(self.predicted.tolist())
        return float(np.mean([c["f1"] for i, c in enumerate(self.per_class().values()) if i in seen]))

    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.labels, self.predicted, labels=range(len(self.classes)))

    @property
    def calibration_error(self) -> float:
        return float(multiclass_calibration_error(torch.from_numpy(self.probs).float(), torch.from_numpy(self.labels),
                                                  num_classes=len(self.classes), n_bins=CALIBRATION_BINS, norm="l1"))

    def losses(self) -> np.ndarray:
        return -np.log(np.clip(self.probs[np.arange(len(self.labels)), self.labels], 1e-12, None))

    def summary(self) -> dict:
        low, high = self.accuracy_interval()
        return {"images": len(self.labels), "correct": int(self.correct.sum()), "accuracy": self.accuracy,
                "accuracy_ci95": [low, high], "macro_f1": self.macro_f1, "ece": self.calibration_error,
                "per_class": self.per_class(), "confusion": self.confusion().tolist(), "classes": self.classes,
                "skipped": [list(s) for s in self.skipped], "answered_unknown": self.answered_unknown}

    def summary_line(self) -> str:
        low, high = self.accuracy_interval()
        return (f"accuracy {self.accuracy:.1%} ({int(self.correct.sum())}/{len(self.labels)}; 95% Wilson CI "
                f"{low:.1%}-{high:.1%}), macro F1 {self.macro_f1:.3f}, ECE {self.calibration_error:.3f}"
                + ("" if self.answered_unknown is None else
                   f"; {self.answered_unknown:.1%} answered 'unknown' (like none of the training photos)"))


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (scipy's binomtest)."""
    if trials == 0:
        return 0.0, 1.0
    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, tta: bool = False,
                 workers: int | None = None, quiet: bool = False, write: bool = True) -> Evaluation:
    """Predict the validation images (of the run's own dataset unless `data` is given) and evaluate."""
    run_dir = resolve_run(run_dir)
    classifier = Classifier.load(run_dir)
    data = other_folder(run_dir, data)
    label_of = _labelled_photos(run_dir, data, classifier.classes)
    paths, labels, probs, skipped, unknown = [], [], [], [], []
    for path, result in classifier.predict_files(list(label_of), tta=tta, workers=workers, quiet=quiet):
        if isinstance(result, str):
            skipped.append((str(path), result))
            continue
        paths.append(str(path))
        labels.append(label_of[path])
        probs.append(result.probs.numpy())
        unknown.append(not classifier.rank(result).known)
    if not paths:
        raise DatasetError(f"none of the {len(skipped)} photo(s) to evaluate could be read: "
                           + "; ".join(f"{path}: {why}" for path, why in skipped[:3]))
    evaluation = Evaluation(run_dir, classifier.classes, paths, np.array(labels), np.stack(probs), skipped,
                            float(np.mean(unknown)) if classifier.unknown is not None and unknown else None)
    if write:
        write_evaluation(evaluation, evaluation_dir(run_dir, data))
    return evaluation


def other_folder(run_dir: Path, data: str | Path | None) -> str | Path | None:
    """`data`, or None when it is the run's own photo folder: then its validation photos are evaluated, never the
    ones it trained on (a single folder is split; read whole, it would hold the training photos)."""
    if data is None:
        return None
    own = read_json(Path(run_dir) / "config.json")["data"]["root"]
    return None if Path(data).expanduser().resolve() == Path(own).expanduser().resolve() else data


def _labelled_photos(run_dir: Path, data: str | Path | None, classes: list[str]) -> dict[Path, int]:
    """Photo -> the model's class index: the run's own validation photos, or another folder's (`evaluation_files`:
    its test/ or val/, else all its class folders), whose classes must be among the model's."""
    if data is None:
        cfg = read_json(run_dir / "config.json")["data"]
        dataset = load_dataset(cfg["root"], cfg["val_fraction"], cfg.get("split_seed", 0), cfg["max_per_class"])
        if dataset.classes != classes:
            raise DatasetError(f"the folder's classes {dataset.classes} differ from the model's {classes}")
        return {s.path: s.label for s in dataset.val}
    files, folder = evaluation_files(data)
    foreign = sorted(set(files) - set(classes))
    if foreign:
        raise DatasetError(f"{folder}: class folder(s) {', '.join(foreign)} are not classes of the model "
                           f"({', '.join(classes)})")
    return {path: classes.index(name) for name, paths in sorted(files.items()) for path in paths}


def evaluation_dir(run_dir: Path, data: str | Path | None = None) -> Path:
    """Where an evaluation is written: `evaluation/` for the run's own validation images (what reports and the
    paired comparisons read), `evaluation-<folder name>/` for another folder, so it never replaces them."""
    data = other_folder(run_dir, data)
    return Path(run_dir) / ("evaluation" if data is None else f"evaluation-{Path(data).resolve().name}")


def evaluate_decoded(run_dir: str | Path, val: DecodedSplit, device: str = "cpu", write: bool = True) -> Evaluation:
    """Evaluate a run's best weights on already-decoded validation crops (what `compare` holds in memory)."""
    run_dir = Path(run_dir)
    classifier = Classifier.load(run_dir, resolve_device(device))
    probs = []
    for start in range(0, len(val), 64):
        probs.append(classifier.probabilities(torch.stack(val.images[start:start + 64])).numpy())
    evaluation = Evaluation(run_dir, classifier.classes, [str(p) for p in val.paths], val.labels.numpy(),
                            np.concatenate(probs), [(str(p), why) for p, why in val.skipped])
    if write:
        write_evaluation(evaluation, run_dir / "evaluation")
    return evaluation


# --- plots ------------------------------------------------------------------------------------------------

def plot_confusion(evaluation: Evaluation) -> Figure:
    fig = Figure(figsize=(1.2 * len(evaluation.classes) + 2.5, 1.2 * len(evaluation.classes) + 2))
    ax = fig.subplots()
    ConfusionMatrixDisplay(evaluation.confusion(), display_labels=evaluation.classes).plot(
        ax=ax, colorbar=False, cmap="Blues")
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
            rows.append({"low": float(low), "high": float(high), "confidence": float(confidence[inside].mean()),
                         "accuracy": float(evaluation.correct[inside].mean()), "count": int(inside.sum())})
    return rows


def plot_reliability(evaluation: Evaluation) -> Figure:
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    rows = reliability_bins(evaluation)
    width = 1.0 / CALIBRATION_BINS
    ax.bar([r["low"] for r in rows], [r["accuracy"] for r in rows], width=width, align="edge", alpha=0.7,
           edgecolor="black", label="accuracy in bin")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    for r in rows:
        ax.annotate(str(r["count"]), (r["low"] + width / 2, r["accuracy"]), ha="center", va="bottom", fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence (max probability)", ylabel="accuracy",
           title=f"Reliability (ECE {evaluation.calibration_error:.3f}; numbers = images)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_top_losses(evaluation: Evaluation, count: int = 12) -> Figure:
    """The most confidently wrong images: true label, predicted label and its probability."""
    wrong = np.nonzero(~evaluation.correct)[0]
    order = wrong[np.argsort(-evaluation.losses()[wrong])][:count].tolist()
    classes = evaluation.classes

    def caption(i):
        p = evaluation.predicted[i]
        return (f"true {classes[evaluation.labels[i]]} / predicted {classes[p]} {evaluation.probs[i, p]:.0%}\n"
                f"{Path(evaluation.paths[i]).name}", True)

    title = f"Top losses: the {len(order)} most confidently wrong" if order else "No validation image was wrong"
    return gallery(evaluation.paths, order, title, caption)


def plot_prediction_grid(evaluation: Evaluation, count: int = 16, seed: int = 0) -> Figure:
    """Validation images titled 'predicted / true', wrong ones in red (like the reference project's grid)."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(evaluation.labels), size=min(count, len(evaluation.labels)), replace=False).tolist())
    classes = evaluation.classes

    def caption(i):
        p, t = evaluation.predicted[i], evaluation.labels[i]
        mark = "" if p == t else "  WRONG"
        return f"predicted {classes[p]} ({evaluation.probs[i, p]:.0%}) / true {classes[t]}{mark}", p != t

    return gallery(evaluation.paths, chosen, "Predictions on validation images", caption)


def write_predictions(evaluation: Evaluation, path: Path) -> None:
    """One row per image: path, true and predicted class, probability of each class."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", "correct"] + [f"p_{c}" for c in evaluation.classes])
        for i, file in enumerate(evaluation.paths):
            writer.writerow([file, evaluation.classes[evaluation.labels[i]], evaluation.classes[evaluation.predicted[i]],
                             int(evaluation.correct[i])] + [f"{p:.9g}" for p in evaluation.probs[i]])


def read_evaluation(run_dir: Path) -> Evaluation | None:
    """An Evaluation rebuilt from a run's evaluation/predictions.csv (None if the run was not evaluated)."""
    path = Path(run_dir) / "evaluation" / "predictions.csv"
    if not path.exists():
        return None
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    classes = [k[2:] for k in rows[0] if k.startswith("p_")] if rows else []
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    labels = np.array([classes.index(r["true"]) for r in rows])
    return Evaluation(Path(run_dir), classes, [r["path"] for r in rows], labels, probs)


def per_class_table(evaluation: Evaluation) -> str:
    lines = ["| class | precision | recall | F1 | images |", "|---|---|---|---|---|"]
    for name, row in evaluation.per_class().items():
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
    lines.append(f"| **macro** | | | **{evaluation.macro_f1:.3f}** | {len(evaluation.labels)} |")
    return "\n".join(lines)


def confusion_table(evaluation: Evaluation) -> str:
    classes = evaluation.classes
    lines = ["| true \\ predicted | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for name, row in zip(classes, evaluation.confusion()):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def write_evaluation(evaluation: Evaluation, out_dir: Path) -> None:
    """Write evaluation.json, the plots and evaluation.md into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {"confusion_matrix.png": plot_confusion(evaluation), "reliability.png": plot_reliability(evaluation),
               "top_losses.png": plot_top_losses(evaluation), "predictions.png": plot_prediction_grid(evaluation)}
    for name, fig in figures.items():
        fig.savefig(out_dir / name, dpi=100)
    (out_dir / "evaluation.json").write_text(json.dumps(evaluation.summary(), indent=2))
    write_predictions(evaluation, out_dir / "predictions.csv")
    (out_dir / "evaluation.md").write_text(evaluation_markdown(evaluation))


def evaluation_markdown(evaluation: Evaluation, prefix: str = "", heading: str = "##") -> str:
    """The evaluation as markdown; `prefix` is the plots' folder relative to where the markdown lives."""
    skipped = f"\n\n{len(evaluation.skipped)} unreadable file(s) skipped." if evaluation.skipped else ""
    return "\n".join([
        f"{heading} Evaluation: `{evaluation.run_dir.name}`", "", evaluation.summary_line() + skipped, "",
        per_class_table(evaluation), "", confusion_table(evaluation), "",
        f"![confusion matrix]({prefix}confusion_matrix.png)", f"![reliability]({prefix}reliability.png)", "",
        f"![top losses]({prefix}top_losses.png)", "", f"![predictions]({prefix}predictions.png)", ""])
