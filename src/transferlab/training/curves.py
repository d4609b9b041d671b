"""Would more photos still help? A learning curve per class from the live model's features: each class's held-out
recall when the probe is fitted on a share of that class's photos (the other classes whole), beside its recall
with all of them. Still rising from half to all: more photos of that class would likely still help; flat: more of
the same kind help little (photos of other kinds, lights or backgrounds may). "How many photos do I need?" is the
question people ask most; this answers it for the folder as it is, not in general.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from transferlab.training._solver import affine, logistic, project, row_space, standardise
from transferlab.training.probe import FOLDS, stratified_folds, usable_folds

SHARES = (0.25, 0.5, 1.0)  # of a class's photos kept in the fitting folds
RISING = 0.02  # recall gained from half to all of a class's photos that counts as still rising


@dataclass(frozen=True, kw_only=True)
class ClassCurve:
    """One class's held-out recall with each share of its photos (`SHARES`), and the verdict."""

    name: str
    photos: int
    recall: list[float]

    @property
    def rising(self) -> bool:
        return self.recall[-1] - self.recall[-2] > max(RISING, 1.0 / max(1, self.photos))

    def sentence(self) -> str:
        shown = ", ".join(f"{share:.0%} of them: {r:.0%}" for share, r in zip(SHARES, self.recall))
        verdict = "more photos would likely still help" if self.rising else "more of the same kind would help little"
        return f"{self.name} ({self.photos} photos): recall with {shown}; {verdict}"


def class_curves(
    x: torch.Tensor, y: torch.Tensor, classes: list[str], c: float, seed: int = 0, *, standardised: bool = False
) -> list[ClassCurve]:
    """Each class's curve: cross-validated (stratified folds), the probe at strength `c` (the live model's). With
    `standardised`, `x` is already standardised as the probe solves on it (the live model's `Design.z`)."""
    from threadpoolctl import threadpool_limits  # one thread, as the probe solves (see `training.probe`)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            return _curves(x if standardised else standardise(x)[0], y, classes, c, seed)
    finally:
        torch.set_num_threads(threads)


def _curves(z: torch.Tensor, y: torch.Tensor, classes: list[str], c: float, seed: int) -> list[ClassCurve]:
    """`z` standardised as the live model's probe solves: its strength `c` means the same here."""
    y = y.long()
    folds = usable_folds(y, len(classes), FOLDS)
    rng = np.random.default_rng(seed)
    right = np.zeros((len(classes), len(SHARES)))
    for fit, held in stratified_folds(y, folds, seed):
        order = rng.permutation(len(fit))  # which of a class's fitting photos a smaller share keeps
        whole = _answers(z, y, fit, held, c, len(classes))  # every class whole: the last point of every curve
        for k in range(len(classes)):
            mine = (y[held] == k).numpy()
            right[k, -1] += int((whole[mine] == k).sum())
            for s, share in enumerate(SHARES[:-1]):
                answers = _answers(z, y, _kept(fit[order], y, k, share), held[mine], c, len(classes))
                right[k, s] += int((answers == k).sum())
    counts = torch.bincount(y, minlength=len(classes)).numpy()
    return [ClassCurve(name=name, photos=int(counts[k]), recall=(right[k] / max(1, counts[k])).tolist())
            for k, name in enumerate(classes)]  # fmt: skip


def _answers(z: torch.Tensor, y: torch.Tensor, fit: np.ndarray, held: np.ndarray, c: float, classes: int):
    """The classes a probe fitted on rows `fit` answers for rows `held`."""
    if not len(held):
        return torch.zeros(0, dtype=torch.long)
    basis = row_space(z[fit])
    w = logistic(project(z[fit], basis), y[fit], c, classes)
    return affine(project(z[held], basis), w).argmax(1)


def _kept(fit: np.ndarray, y: torch.Tensor, k: int, share: float) -> np.ndarray:
    """The fitting rows with only the first `share` of class k's (in the order given), the rest whole."""
    mine = fit[(y[fit] == k).numpy()]
    keep = max(1, round(share * len(mine)))
    return np.sort(np.concatenate([fit[(y[fit] != k).numpy()], mine[:keep]]))
