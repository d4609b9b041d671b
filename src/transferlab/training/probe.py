"""A linear probe: the head of a frozen backbone fitted in one go instead of trained by epochs.

`fit_probe` standardises the features, fits a full-batch L2-regularised multinomial logistic regression
(scikit-learn's objective, solved by SciPy's L-BFGS-B on torch's matrix products) with its strength C chosen by
stratified k-fold cross-validation on the training features only, and folds the standardisation back into one weight
matrix and bias: the result is an ordinary `nn.Linear` head, so predict, export and two-stage use it unchanged. With
few photos per class this is what a careful practitioner fits on frozen features; the tutorial's SGD head (`--recipe
reference`) is kept for reproducing the reference project.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from transferlab.training._solver import (
    FLOAT_STEP,
    Design,
    affine,
    fit_temperature,
    lift,
    logistic,
    predicted,
    start_in,
)
from transferlab.utils.progress import report

if TYPE_CHECKING:
    from transferlab.runs import EpochRecord
    from transferlab.training.feature_cache import FeatureCache

C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 13))  # inverse L2 strength, 10^-4 ... 10^2, half decades
FOLDS = 5
SEARCH_PHOTOS = 4000  # the strength is cross-validated on at most this many photos (`_search_rows`)
PAST_BEST = 3  # stop walking up the C grid once this many values in a row scored strictly below the best


@dataclass(kw_only=True)
class Probe:
    """A fitted linear head: logits = features @ weight.T + bias."""

    weight: torch.Tensor  # (classes, features)
    bias: torch.Tensor  # (classes,)
    C: float  # the regularisation strength chosen by cross-validation
    cv_accuracy: float  # its mean accuracy over the folds
    folds: int
    seconds: float
    cv_recall: list[float] | None = None  # per class: the share of its photos the held-out folds got right
    solution: torch.Tensor | None = None  # (features + 1, classes) on standardised features: a later fit's start
    fold_solutions: list[torch.Tensor] = field(default_factory=list)  # each fold's, the same way: its folds' starts

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features.float() @ self.weight.T + self.bias


def fit_probe(
    features: torch.Tensor | Design,
    labels: torch.Tensor,
    num_classes: int,
    folds: int = FOLDS,
    grid: tuple[float, ...] = C_GRID,
    seed: int = 0,
    *,
    start: Probe | None = None,
    tolerance: float = FLOAT_STEP,
    assignment: np.ndarray | None = None,
) -> Probe:
    """Cross-validated L2 logistic regression on (N, D) features, then refitted on every training feature.

    `start` (a previous fit on nearly the same photos) is where the solves begin, each fold from that fit's same
    fold and the refit from its solution: the minimum does not depend on it, the number of steps to it does (the
    studio's live model refits this way after each change).
    `tolerance`: the solver stops when a step lowers the loss by less than this fraction (default: float32's
    resolution).
    `features` may be a `Design` made from them earlier (the live model keeps one while its photos stay the same:
    nothing standardised or laid out again).
    `assignment`: each row's fold (-1: outside the folds), as `fold_assignment` deals them by default. The live model
    keeps each photo in its fold from one fit to the next: after a move, every fold's photos are the same but for
    that photo (or all the same, when it is outside the folds), so each fold's solve, started from its last
    solution, is there in a few steps.

    C is the one with the best held-out accuracy, ties going to the strongest regularisation (as scikit-learn's
    grid search picks). With few images that is often a very small C, whose probabilities are all near 1/classes
    although its ranking is right; so the refitted head is divided by a temperature fitted on the folds' held-out
    logits (temperature scaling: the argmax, hence the accuracy, is unchanged; the probabilities mean what they say).

    The objective is scikit-learn's LogisticRegression (multinomial): C x summed cross-entropy + ||W||^2 / 2, on
    standardised features, solved here by SciPy's L-BFGS-B with the gradient computed in float32 by torch (until the
    loss stops going down at that precision; not torch.optim, whose first use imports torch's compiler: ~2 s to start
    and ~2 s to exit) in the span of the training rows when they are fewer than the features (several times faster than
    scikit-learn's lbfgs on these sizes, same solutions: see tests/test_probe.py; `benchmarks/probe_scaling.py`
    times it against the features up to 8,000 photos). C walks up `grid` from the strongest regularisation, each
    fold warm-started where its previous two Cs point, and stops once PAST_BEST values in a row scored below the best
    (the slow, weakly regularised end is rarely reached).
    """
    from threadpoolctl import threadpool_limits  # L-BFGS-B steps via BLAS: 63 ms with OpenBLAS threads, 1.9 with one

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: a second thread only waits (and with another process busy, spins)
    report("probe", f"{len(features)} photos", 0, 1)
    try:
        with threadpool_limits(1, user_api="blas"):
            if assignment is None:
                assignment = fold_assignment(labels.long(), num_classes, folds, seed)
            return _fit_probe(
                features, labels, num_classes, grid, assignment, warm=start, tolerance=tolerance, threads=threads
            )
    finally:
        torch.set_num_threads(threads)
        report("probe", f"{len(features)} photos", 1, 1)


def _fit_probe(
    features: torch.Tensor | Design,
    labels: torch.Tensor,
    num_classes: int,
    grid: tuple[float, ...],
    assignment: np.ndarray,
    *,
    warm: Probe | None,
    tolerance: float,
    threads: int,
) -> Probe:
    start = time.perf_counter()
    y = labels.long()
    design = features if isinstance(features, Design) else Design(features)
    refit = _Refit(design=design, y=y, warm=warm, classes=num_classes, tolerance=tolerance, threads=threads)
    if len(grid) == 1 and bool((assignment < 0).any()):  # C is known and the head's rows many: solved beside the folds
        refit.start(grid[0])
    folds = int(assignment.max()) + 1
    splits, starts, bases = _folds(design, y, assignment, warm, num_classes)
    path: list[list[torch.Tensor]] = [[] for _ in range(folds)]  # each fold's solutions so far, by C
    scores, held_out = [], []  # per C: mean held-out accuracy; the held-out (logits, labels)
    at_best: list[torch.Tensor] = []  # each fold's solution at the best C so far
    for c in grid:
        correct, logits = 0, []
        for k, (layout, y_fit, z_held, y_held) in enumerate(splits):
            init = predicted(path[k]) if path[k] else starts[k]
            weights = logistic(layout.fit, y_fit, c, num_classes, init, tolerance, blocks=layout.blocks(1))
            path[k][:] = [*path[k][-1:], weights]
            logits.append(affine(z_held, weights))
            correct += int((logits[-1].argmax(1) == y_held).sum())
        scores.append(correct / int((assignment >= 0).sum()))
        held_out.append(torch.cat(logits))
        if scores[-1] > max(scores[:-1], default=-1.0):
            at_best = [fold[-1] for fold in path]
        if len(scores) > PAST_BEST and max(scores[-PAST_BEST:]) < max(scores):  # strictly below: not a plateau
            break
    best = int(np.argmax(scores))  # the first maximum: the smallest C, the strongest regularisation
    held_labels = torch.cat([s[3] for s in splits])
    temperature = fit_temperature(held_out[best], held_labels)
    right = held_out[best].argmax(1) == held_labels
    recall = [float(right[held_labels == k].float().mean()) if bool((held_labels == k).any()) else float("nan")
              for k in range(num_classes)]  # fmt: skip
    solution = refit.result(grid[best])
    w = solution / temperature
    mean, std = design.mean, design.std
    weight = (w[:-1] / std[:, None]).T  # fold the standardisation into the layer
    bias = w[-1] - (w[:-1] * (mean / std)[:, None]).sum(0)
    return Probe(
        weight=weight.float(),
        bias=bias.float(),
        C=grid[best],
        cv_accuracy=scores[best],
        folds=folds,
        seconds=time.perf_counter() - start,
        cv_recall=recall,
        solution=solution,
        fold_solutions=[lift(w, basis) for w, basis in zip(at_best, bases)],
    )


def fold_assignment(labels: torch.Tensor, num_classes: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Each row's fold, stratified and seeded (`stratified_folds`), on at most SEARCH_PHOTOS rows (`_search_rows`: C
    is chosen on them, the head fitted on all); -1 for a row outside them."""
    assignment = np.full(len(labels), -1)
    rows = _search_rows(labels, seed).numpy()
    ys = labels[rows]
    for k, (_, held) in enumerate(stratified_folds(ys, usable_folds(ys, num_classes, folds), seed)):
        assignment[rows[held]] = k
    return assignment


