"""Sorting a pile: the class each unsorted photo most likely belongs to, learned from the photos already sorted.

`suggest` reads every photo's frozen features from the per-photo store (the live model's: only photos with new
bytes are decoded and passed through the backbone), and scores the pile with two views of the same features (see
`pile_probabilities`): a cross-validated probe fitted on the labelled photos, and the labels spread along the
pile's own neighbours (photos of one class lie near each other, sorted or not). A class the person rejected for a
photo is never suggested for it again (its probability becomes 0, the rest renormalised: what the person said,
taken as evidence). Each photo also says whether it looks like none of the classes: farther from its nearest
labelled photos than 95% of the labelled photos are from theirs.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferlab.data.images import is_image_file
from transferlab.errors import DatasetError, UsageError

PAGE = 30  # photos a page of suggestions shows
FIRST = 12  # photos "label these first" names
NEIGHBOURS = 10  # of each photo in the graph the labels spread along
SPREAD = 0.8  # how much a photo's spread label comes from its neighbours (the rest from its own label, if any)


@dataclass(frozen=True, kw_only=True)
class Suggestion:
    """One pile photo: the class suggested for it and how sure."""

    path: Path
    suggested: str  # the most probable class not rejected for this photo
    probability: float
    probabilities: list[float]  # per class (`PileSuggestions.classes`); 0 for a class rejected for it
    unknown: bool  # looks like none of the classes


@dataclass(frozen=True, kw_only=True)
class PileSuggestions:
    """Suggestions for a pile, most probable first within each suggested class."""

    classes: list[str]
    photos: list[Suggestion]
    labelled: int  # labelled photos the suggestions learned from
    skipped: list[tuple[Path, str]]  # pile photos that could not be read, and why
    decoded: int  # photos decoded for this call (new bytes)
    seconds: float

    def page(self, cls: str, size: int = PAGE) -> list[Suggestion]:
        """The first page of photos suggested as `cls`: the most probable first, photos that look like none of the
        classes after the rest."""
        chosen = [s for s in self.photos if s.suggested == cls]
        return sorted(chosen, key=lambda s: (s.unknown, -s.probability))[:size]

    def first_to_label(self, count: int = FIRST) -> list[Suggestion]:
        """The photos whose labels would teach the model most (margin sampling): the least sure suggestions, those
        with the smallest gap between their two most probable classes."""

        def gap(s: Suggestion) -> float:
            top = sorted(s.probabilities, reverse=True)
            return top[0] - (top[1] if len(top) > 1 else 0.0)

        return sorted(self.photos, key=gap)[:count]


def pile_files(pile: str | Path) -> list[Path]:
    """Every image file under `pile` (searched recursively; hidden files and folders skipped)."""
    from transferlab.data.layout import files_below

    root = Path(pile).expanduser()
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    return [path for path in files_below(root) if is_image_file(path)]


def suggest(
    photos: str | Path,
    pile: str | Path,
    *,
    rejected: Mapping[Path, Collection[str]] | None = None,
    backbone: str = "efficientnet_lite0",
    workers: int | None = None,
    quiet: bool = False,
) -> PileSuggestions:
    """Suggest a class for every photo of `pile` from the labelled photos of `photos` (class folders, or train/ and
    val/). `rejected` maps a pile photo to the classes the person said it is not."""
    import torch

    from transferlab.config import DataConfig, TrainConfig
    from transferlab.data.layout import Sample
    from transferlab.data.prepare import prepare_data
    from transferlab.models.model import create_backbone
    from transferlab.training.feature_cache import FeatureRequest
    from transferlab.training.features import features_for, photo_features
    from transferlab.utils.distributed import Dist

    start = time.perf_counter()
    photos = Path(photos).expanduser()
    config = TrainConfig(
        data=DataConfig(root=str(photos)), strategy="extract", backbone=backbone, quiet=True, workers=workers
    )
    prepared = prepare_data(config)  # the live model's and the label check's features: read, not computed again
    classes = prepared.dataset.classes
    known = {p.resolve() for p in prepared.train.paths + prepared.val.paths}
    files = [p for p in pile_files(pile) if p.resolve() not in known]  # a pile inside the folder: its sorted photos
    if not files:
        raise DatasetError(f"{pile}: no photos to sort (looked for image files in it and below)")
    network, spec, _ = create_backbone(backbone)
    network.eval()
    request = FeatureRequest(backbone=network, spec=spec, train=prepared.train, val=prepared.val, centre=True)
    alone = Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    sorted_ = features_for(request, dist=alone, quiet=quiet)
    assert sorted_.train_centre is not None  # asked for with centre=True
    x_lab = torch.cat([sorted_.train_centre, sorted_.val])
    y_lab = torch.cat([prepared.train.labels, prepared.val.labels])
    # the pile as validation photos are seen (the same store space: one landing in val/ is never computed again)
    found = photo_features(
        [Sample(path=p, label=-1) for p in files], network, spec, config.data.background, workers=workers, quiet=quiet
    )
    pile_paths, x_pile = found.paths, found.features.numpy()
    with torch.no_grad():
        probabilities = pile_probabilities(x_lab.numpy(), y_lab.numpy(), x_pile, len(classes))
        strangers = looks_unknown(x_lab.numpy(), x_pile)
    photos_out = _suggestions(classes, pile_paths, probabilities, strangers, rejected or {})
    return PileSuggestions(
        classes=classes, photos=photos_out, labelled=int(len(y_lab)), skipped=found.skipped,
        decoded=found.decoded + prepared.train.decoded + prepared.val.decoded,
        seconds=time.perf_counter() - start,
    )  # fmt: skip


def _suggestions(classes, pile_paths, probabilities, strangers, rejected) -> list[Suggestion]:
    """Each pile photo's suggestion, rejected classes at 0 and the rest renormalised, grouped by class."""
    said = {Path(p).resolve(): set(c) for p, c in rejected.items()}
    photos_out = []
    for path, p, stranger in zip(pile_paths, probabilities, strangers):
        refused = said.get(path.resolve(), set())
        p = np.where([c in refused for c in classes], 0.0, p)
        p = p / p.sum() if p.sum() > 0 else np.full(len(classes), 1.0 / len(classes))
        best = int(np.argmax(p))
        photos_out.append(
            Suggestion(
                path=path,
                suggested=classes[best],
                probability=float(p[best]),
                probabilities=[float(v) for v in p],
                unknown=bool(stranger),
            )  # fmt: skip
        )
    photos_out.sort(key=lambda s: (classes.index(s.suggested), s.unknown, -s.probability))
    return photos_out


