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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from transferlab.analysis.evaluation import CALIBRATION_BINS, Evaluation, markdown_text, wilson_interval
from transferlab.analysis.evaluation_plots import (
    plot_confusion,
    plot_prediction_grid,
    plot_reliability,
    plot_top_losses,
    top_losses,
)
from transferlab.data.decoding import DecodedSplit
from transferlab.data.layout import dataset_for, evaluation_files
from transferlab.errors import DamagedFile, DatasetError, UnreadableImage
from transferlab.inference.explain import explain_crops, has_maps
from transferlab.inference.predict import Classifier
from transferlab.runs import read_run_config, resolve_run
from transferlab.utils.device import resolve_device
from transferlab.utils.progress import report
from transferlab.utils.storage import save_figure, write_atomically

HEAT = "top_losses_heat.png"  # the top losses with the heat maps of their answers

__all__ = [
    "CALIBRATION_BINS",
    "HEAT",
    "Evaluation",
    "evaluate_decoded",
    "evaluate_run",
    "read_evaluation",
    "wilson_interval",
]


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    tta: bool = False,
    workers: int | None = None,
    quiet: bool = False,
    write: bool = True,
) -> Evaluation:
    """Predict the validation images (of the run's own dataset unless `data` is given) and evaluate."""
    run_dir = resolve_run(run_dir)
    classifier = Classifier.load(run_dir)
    data = other_folder(run_dir, data)
    label_of = _labelled_photos(run_dir, data, classifier.classes)
    paths, labels, probs, skipped, unknown = [], [], [], [], []
    report("evaluation", run_dir.name, 0, 1)
    for path, result in classifier.predict_files(list(label_of), tta=tta, workers=workers, quiet=quiet):
        if isinstance(result, str):
            skipped.append((str(path), result))
            continue
        paths.append(str(path))
        labels.append(label_of[path])
        probs.append(result.probs.numpy())
        unknown.append(not classifier.rank(result).known)
    if not paths:
        raise DatasetError(
            f"none of the {len(skipped)} photo(s) to evaluate could be read: "
            + "; ".join(f"{path}: {why}" for path, why in skipped[:3])
        )
    evaluation = Evaluation(
        run_dir=run_dir,
        classes=classifier.classes,
        paths=paths,
        labels=np.array(labels),
        probs=np.stack(probs),
        skipped=skipped,
        answered_unknown=float(np.mean(unknown)) if classifier.unknown is not None and unknown else None,
    )
    if write:
        heat = _heat_overlays(classifier, evaluation, lambda i: classifier.preprocess(evaluation.paths[i]))
        write_evaluation(evaluation, evaluation_dir(run_dir, data), heat)
    report("evaluation", run_dir.name, 1, 1)
    return evaluation


def other_folder(run_dir: Path, data: str | Path | None) -> str | Path | None:
    """`data`, or None when it is the run's own photo folder: then its validation photos are evaluated, never the
    ones it trained on (a single folder is split; read whole, it would hold the training photos)."""
    if data is None:
        return None
    own = read_run_config(run_dir).data_root
    return None if Path(data).expanduser().resolve() == own.resolve() else data


def _labelled_photos(run_dir: Path, data: str | Path | None, classes: list[str]) -> dict[Path, int]:
    """Photo -> the model's class index: the run's own validation photos, or another folder's (`evaluation_files`:
    its test/ or val/, else all its class folders), whose classes must be among the model's."""
    if data is None:
        saved = read_run_config(run_dir)
        dataset = dataset_for(saved.config.data, saved.data_root)
        if dataset.classes != classes:
            raise DatasetError(f"the folder's classes {dataset.classes} differ from the model's {classes}")
        return {s.path: s.label for s in dataset.val}
    files, folder = evaluation_files(data)
    foreign = sorted(set(files) - set(classes))
    if foreign:
        raise DatasetError(
            f"{folder}: class folder(s) {', '.join(foreign)} are not classes of the model ({', '.join(classes)})"
        )
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
    stored = stored_val_features(classifier, val) if classifier.meta.strategy == "extract" else None
    probs = []
    if stored is not None:  # a frozen backbone's features of these crops are in the store: the head alone
        with torch.inference_mode():
            probs.append(classifier.model.head(stored.to(classifier.device)).float().softmax(1).cpu().numpy())
    else:
        if classifier.meta.strategy == "extract":  # the frozen backbone's ONNX export is in the cache
            classifier.prefer_onnx_features()
        for start in range(0, len(val), 64):
            probs.append(classifier.probabilities(torch.stack(list(val.images[start : start + 64]))).numpy())
    evaluation = Evaluation(
        run_dir=run_dir,
        classes=classifier.classes,
        paths=[str(p) for p in val.paths],
        labels=val.labels.numpy(),
        probs=np.concatenate(probs),
        skipped=[(str(p), why) for p, why in val.skipped],
    )
    if write:
        write_evaluation(
            evaluation, run_dir / "evaluation", _heat_overlays(classifier, evaluation, val.images.__getitem__)
        )
    return evaluation


def _heat_overlays(
    classifier: Classifier, evaluation: Evaluation, crop: Callable[[int], torch.Tensor]
) -> Callable[[int], Image.Image] | None:
    """overlay(i) for the top losses: photo i's crop (crop(i)) with the map of the model's answer laid over it, all
    computed in one batch; None for a model without exact maps (an ensemble) or with no wrong answer."""
    chosen = top_losses(evaluation)
    if not chosen or not has_maps(classifier):
        return None
    try:
        crops = torch.stack([crop(i) for i in chosen])
    except UnreadableImage:  # a photo gone since it was answered: the evaluation shows the rest without maps
        return None
    overlays = dict(zip(chosen, (e.overlay() for e in explain_crops(classifier, crops))))
    return overlays.__getitem__


