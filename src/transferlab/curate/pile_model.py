"""The model that sorts a pile, in numpy and scipy: fitted from scratch in a fraction of a second every round.

Two views of the same frozen features, averaged (`pile_probabilities`):
- a ridge classifier on the labelled photos (`ridge_probabilities`): one-hot targets, its strength chosen by exact
  leave-one-out over a grid (one eigendecomposition of the photos' kernel gives every strength's held-out answers),
  its scores turned into probabilities by the temperature that fits those held-out answers best;
- the labels spread along the graph of every photo's nearest neighbours, labelled and pile together
  (`spread_labels`): photos of one class lie near each other, sorted or not.
Features of several backbones are used side by side: each backbone's block standardised (ridge) or scaled to unit
length (neighbours), so each counts the same. Measured in docs/results.md ("Sorting a pile"): with the three
EfficientNet-Lites this took flowers5 from 0.28 decisions a photo (one backbone, a logistic probe) to 0.24.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

NEIGHBOURS = 10  # of each photo in the graph the labels spread along
SPREAD = 0.8  # how much a photo's spread label comes from its neighbours (the rest from its own label, if any)
STRENGTHS = np.logspace(-3, 3, 25)  # ridge strengths tried (relative to the kernel's scale: features standardised)
TEMPERATURES = np.logspace(-3, 1, 30)


def pile_probabilities(
    x_lab: list[np.ndarray], y_lab: np.ndarray, x_pile: list[np.ndarray], num_classes: int
) -> np.ndarray:
    """(pile photos, classes) probabilities from each backbone's features (`x_lab[b]`, `x_pile[b]`): the mean of the
    ridge classifier's and of the labels spread over the neighbours' graph."""
    both = [np.concatenate([lab, pile]).astype(np.float64) for lab, pile in zip(x_lab, x_pile)]
    standard = np.concatenate([(x - x.mean(0)) / (x.std(0) + 1e-6) for x in both], 1)
    n = len(y_lab)
    ridge = ridge_probabilities(standard[:n], y_lab, standard[n:], num_classes)
    unit = np.concatenate([unit_rows(x) for x in both], 1)
    return 0.5 * ridge + 0.5 * spread_labels(unit[:n], y_lab, unit[n:], num_classes)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ridge_probabilities(x_lab: np.ndarray, y_lab: np.ndarray, x_pile: np.ndarray, num_classes: int) -> np.ndarray:
    """A ridge classifier's probabilities for the pile: kernel ridge regression on centred one-hot targets (linear
    kernel, a constant for the bias), its strength the one with the best leave-one-out accuracy (then squared
    error), softmax at the temperature with the best leave-one-out likelihood."""
    dim = x_lab.shape[1]
    kernel = x_lab @ x_lab.T / dim + 1.0
    values, vectors = np.linalg.eigh(kernel)
    values = np.maximum(values, 0.0)
    targets = np.eye(num_classes)[y_lab] - 1.0 / num_classes
    best: tuple[tuple[float, float], float, np.ndarray] | None = None
    for strength, held_out in zip(STRENGTHS, held_out_answers(values, vectors, targets, STRENGTHS)):
        score = (float((held_out.argmax(1) == y_lab).mean()), -float(((held_out - targets) ** 2).sum()))
        if best is None or score > best[0]:
            best = (score, float(strength), held_out)
    assert best is not None
    _, strength, held_out = best
    weights = vectors @ ((vectors.T @ targets) / (values + strength)[:, None])
    scores = (x_pile @ x_lab.T / dim + 1.0) @ weights
    temperature = max(TEMPERATURES, key=lambda t: _log_likelihood(held_out / t, y_lab))
    return _softmax(scores / temperature)


def held_out_answers(
    values: np.ndarray, vectors: np.ndarray, targets: np.ndarray, strengths: Iterable[float]
) -> Iterator[np.ndarray]:
    """For each strength, kernel ridge regression's answer for each training row fitted without that row (exact: the
    hat matrix's leave-one-out identity), from the kernel's eigenvalues and eigenvectors."""
    projected, squares = vectors.T @ targets, vectors * vectors
    for strength in strengths:
        shrink = values / (values + strength)
        fitted = vectors @ (shrink[:, None] * projected)
        leverage = np.minimum(squares @ shrink, 1 - 1e-9)
        yield targets - (targets - fitted) / (1 - leverage)[:, None]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _log_likelihood(z: np.ndarray, y: np.ndarray) -> float:
    z = z - z.max(1, keepdims=True)
    return float((z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())


def spread_labels(x_lab: np.ndarray, y_lab: np.ndarray, x_pile: np.ndarray, num_classes: int) -> np.ndarray:
    """Label spreading (Zhou et al., 2004) over the `NEIGHBOURS`-nearest-neighbour graph of the unit-length features:
    each pile photo's share of each class. scikit-learn's `LabelSpreading(kernel="knn", alpha=SPREAD)` computed
    with numpy and scipy.sparse (tests/test_suggest.py checks them equal): importing scikit-learn's semi_supervised
    took 1 s of every round's 3."""
    from scipy import sparse

    x = unit_rows(np.concatenate([x_lab, x_pile]).astype(np.float32))
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
    from transferlab.inference.conformal import conformal_threshold

    unit = unit_rows(x_lab)
    k = max(1, min(k, len(unit) - 1))
    own = 1.0 - unit @ unit.T
    np.fill_diagonal(own, np.inf)
    threshold = conformal_threshold(np.sort(own, axis=1)[:, :k].mean(1), quantile)
    distances = np.sort(1.0 - unit_rows(x_pile) @ unit.T, axis=1)[:, :k].mean(1)
    return distances > threshold
