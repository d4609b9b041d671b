"""The conformal threshold: the score a new example from the same distribution exceeds with at most a chosen
probability. numpy only (the unknown detector and `suggest`'s "looks like none of the classes" share it)."""

from __future__ import annotations

import numpy as np


def conformal_threshold(scores: np.ndarray, quantile: float) -> float:
    """The ceil((n + 1) x quantile)-th smallest score (the largest when that is past the end): a new score from the
    same distribution exceeds it with probability at most 1 - quantile."""
    ordered = np.sort(scores)
    rank = int(np.ceil((len(ordered) + 1) * quantile))
    return float(ordered[min(rank, len(ordered)) - 1])