def pile_probabilities(x_lab: np.ndarray, y_lab: np.ndarray, x_pile: np.ndarray, num_classes: int) -> np.ndarray:
    """(pile photos, classes) probabilities: the mean of the probe's (fitted on the labelled photos) and of the
    labels spread over the graph of every photo's nearest neighbours (labelled and pile together)."""
    import torch

    from transferlab.training.probe import fit_probe

    probe = fit_probe(torch.from_numpy(x_lab), torch.from_numpy(y_lab), num_classes)
    fitted = probe.logits(torch.from_numpy(x_pile)).softmax(1).numpy()
    spread = spread_labels(x_lab, y_lab, x_pile, num_classes)
    return 0.5 * fitted + 0.5 * spread


def spread_labels(x_lab: np.ndarray, y_lab: np.ndarray, x_pile: np.ndarray, num_classes: int) -> np.ndarray:
    """Label spreading (Zhou et al., 2004) over the `NEIGHBOURS`-nearest-neighbour graph of the unit-length features:
    each pile photo's share of each class. scikit-learn's `LabelSpreading(kernel="knn", alpha=SPREAD)` computed
    with numpy and scipy.sparse (tests/test_suggest.py checks them equal): importing scikit-learn's semi_supervised
    took 1 s of every round's 3."""
    from scipy import sparse

    x = np.concatenate([x_lab, x_pile]).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n, k = len(x), min(NEIGHBOURS, len(x) - 1)
    columns = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, 1024):  # each photo's k nearest, itself included (scikit-learn's graph), by blocks
        similarity = x[start : start + 1024] @ x.T
        block = np.arange(len(similarity))
        similarity[block, start + block] = np.inf  # itself first, whatever ties
        columns[start : start + len(similarity)] = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    other = rows != columns.ravel()  # the self-loops go: scipy's normalised Laplacian ignores them
    graph = sparse.csr_matrix((np.ones(int(other.sum())), (rows[other], columns.ravel()[other])), shape=(n, n))
    degree = np.asarray(graph.sum(0)).ravel()  # its degrees: column sums, as scipy's
    scale = sparse.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    graph = (scale @ graph @ scale).tocsr()
    static = np.zeros((n, num_classes))
    static[np.arange(len(y_lab)), y_lab] = 1.0
    shares, static = static.copy(), (1 - SPREAD) * static
    for _ in range(100):
        before, shares = shares, SPREAD * (graph @ shares) + static
        if np.abs(shares - before).sum() < 1e-3:
            break
    shares = shares[len(x_lab) :]
    total = shares.sum(1, keepdims=True)
    return np.where(total > 0, shares / np.where(total > 0, total, 1.0), 1.0 / num_classes)


def looks_unknown(x_lab: np.ndarray, x_pile: np.ndarray, k: int = 5, quantile: float = 0.95) -> np.ndarray:
    """Whether each pile photo lies farther from its `k` nearest labelled photos (mean cosine distance) than the
    `quantile` of the labelled photos do from theirs (each leaving itself out)."""
    from transferlab.inference.unknown import conformal_threshold

    unit = x_lab / np.maximum(np.linalg.norm(x_lab, axis=1, keepdims=True), 1e-12)
    k = max(1, min(k, len(unit) - 1))
    own = 1.0 - unit @ unit.T
    np.fill_diagonal(own, np.inf)
    threshold = conformal_threshold(np.sort(own, axis=1)[:, :k].mean(1), quantile)
    pile = x_pile / np.maximum(np.linalg.norm(x_pile, axis=1, keepdims=True), 1e-12)
    distances = np.sort(1.0 - pile @ unit.T, axis=1)[:, :k].mean(1)
    return distances > threshold