def _folds(design: Design, y: torch.Tensor, assignment: np.ndarray, warm: Probe | None, classes: int) -> tuple:
    """Each fold's (layout of its fit rows, fit labels, held-out rows, held-out labels), its rows in the span of its
    fit rows, the fold's start (`warm`'s same fold, in that span) and the span's basis."""
    splits, starts, bases = [], [], []
    folds = int(assignment.max()) + 1
    for k in range(folds):
        a = np.flatnonzero((assignment >= 0) & (assignment != k))
        b = np.flatnonzero(assignment == k)
        layout = design.layout(a, b)
        assert layout.held is not None
        splits.append((layout, y[torch.from_numpy(a)], layout.held, y[torch.from_numpy(b)]))
        before = warm.fold_solutions[k] if warm is not None and len(warm.fold_solutions) == folds else None
        starts.append(start_in(before, layout.basis, design.z.shape[1], classes))
        bases.append(layout.basis)
    return splits, starts, bases


@dataclass(kw_only=True)
class _Refit:
    """The head's solve on every row, at one C: in a thread of its own when started early (its matrix products run
    outside the GIL, beside the folds': on the 20,000-photo folder a live refit's probe took 3.4 s in a row), else
    when its result is asked for."""

    design: Design
    y: torch.Tensor
    warm: Probe | None
    classes: int
    tolerance: float
    threads: int  # the head's loss is summed over up to this many blocks of rows, a thread each
    thread: threading.Thread | None = None
    c: float | None = None
    solution: torch.Tensor | None = None
    error: BaseException | None = None

    def start(self, c: float) -> None:
        self.c = c
        self.thread = threading.Thread(target=self._run, args=(c,), name="probe-refit", daemon=True)
        self.thread.start()

    def _run(self, c: float) -> None:
        torch.set_num_threads(1)
        try:
            self.solution = self._solve(c)
        except BaseException as error:  # noqa: BLE001 - raised again where the result is asked for
            self.error = error

    def _solve(self, c: float) -> torch.Tensor:
        layout = self.design.layout(np.arange(len(self.design)))
        before = self.warm.solution if self.warm is not None else None
        init = start_in(before, layout.basis, self.design.z.shape[1], self.classes)
        blocks = layout.blocks(self.threads)
        weights = logistic(layout.fit, self.y, c, self.classes, init, self.tolerance, blocks=blocks)
        return lift(weights, layout.basis)

    def result(self, c: float) -> torch.Tensor:
        if self.thread is None or self.c != c:
            return self._solve(c)
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.solution is not None
        return self.solution


