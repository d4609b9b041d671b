"""Is one strategy really better? Run-to-run noise and sampling noise, in plain words.

With a few hundred validation images one image is a fraction of a point, and a second seed can move accuracy by
as much. `paired_bootstrap` resamples validation images and seeds together (the strategies were trained on the
same split with the same seeds, so their results are paired) and gives a 95% interval for the difference in
accuracy. If the interval excludes zero, the difference is larger than the noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000


@dataclass(kw_only=True)
class Difference:
    a: str
    b: str
    diff: float  # accuracy of a minus accuracy of b (fraction)
    low: float
    high: float
    p_value: float  # two-sided bootstrap p-value
    seeds: int
    images: int
    paired: bool = True  # False: compared from the two accuracies alone (one cell has no per-image results)

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def method(self) -> str:
        if not self.paired:
            return (
                f"unpaired bootstrap of the two accuracies over {self.images} validation images, "
                f"{RESAMPLES:,} resamples"
            )
        return (
            f"paired bootstrap over {self.images} validation images"
            + (f" and {self.seeds} seeds" if self.seeds > 1 else "")
            + f", {RESAMPLES:,} resamples, images paired by path"
        )

    def sentence(self) -> str:
        method = self.method
        span = f"{self.diff * 100:+.1f} points (95% CI {self.low * 100:+.1f} to {self.high * 100:+.1f}; {method})"
        if self.significant:
            better, worse = (self.a, self.b) if self.diff > 0 else (self.b, self.a)
            return (
                f"{better} beats {worse}: {self.a} - {self.b} = {span}. The interval excludes zero, so the "
                "difference is larger than the run-to-run and sampling noise."
            )
        return (
            f"No real difference: {self.a} - {self.b} = {span}. The interval includes zero, so the difference "
            "is within the run-to-run and sampling noise; pick the cheaper strategy."
        )


def paired_bootstrap(
    correct_a: np.ndarray, correct_b: np.ndarray, a: str = "a", b: str = "b", resamples: int = RESAMPLES, seed: int = 0
) -> Difference:
    """95% interval for accuracy(a) - accuracy(b) from (seeds, images) boolean arrays of correct predictions."""
    correct_a, correct_b = np.atleast_2d(correct_a).astype(float), np.atleast_2d(correct_b).astype(float)
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"paired results need the same shape, got {correct_a.shape} and {correct_b.shape}")
    seeds, images = correct_a.shape
    rng = np.random.default_rng(seed)
    per_image_diff = correct_a - correct_b  # (seeds, images)
    diffs = np.empty(resamples)
    for r in range(resamples):
        rows = rng.integers(0, seeds, seeds)
        cols = rng.integers(0, images, images)
        diffs[r] = per_image_diff[np.ix_(rows, cols)].mean()
    low, high, p_value = _interval_and_p(diffs)
    return Difference(
        a=a, b=b, diff=float(per_image_diff.mean()), low=low, high=high, p_value=p_value, seeds=seeds, images=images
    )


def _interval_and_p(diffs: np.ndarray) -> tuple[float, float, float]:
    """The 95% percentile interval of resampled differences and the two-sided bootstrap p-value."""
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high), float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))


def unpaired_bootstrap(
    accuracy_a: float,
    images_a: int,
    accuracy_b: float,
    images_b: int,
    a: str = "a",
    b: str = "b",
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Difference:
    """95% interval for accuracy(a) - accuracy(b) when only the two accuracies and their image counts are known
    (a run whose per-image results are missing, e.g. its evaluation was interrupted): each accuracy is redrawn as
    a binomial share of its images. Wider than the paired interval, never narrower than the data allow."""
    rng = np.random.default_rng(seed)
    draws_a = rng.binomial(images_a, min(max(accuracy_a, 0.0), 1.0), resamples) / images_a
    draws_b = rng.binomial(images_b, min(max(accuracy_b, 0.0), 1.0), resamples) / images_b
    low, high, p_value = _interval_and_p(draws_a - draws_b)
    return Difference(
        a=a,
        b=b,
        diff=accuracy_a - accuracy_b,
        low=low,
        high=high,
        p_value=p_value,
        seeds=1,
        images=min(images_a, images_b),
        paired=False,
    )


def bootstrap_interval(correct: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% interval for accuracy from a (seeds, images) boolean array, resampling seeds and images."""
    correct = np.atleast_2d(correct).astype(float)
    seeds, images = correct.shape
    rng = np.random.default_rng(seed)
    values = [
        correct[np.ix_(rng.integers(0, seeds, seeds), rng.integers(0, images, images))].mean() for _ in range(resamples)
    ]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