def stored_val_features(classifier: Classifier, val: DecodedSplit) -> torch.Tensor | None:
    """The frozen backbone's features of every validation crop, when the per-photo store holds them all (what
    training's probe read or computed), else None. Only for a backbone that never trained (extract): the store is
    keyed by its weights, so a hit is the very vector the backbone would compute."""
    if not val.keys or classifier.model.training:
        return None
    from transferlab.data.spaces import feature_space
    from transferlab.models.onnx_features import feature_identity
    from transferlab.store import open_store

    identity = feature_identity(classifier.model.backbone, classifier.spec, None)
    rows = open_store().get_many(feature_space(identity, val.space, "as-is"), val.keys)
    dim = classifier.spec.feature_dim
    if any(row is None or row.shape != (dim,) or not np.isfinite(row).all() for row in rows):
        return None
    return torch.from_numpy(np.stack([r for r in rows if r is not None]).astype(np.float32))


# --- plots ------------------------------------------------------------------------------------------------


def write_predictions(evaluation: Evaluation, path: Path) -> None:
    """One row per image: path, true and predicted class, probability of each class."""
    write_atomically(path, lambda tmp: _write_predictions(evaluation, tmp))


def _write_predictions(evaluation: Evaluation, path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", "correct"] + [f"p_{c}" for c in evaluation.classes])
        for i, file in enumerate(evaluation.paths):
            writer.writerow(
                [
                    file,
                    evaluation.classes[evaluation.labels[i]],
                    evaluation.classes[evaluation.predicted[i]],
                    int(evaluation.correct[i]),
                ]
                + [f"{p:.9g}" for p in evaluation.probs[i]]
            )


def read_evaluation(run_dir: Path) -> Evaluation | None:
    """An Evaluation rebuilt from a run's evaluation/predictions.csv (None if the run was not evaluated)."""
    path = Path(run_dir) / "evaluation" / "predictions.csv"
    if not path.exists():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        classes = [k[2:] for k in rows[0] if k and k.startswith("p_")] if rows else []
        probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
        labels = np.array([classes.index(r["true"]) for r in rows])
        return Evaluation(
            run_dir=Path(run_dir), classes=classes, paths=[r["path"] for r in rows], labels=labels, probs=probs
        )
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, csv.Error):
        raise DamagedFile(path, "is damaged", "evaluate the run again: `transferlab evaluate RUN`") from None


def per_class_table(evaluation: Evaluation) -> str:
    lines = ["| class | precision | recall | F1 | images |", "|---|---|---|---|---|"]
    for name, row in evaluation.per_class().items():
        scores = f"{row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']}"
        lines.append(f"| {markdown_text(name)} | {scores} |")
    lines.append(f"| **macro** | | | **{evaluation.macro_f1:.3f}** | {len(evaluation.labels)} |")
    return "\n".join(lines)


def confusion_table(evaluation: Evaluation) -> str:
    classes = evaluation.classes
    header = " | ".join(markdown_text(c) for c in classes)
    lines = ["| true \\ predicted | " + header + " |", "|---|" + "---|" * len(classes)]
    for name, row in zip(classes, evaluation.confusion()):
        lines.append(f"| {markdown_text(name)} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def write_evaluation(
    evaluation: Evaluation, out_dir: Path, overlay: Callable[[int], Image.Image] | None = None
) -> None:
    """Write evaluation.json, the plots and evaluation.md into `out_dir`; with `overlay` (photo i's heat map),
    also the top losses' heat maps (top_losses_heat.png)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Figure | Image.Image] = {
        "confusion_matrix.png": plot_confusion(evaluation),
        "reliability.png": plot_reliability(evaluation),
        "top_losses.png": plot_top_losses(evaluation),
        "predictions.png": plot_prediction_grid(evaluation),
    }
    (out_dir / HEAT).unlink(missing_ok=True)  # an earlier evaluation's, of another model
    if overlay is not None and top_losses(evaluation):
        figures[HEAT] = plot_top_losses(evaluation, overlay=overlay)
    for name, fig in figures.items():
        save_figure(fig, out_dir / name)
    (out_dir / "evaluation.json").write_text(json.dumps(evaluation.summary(), indent=2))
    write_predictions(evaluation, out_dir / "predictions.csv")
    (out_dir / "evaluation.md").write_text(evaluation_markdown(evaluation, heat=HEAT in figures))


def evaluation_markdown(evaluation: Evaluation, prefix: str = "", heading: str = "##", heat: bool = False) -> str:
    """The evaluation as markdown; `prefix` is the plots' folder relative to where the markdown lives; `heat`: the
    top losses' heat maps were drawn."""
    skipped = f"\n\n{len(evaluation.skipped)} unreadable file(s) skipped." if evaluation.skipped else ""
    return "\n".join(
        [
            f"{heading} Evaluation: {markdown_text(evaluation.run_dir.name)}",
            "",
            evaluation.summary_line() + skipped,
            "",
            per_class_table(evaluation),
            "",
            confusion_table(evaluation),
            "",
            f"![confusion matrix]({prefix}confusion_matrix.png)",
            f"![reliability]({prefix}reliability.png)",
            "",
            f"![top losses]({prefix}top_losses.png)",
            *([f"![where the top losses' answers come from]({prefix}{HEAT})"] if heat else []),
            "",
            f"![predictions]({prefix}predictions.png)",
            "",
        ]
    )
