"""Wrong labels and strangers, found by the model (`doctor --labels`).

Every readable image (train and val) gets its centre-crop features from a frozen pretrained backbone (cached like
any features), then out-of-sample class probabilities by k-fold cross-validation of the same probe `extract` fits
(`probe.cross_val_probabilities`: each image judged by a head that never saw it). Confident learning
(`confident_learning`: per-class thresholds, the confident joint) then keeps three lists apart, each for its own
action: a *likely wrong label* (another class is confident and its own is not: move it), *looks like two classes*
(both are confident: a photo of both, or a hard one: look), and an *unusual photo* (an outlier: far from every other
image in feature space, its mean cosine distance to its nearest neighbours unusually large by a robust z-score over
the folder; probably no photo of any class, whatever class fits it best). It also estimates how many photos of the
folder are misfiled. Nothing is moved: the lists, a gallery and a page are written for a person to look at.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from transferlab.errors import at_least

if TYPE_CHECKING:
    import torch

log = logging.getLogger("transferlab")

NEIGHBOURS = 5  # an outlier is far from its 5 nearest images (a stranger saved twice is still a stranger)
OUTLIER_Z = 4.0  # robust z-score (median and MAD) of that distance above which an image is called an outlier
SHOWN = 20
TORN = 0.3  # a photo the model splits between its own class and another, each at least this likely, none confident


IssueKind = Literal["label", "ambiguous", "outlier"]


@dataclass(kw_only=True)
class LabelIssue:
    path: str  # relative to the photo folder
    label: str  # the class it is filed under
    suggested: str  # the class the cross-validated probe finds most likely
    p_label: float  # out-of-fold probability of `label`
    p_suggested: float
    kind: IssueKind  # "label" (likely wrong), "ambiguous" (looks like two classes), "outlier" (like no other)
    distance: float  # mean cosine distance to its nearest images
    outlier_z: float  # that distance's robust z-score over the folder


@dataclass(kw_only=True)
class LabelCheck:
    root: str
    backbone: str
    folds: int
    images: int
    cv_accuracy: float  # share of images whose out-of-fold prediction is their label
    seconds: float
    estimated_errors: int = 0  # photos of the folder filed under a wrong class, estimated by confident learning
    issues: list[LabelIssue] = field(default_factory=list)  # likely wrong, then two classes, then outliers
    ranking: list[str] = field(default_factory=list)  # every image, lowest p_label first
    page: str = ""  # label_issues.html

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "ranking"}


def check_labels(
    root: str | Path,
    backbone: str = "auto",
    weights: str | None = None,
    folds: int = 5,
    seed: int = 0,
    workers: int | None = None,
    *,
    quiet: bool = False,
    feature_cache: bool = True,
    out: str | Path | None = None,
) -> LabelCheck:
    """Rank the images of `root` most likely mislabeled and the outliers; write a gallery and a page into `out`."""
    from transferlab.data.layout import check_out_folder, shown_path
    from transferlab.training.probe import cross_val_probabilities, usable_folds

    at_least("folds", folds, 2)
    start = time.perf_counter()
    if out is not None:
        check_out_folder(out, root)
    name, classes, x, y, paths = _folder_features(root, backbone, weights, workers, quiet, feature_cache)
    probabilities = cross_val_probabilities(x, y, len(classes), folds, seed).numpy()
    labels = y.numpy()
    distance = neighbour_distance(x.numpy())
    z = robust_z(distance)
    base = Path(root).expanduser()
    rel = [shown_path(p, base) for p in paths]
    p_label = probabilities[np.arange(len(labels)), labels]
    verdict = confident_learning(probabilities, labels)
    order = np.argsort(p_label, kind="stable")
    chosen = _chosen(verdict, p_label, z)

    def issue(i: int, kind: IssueKind) -> LabelIssue:
        other = int(verdict.suggested[i])
        return LabelIssue(
            path=rel[i], label=classes[labels[i]], suggested=classes[other], p_label=float(p_label[i]),
            p_suggested=float(probabilities[i, other]), kind=kind, distance=float(distance[i]), outlier_z=float(z[i]),
        )  # fmt: skip

    check = LabelCheck(
        root=str(base),
        backbone=name,
        folds=usable_folds(y, len(classes), folds),
        images=len(labels),
        cv_accuracy=float((probabilities.argmax(1) == labels).mean()),
        seconds=0.0,
        estimated_errors=verdict.estimated_errors,
        issues=[issue(i, kind) for i, kind in chosen],
        ranking=[rel[i] for i in order],
    )
    if out is not None:
        check.page = str(write_page(check, [paths[i] for i, _ in chosen], Path(out)))
    check.seconds = time.perf_counter() - start
    return check


def _chosen(verdict: Verdict, p_label: np.ndarray, z: np.ndarray) -> list[tuple[int, IssueKind]]:
    """The photos to list, in order: likely wrong labels (surest first), then two classes, then the outliers
    (farthest first; like no photo at all, so not a question of class)."""
    by_margin = np.lexsort((p_label, verdict.margin))  # most confidently another class first
    chosen: list[tuple[int, IssueKind]] = [
        (int(i), kind)
        for kind in ("label", "ambiguous")
        for i in by_margin
        if verdict.kinds[i] == kind and z[i] <= OUTLIER_Z
    ]
    return chosen + [(int(i), "outlier") for i in np.argsort(-z) if z[i] > OUTLIER_Z]


def _folder_features(
    root: str | Path, backbone: str, weights: str | None, workers: int | None, quiet: bool, feature_cache: bool
) -> tuple[str, list[str], torch.Tensor, torch.Tensor, list]:
    """(backbone, classes, centre-crop features, labels, paths) of every readable image of `root`, train and val."""
    from transferlab.config import DataConfig, TrainConfig
    from transferlab.data.prepare import prepare_data
    from transferlab.models.backbones import resolve_backbone
    from transferlab.training.features import every_image_features

    name, why = resolve_backbone(backbone, weights)
    if why:
        log.info("%s", why)
    config = TrainConfig(
        data=DataConfig(root=str(root)),
        strategy="extract",
        backbone=name,
        weights=weights,
        workers=workers,
        quiet=quiet,
        feature_cache=feature_cache,
    )
    prepared = prepare_data(config)
    x, y, paths = every_image_features(config, prepared)
    return name, prepared.dataset.classes, x, y, paths


@dataclass(kw_only=True)
class Verdict:
    """What confident learning says of each photo (`confident_learning`)."""

    kinds: np.ndarray  # "label", "ambiguous" or "" per photo
    suggested: np.ndarray  # the class it confidently belongs to (its argmax where none is confident)
    margin: np.ndarray  # p(own label) - p(suggested): the lower, the surer the label is wrong
    estimated_errors: int  # how many photos of the folder carry a wrong label, estimated


def confident_learning(probabilities: np.ndarray, labels: np.ndarray) -> Verdict:
    """Confident learning (Northcutt et al., 2021) on out-of-fold probabilities, cut by the noise rate.

    Each class j gets a threshold t_j: the mean probability of j over the photos filed under j (how sure the model
    is of that class's own photos). A photo's *confident class* is the most likely of the classes whose probability
    reaches their threshold; the *confident joint* counts photos by (filed class, confident class), and scaled to
    each class's count its off-diagonal estimates how many photos are misfiled, per pair of classes. For each pair
    (filed y, belongs to j), that many photos filed under y with the largest margin p(j) - p(y) are listed as
    *likely wrong labels* (cleanlab's "prune by noise rate"), suggested j; so the list is as long as the estimate.
    Of those, a photo whose own class also reaches its threshold *looks like two classes* instead, and so does any
    other photo another class fits better without confidence, or that the model splits between its own class and
    another (each at least TORN): a photo of both, a hard one, or a wrong label the model is not sure of; the rest
    are left alone.
    """
    n, k = probabilities.shape
    thresholds = np.array([probabilities[labels == j, j].mean() if np.any(labels == j) else 1.0 for j in range(k)])
    confident = probabilities >= thresholds[None, :]
    has_confident = confident.any(1)
    confident_class = np.where(has_confident, np.where(confident, probabilities, -1.0).argmax(1), -1)
    joint = np.zeros((k, k))
    np.add.at(joint, (labels[has_confident], confident_class[has_confident]), 1)
    counts = np.bincount(labels, minlength=k)
    scaled = joint / np.maximum(joint.sum(1, keepdims=True), 1) * counts[:, None]
    rows = np.arange(n)
    own = probabilities[rows, labels]
    others = probabilities.copy()
    others[rows, labels] = -1.0
    suggested = others.argmax(1)
    pruned = np.zeros(n, dtype=bool)
    for y in range(k):
        for j in range(k):
            number = int(round(float(scaled[y, j]))) if j != y else 0
            if number:
                filed = np.flatnonzero(labels == y)
                margin = probabilities[filed, j] - probabilities[filed, y]
                chosen = filed[np.argsort(-margin, kind="stable")[:number]]
                chosen = chosen[~pruned[chosen]]
                pruned[chosen], suggested[chosen] = True, j
    wrong = pruned & (own < thresholds[labels])
    other = probabilities[rows, suggested]
    torn = ~wrong & ((other > own) | ((own >= TORN) & (other >= TORN)))  # another class likelier, or close to it
    kinds = np.where(wrong, "label", np.where(torn | pruned, "ambiguous", ""))
    estimated = int(round(float(scaled.sum() - np.trace(scaled))))
    return Verdict(
        kinds=kinds, suggested=suggested, margin=own - probabilities[rows, suggested], estimated_errors=estimated
    )


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
    from transferlab.analysis.gallery import gallery
    from transferlab.analysis.report import write_html
    from transferlab.utils.storage import save_figure, save_json

    out.mkdir(parents=True, exist_ok=True)
    shown = check.issues[:SHOWN]

    def caption(i: int) -> tuple[str, bool]:
        item = shown[i]
        if item.kind in ("label", "ambiguous"):
            how = "looks like" if item.kind == "label" else "also like"
            return (
                f"filed {item.label} ({item.p_label:.0%})\n{how} {item.suggested} ({item.p_suggested:.0%})\n"
                f"{Path(item.path).name}",
                True,
            )
        return f"{item.label}: like no other photo\n(distance z {item.outlier_z:.1f})\n{Path(item.path).name}", True

    if shown:
        figure = gallery(files[:SHOWN], list(range(len(shown))), "Check these labels", caption)
        save_figure(figure, out / "label_issues.png")
    save_json(check.as_dict(), out / "label_issues.json")
    lines = [f"# Label check: {check.root}", "", describe(check), ""]
    if shown:
        lines += ["![the first suspects](label_issues.png)", ""]
    lines += [
        "| # | file | filed under | suggested | p(filed) | p(suggested) | kind |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {i.path} | {i.label} | {i.suggested if i.kind != 'outlier' else '-'} | {i.p_label:.1%} | "
        f"{i.p_suggested:.1%} | {i.kind} |"
        for n, i in enumerate(check.issues, 1)
    ]
    page = out / "label_issues.md"
    page.write_text("\n".join(lines) + "\n")
    return write_html(page, "transferlab label check")


def describe(check: LabelCheck) -> str:
    """One paragraph: what was checked, how, and what was found."""
    mislabeled = sum(1 for i in check.issues if i.kind == "label")
    ambiguous = sum(1 for i in check.issues if i.kind == "ambiguous")
    outliers = len(check.issues) - mislabeled - ambiguous
    return (
        f"{check.images} images judged by a {check.folds}-fold cross-validated probe on {check.backbone} "
        f"features (each by a head that never saw it; {check.cv_accuracy:.1%} agree with their label); about "
        f"{check.estimated_errors} are filed under a wrong class (confident learning's estimate). "
        f"{mislabeled} likely have a wrong label (another class is confident, their own is not; surest first), "
        f"{ambiguous} look like two classes (the model splits between two), {outliers} are unusual photos (robust z > "
        f"{OUTLIER_Z:g} of the distance to their {NEIGHBOURS} nearest images). Nothing was moved."
    )


def format_check(check: LabelCheck, shown: int = SHOWN) -> str:
    """The label check as text for the terminal."""
    lines = ["labels: " + describe(check)]
    for item in check.issues[:shown]:
        if item.kind in ("label", "ambiguous"):
            how = "looks like" if item.kind == "label" else "looks like two classes: also"
            lines.append(
                f"    {item.path}: filed {item.label} ({item.p_label:.0%}), {how} {item.suggested} "
                f"({item.p_suggested:.0%})"
            )
        else:
            lines.append(f"    {item.path}: {item.label}, but like no other photo (distance z {item.outlier_z:.1f})")
    if len(check.issues) > shown:
        lines.append(f"    ... and {len(check.issues) - shown} more (--json, or the page, for all)")
    if check.page:
        lines.append(f"gallery and full list: {check.page}")
    return "\n".join(lines)
