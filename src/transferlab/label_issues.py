"""Wrong labels and strangers, found by the model (`doctor --labels`).

Every readable image (train and val) gets its centre-crop features from a frozen pretrained backbone (cached like
any features), then out-of-sample class probabilities by k-fold cross-validation of the same probe `extract` fits
(`probe.cross_val_probabilities`: each image judged by a head that never saw it). Images are ranked by the
probability of the label they carry, lowest first (confident learning's "self-confidence"); those another class
fits better are *likely mislabeled*, with that class as the suggestion. *Outliers* are images far from every other
image in feature space: their mean cosine distance to their nearest neighbours is unusually large (robust z-score
over the folder); such a picture is listed as an outlier even when a class fits it better, since it is probably
no photo of any class. Nothing is moved: the list, a gallery and a page are written for a person to look at.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("transferlab")

NEIGHBOURS = 5  # an outlier is far from its 5 nearest images (a stranger saved twice is still a stranger)
OUTLIER_Z = 4.0  # robust z-score (median and MAD) of that distance above which an image is called an outlier
SHOWN = 20


@dataclass
class LabelIssue:
    path: str  # relative to the photo folder
    label: str  # the class it is filed under
    suggested: str  # the class the cross-validated probe finds most likely
    p_label: float  # out-of-fold probability of `label`
    p_suggested: float
    kind: str  # "label" (another class fits better) or "outlier" (far from every image)
    distance: float  # mean cosine distance to its nearest images
    outlier_z: float  # that distance's robust z-score over the folder


@dataclass
class LabelCheck:
    root: str
    backbone: str
    folds: int
    images: int
    cv_accuracy: float  # share of images whose out-of-fold prediction is their label
    seconds: float
    issues: list[LabelIssue] = field(default_factory=list)  # mislabeled (lowest p_label first), then outliers
    ranking: list[str] = field(default_factory=list)  # every image, lowest p_label first
    page: str = ""  # label_issues.html

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "ranking"}


def check_labels(root: str | Path, backbone: str = "auto", weights: str | None = None, folds: int = 5,
                 seed: int = 0, workers: int | None = None, quiet: bool = False, feature_cache: bool = True,
                 out: str | Path | None = None) -> LabelCheck:
    """Rank the images of `root` most likely mislabeled and the outliers; write a gallery and a page into `out`."""
    from .backbones import resolve_backbone
    from .config import DataConfig, TrainConfig
    from .data import check_out_folder
    from .features import every_image_features
    from .prepare import prepare_data
    from .probe import cross_val_probabilities, usable_folds

    start = time.perf_counter()
    if out is not None:
        check_out_folder(out, root)
    name, why = resolve_backbone(backbone, weights)
    if why:
        log.info("%s", why)
    config = TrainConfig(DataConfig(str(root)), strategy="extract", backbone=name, weights=weights,
                         workers=workers, quiet=quiet, feature_cache=feature_cache)
    prepared = prepare_data(config)
    classes = prepared.dataset.classes
    x, y, paths = every_image_features(config, prepared)
    probabilities = cross_val_probabilities(x, y, len(classes), folds, seed).numpy()
    labels = y.numpy()
    distance = neighbour_distance(x.numpy())
    z = robust_z(distance)
    base = Path(root).expanduser()
    rel = [str(Path(p).relative_to(base)) if Path(p).is_relative_to(base) else str(p) for p in paths]
    rows = np.arange(len(labels))
    p_label = probabilities[rows, labels]
    suggested = probabilities.argmax(1)
    order = np.argsort(p_label, kind="stable")

    def issue(i: int, kind: str) -> LabelIssue:
        return LabelIssue(rel[i], classes[labels[i]], classes[suggested[i]], float(p_label[i]),
                          float(probabilities[i, suggested[i]]), kind, float(distance[i]), float(z[i]))

    strangers = [i for i in np.argsort(-z) if z[i] > OUTLIER_Z]  # like no photo at all: not a question of class
    chosen = [(i, "label") for i in order if suggested[i] != labels[i] and z[i] <= OUTLIER_Z]
    chosen += [(i, "outlier") for i in strangers]
    check = LabelCheck(str(base), name, usable_folds(y, len(classes), folds), len(labels),
                       float((suggested == labels).mean()), 0.0, [issue(i, kind) for i, kind in chosen],
                       [rel[i] for i in order])
    if out is not None:
        check.page = str(write_page(check, [paths[i] for i, _ in chosen], Path(out)))
    check.seconds = time.perf_counter() - start
    return check


def neighbour_distance(features: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Each row's mean cosine distance to its k nearest other rows."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    distances = 1.0 - unit @ unit.T
    np.fill_diagonal(distances, np.inf)
    k = max(1, min(k, len(features) - 1))
    return np.sort(distances, axis=1)[:, :k].mean(1)


def robust_z(values: np.ndarray) -> np.ndarray:
    """(value - median) / (1.4826 x median absolute deviation): a z-score that outliers themselves do not inflate."""
    median = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - median))
    return (values - median) / max(spread, 1e-12)


def write_page(check: LabelCheck, files: list[Path], out: Path) -> Path:
    """label_issues.png (a gallery of the first suspects with their suggested label) and label_issues.md/.html."""
    from .gallery import gallery
    from .report import write_html
    from .storage import save_json

    out.mkdir(parents=True, exist_ok=True)
    shown = check.issues[:SHOWN]

    def caption(i: int) -> tuple[str, bool]:
        item = shown[i]
        if item.kind == "label":
            return (f"filed {item.label} ({item.p_label:.0%})\nlooks like {item.suggested} ({item.p_suggested:.0%})\n"
                    f"{Path(item.path).name}", True)
        return f"{item.label}: like no other photo\n(distance z {item.outlier_z:.1f})\n{Path(item.path).name}", True

    if shown:
        figure = gallery(files[:SHOWN], list(range(len(shown))), "Check these labels", caption)
        figure.savefig(out / "label_issues.png", dpi=100)
    save_json(check.as_dict(), out / "label_issues.json")
    lines = [f"# Label check: {check.root}", "", describe(check), ""]
    if shown:
        lines += ["![the first suspects](label_issues.png)", ""]
    lines += ["| # | file | filed under | suggested | p(filed) | p(suggested) | kind |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {i.path} | {i.label} | {i.suggested if i.kind == 'label' else '-'} | {i.p_label:.1%} | "
              f"{i.p_suggested:.1%} | {i.kind} |" for n, i in enumerate(check.issues, 1)]
    page = out / "label_issues.md"
    page.write_text("\n".join(lines) + "\n")
    return write_html(page, "transferlab label check")


def describe(check: LabelCheck) -> str:
    """One paragraph: what was checked, how, and what was found."""
    mislabeled = sum(1 for i in check.issues if i.kind == "label")
    outliers = len(check.issues) - mislabeled
    return (f"{check.images} images judged by a {check.folds}-fold cross-validated probe on {check.backbone} "
            f"features (each by a head that never saw it; {check.cv_accuracy:.1%} agree with their label): "
            f"{mislabeled} fit another class better (likely mislabeled, lowest probability of their own label "
            f"first), {outliers} are outliers (robust z > {OUTLIER_Z:g} of the distance to their {NEIGHBOURS} "
            f"nearest images). Nothing was moved.")


def format_check(check: LabelCheck, shown: int = SHOWN) -> str:
    """The label check as text for the terminal."""
    lines = ["labels: " + describe(check)]
    for item in check.issues[:shown]:
        if item.kind == "label":
            lines.append(f"    {item.path}: filed {item.label} ({item.p_label:.0%}), looks like {item.suggested} "
                         f"({item.p_suggested:.0%})")
        else:
            lines.append(f"    {item.path}: {item.label}, but like no other photo (distance z {item.outlier_z:.1f})")
    if len(check.issues) > shown:
        lines.append(f"    ... and {len(check.issues) - shown} more (--json, or the page, for all)")
    if check.page:
        lines.append(f"gallery and full list: {check.page}")
    return "\n".join(lines)