def _search_rows(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """All rows, or past SEARCH_PHOTOS a stratified, seeded share of them (one fold of ceil(N / SEARCH_PHOTOS); a
    class of fewer than FOLDS x that many photos whole) on which the strength is cross-validated: the search's cost
    stops growing with the photos (at 8,000 800x600 photos it took half as long as their features), the refit on
    every photo stays linear in them."""
    parts = -(-len(labels) // SEARCH_PHOTOS)
    if parts <= 1:
        return torch.arange(len(labels))
    share = stratified_folds(labels, parts, seed)[0][1]
    counts = torch.bincount(labels)
    small = torch.isin(labels, torch.nonzero(counts < parts * FOLDS).flatten()).numpy()  # a small class kept whole
    return torch.from_numpy(np.union1d(share, np.flatnonzero(small)))


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) of each fold: exactly scikit-learn's `StratifiedKFold(folds, shuffle=True,
    random_state=seed).split` (tests/test_probe.py compares them), written out because importing scikit-learn's
    model_selection costs about 1.5 s of every probe command's start-up. Each class is dealt round-robin over the
    folds in sorted order, then its fold numbers are shuffled."""
    y = labels.numpy()
    rng = np.random.RandomState(seed)
    _, first, inverse = np.unique(y, return_index=True, return_inverse=True)
    encoded = np.unique(first, return_inverse=True)[1][inverse]  # classes numbered by first appearance
    ordered = np.sort(encoded)
    allocation = np.asarray([np.bincount(ordered[i::folds], minlength=len(first)) for i in range(folds)])
    fold_of = np.empty(len(y), dtype=int)
    for k in range(len(first)):
        fold_numbers = np.arange(folds).repeat(allocation[:, k])
        rng.shuffle(fold_numbers)
        fold_of[encoded == k] = fold_numbers
    return [(np.flatnonzero(fold_of != i), np.flatnonzero(fold_of == i)) for i in range(folds)]


def usable_folds(labels: torch.Tensor, num_classes: int, folds: int) -> int:
    """The folds a stratified split can make: at most the smallest class's count, at least 2."""
    return max(2, min(folds, int(torch.bincount(labels, minlength=num_classes).min())))


def probe_inputs(features: FeatureCache, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The training rows a probe fits on: centre crops, the augmented views, or both (stacked)."""
    views = [features.train[v] for v in range(len(features.train))]
    centre = [] if features.train_centre is None else [features.train_centre]
    rows: list[torch.Tensor] = {"centre": centre, "views": views, "both": [*centre, *views]}[which]
    return torch.cat(rows), features.train_labels.repeat(len(rows))


def fit_probe_head(
    head: torch.nn.Linear, features: FeatureCache, which: str, epoch: int = 1, seed: int = 0
) -> tuple[EpochRecord, Probe]:
    """Fit a probe on `features` (rows from `probe_inputs`), write it into `head`, and describe it as one epoch's
    record (stage "probe"): training and validation loss and accuracy, the seconds fitting took."""
    from transferlab.runs import EpochRecord

    x, y = probe_inputs(features, which)
    probe = fit_probe(x, y, head.out_features, seed=seed)
    with torch.no_grad():
        head.weight.copy_(probe.weight)
        head.bias.copy_(probe.bias)
    start = time.perf_counter()
    train_loss, train_acc = _scores(probe.logits(x), y)
    val_loss, val_acc = _scores(probe.logits(features.val), features.val_labels)
    val_seconds = time.perf_counter() - start
    record = EpochRecord(
        epoch=epoch,
        lr=0.0,
        train_loss=train_loss,
        train_acc=train_acc,
        val_loss=val_loss,
        val_acc=val_acc,
        seconds=probe.seconds + val_seconds,
        data_seconds=0.0,
        compute_seconds=probe.seconds,
        val_seconds=val_seconds,
        train_samples=len(y),
        val_samples=len(features.val_labels),
        stage="probe",
    )
    return record, probe


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    if not len(labels):
        return 0.0, 0.0
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return loss, int((logits.argmax(1) == labels).sum()) / len(labels)  # exact: correct / total, as every run


def cross_val_probabilities(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, folds: int = FOLDS, seed: int = 0
) -> torch.Tensor:
    """Out-of-fold class probabilities (N, classes): each image scored by a probe (C chosen by its own inner
    cross-validation) fitted on the other folds, so every image is judged by a model that never saw it."""
    folds = usable_folds(labels, num_classes, folds)
    probabilities = torch.zeros(len(labels), num_classes)
    for fit_rows, held_rows in stratified_folds(labels, folds, seed):
        probe = fit_probe(features[fit_rows], labels[fit_rows], num_classes, seed=seed)
        probabilities[held_rows] = probe.logits(features[held_rows]).softmax(1)
    return probabilities
