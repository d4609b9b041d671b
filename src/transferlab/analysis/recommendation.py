"""The answer: which cell (backbone, strategy, batch size) to use, with the evidence for it.

The most accurate cell is the one with the highest mean accuracy over its seeds (balanced accuracy, the mean of
the per-class recalls, when the validation classes are imbalanced: the largest twice the smallest or more). Every
other cell is compared with it by a paired bootstrap over the validation images and seeds both completed (pairing
images by path; a cell without per-image results, say its evaluation was interrupted, by an unpaired bootstrap of
the two accuracies), and the two-sided p-values are corrected for the number of comparisons by Holm's method.
The recommended cell is the cheapest (lowest mean time a run of its own takes: frozen features counted as
computed, even where a run read them from the cache another cell filled) of the most accurate one and the cells
not shown to be worse (corrected p >= 0.05, or not behind at all); times within 10% count as equal, and then the
more accurate is taken; a run cut short is not recommended while a finished cell is a candidate. `fit --budget`'s
folders answer differently: the user gave the time and wants the best model it buys, so the most accurate finished
cell is recommended whatever it costs (the comparisons are still shown). Where a
comparison is undecided, the interval's width says what would settle it: more validation images narrow it; more
seeds narrow only the run-to-run part.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal, cast

import numpy as np

from transferlab.analysis.results import Cell, LoadedRun, by_cell, format_seconds, mean, paired_correct
from transferlab.analysis.stats import Difference, paired_bootstrap, unpaired_bootstrap

ALPHA = 0.05
SAME_TIME = 1.1  # times within 10% of each other are the same cost: run-to-run timing noise is of that order
SMALL_VALIDATION = 200  # fewer validation images than this: intervals are wide, and the report says so
IMBALANCE = 2.0  # validation classes this uneven (largest / smallest) or more: cells ranked by balanced accuracy
Metric = Literal["accuracy", "balanced accuracy"]
Prefer = Literal["cheapest", "most accurate"]  # compare's answer; fit's (the best model found within its budget)


@dataclass(kw_only=True)
class CellComparison:
    """One cell against the most accurate: accuracy difference (points), its 95% interval, p-values."""

    cell: str
    diff: float
    low: float
    high: float
    p_value: float
    p_holm: float
    worse: bool  # shown to be worse than the most accurate (Holm-corrected p < ALPHA and behind)


@dataclass(kw_only=True)
class Recommendation:
    best: str  # the most accurate cell
    best_accuracy: float
    best_seconds: float | None
    recommended: str  # the cheapest cell not shown to be worse
    recommended_accuracy: float
    recommended_seconds: float | None
    best_run: str  # run folder (first seed) of each, relative to the compare folder
    recommended_run: str
    val_images: int
    sentence: str
    settle: str  # what would settle an undecided comparison ("" when nothing is undecided)
    comparisons: list[CellComparison] = field(default_factory=list)
    method: str = ""  # how the comparisons were made (images, seeds, resamples)
    metric: Metric = "accuracy"  # or "balanced accuracy" (imbalanced validation classes)

    def as_dict(self) -> dict:
        return asdict(self)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of p-values (family-wise error over the comparisons)."""
    order = np.argsort(p_values)
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def cell_accuracy(group: list[LoadedRun], weights: dict[str, float] | None = None) -> float | None:
    """Mean over seeds of each run's accuracy on the validation images (its best epoch's model); with `weights`
    (`balancing_weights`), its balanced accuracy."""
    values = [
        (
            float(np.mean(r.correct * np.array([weights.get(p, 1.0) for p in r.paths or []])))
            if weights
            else float(r.correct.mean())
        )
        if r.correct is not None
        else r.summary.best_val_acc
        for r in group
    ]
    return mean(values)


def balancing_weights(runs: list[LoadedRun]) -> tuple[dict[str, float] | None, str]:
    """When the validation classes are imbalanced (the largest IMBALANCE times the smallest or more), a weight per
    validation photo, N / (K x its class's count), that turns accuracy into balanced accuracy (the mean of the
    per-class recalls), and a sentence saying so; else (None, "")."""
    run = next((r for r in runs if r.labels is not None and r.paths), None)
    if run is None:
        return None, ""
    labels: list[int] = cast(np.ndarray, run.labels).tolist()
    counts = Counter(labels)
    if len(counts) < 2 or max(counts.values()) < IMBALANCE * min(counts.values()):
        return None, ""
    n, k = len(labels), len(counts)
    weights = {p: n / (k * counts[label]) for p, label in zip(run.paths or [], labels)}
    return weights, (
        f" The validation classes are imbalanced ({min(counts.values())} to {max(counts.values())} "
        "photos), so cells are ranked by balanced accuracy, the mean of the per-class recalls."
    )


def recommend(runs: list[LoadedRun], prefer: Prefer = "cheapest") -> Recommendation | None:
    """The most accurate cell, the cheapest one not shown to be worse, and every comparison behind it. With
    `prefer="most accurate"` (`fit --budget`: the user gave the time, they want the best model it buys) the
    recommendation is the most accurate finished cell, whatever it costs."""
    cells = {cell: group for cell, group in by_cell(runs).items() if cell_accuracy(group) is not None}
    if not cells:
        return None
    weights, balanced = balancing_weights(runs)
    accuracy = {cell: cast(float, cell_accuracy(group, weights)) for cell, group in cells.items()}  # not None
    seconds = {cell: mean([r.summary.fresh_seconds for r in group]) for cell, group in cells.items()}
    best = max(cells, key=lambda c: (accuracy[c], -(seconds[c] or 0.0)))
    others = [cell for cell in cells if cell != best]
    raw = [_difference(cells[cell], cells[best], cell, best, accuracy, weights) for cell in others]
    adjusted = holm([d.p_value if d else 1.0 for d in raw])
    comparisons = [
        _comparison(cell, d, p, accuracy[cell] - accuracy[best]) for cell, d, p in zip(others, raw, adjusted)
    ]
    worse = {c.cell for c in comparisons if c.worse}
    candidates = [best] + [cell for cell in others if cell.label not in worse]
    finished = [cell for cell in candidates if all(r.summary.status == "completed" for r in cells[cell])]
    if prefer == "most accurate":
        chosen = max(finished or list(cells), key=lambda c: (accuracy[c], -(seconds[c] or 0.0)))
    else:
        chosen = _cheapest(finished or candidates, accuracy, seconds)  # a run cut short looks cheap: not whole
    val_images = max(
        (len(r.correct) if r.correct is not None else r.summary.val_images for g in cells.values() for r in g),
        default=0,
    )
    against = next((c for c in comparisons if c.cell == chosen.label), None)
    return Recommendation(
        best=best.label,
        best_accuracy=accuracy[best],
        best_seconds=seconds[best],
        recommended=chosen.label,
        recommended_accuracy=accuracy[chosen],
        recommended_seconds=seconds[chosen],
        best_run=cells[best][0].name,
        recommended_run=cells[chosen][0].name,
        val_images=val_images,
        sentence=_sentence(
            best,
            chosen,
            accuracy,
            seconds,
            against,
            comparisons,
            metric="balanced accuracy " if weights else "",
            prefer=prefer,
        )
        + _cut_short(cells, chosen)
        + balanced,
        settle=_settle(comparisons, val_images, against),
        comparisons=comparisons,
        method="; ".join(dict.fromkeys(d.method for d in raw if d))
        + (", each image weighted by 1 / its class's count (balanced accuracy)" if weights and raw else ""),
        metric="balanced accuracy" if weights else "accuracy",
    )


def _comparison(cell: Cell, d: Difference | None, p_holm: float, diff: float) -> CellComparison:
    """One cell's comparison with the most accurate; without a difference (nothing to compare by), `diff` alone."""
    if d is None:
        return CellComparison(
            cell=cell.label, diff=diff, low=float("nan"), high=float("nan"), p_value=1.0, p_holm=1.0, worse=False
        )
    return CellComparison(
        cell=cell.label,
        diff=d.diff,
        low=d.low,
        high=d.high,
        p_value=d.p_value,
        p_holm=p_holm,
        worse=d.diff < 0 and p_holm < ALPHA,
    )


def _cheapest(pool: list[Cell], accuracy: dict, seconds: dict) -> Cell:
    """The cheapest cell; times within SAME_TIME of the cheapest count as equal (timing noise), and of those the
    most accurate is taken."""
    cost = {c: seconds[c] if seconds[c] is not None else float("inf") for c in pool}
    fastest = min(cost.values())
    near = [c for c in pool if cost[c] <= fastest * SAME_TIME] or pool
    return max(near, key=lambda c: (accuracy[c], -cost[c]))


def _difference(
    group: list[LoadedRun],
    best_group: list[LoadedRun],
    cell: Cell,
    best: Cell,
    accuracy: dict,
    weights: dict[str, float] | None = None,
) -> Difference | None:
    """A cell against the most accurate: paired over the images and seeds both evaluated; where per-image results
    are missing (an evaluation interrupted or skipped), unpaired from the two accuracies and their image counts;
    None when not even the image counts are known."""
    a, b = paired_correct(group, best_group, weights)
    if a is not None and b is not None:
        return paired_bootstrap(a, b, cell.label, best.label)
    images = [sum(r.summary.val_images for r in g) for g in (group, best_group)]
    if min(images) <= 0:
        return None
    return unpaired_bootstrap(accuracy[cell], images[0], accuracy[best], images[1], cell.label, best.label)


def _sentence(
    best: Cell,
    chosen: Cell,
    accuracy: dict,
    seconds: dict,
    against: CellComparison | None,
    comparisons: list[CellComparison],
    *,
    metric: str = "",
    prefer: Prefer = "cheapest",
) -> str:
    what = lambda c: f"{c.label}: {accuracy[c]:.1%} {metric}in {format_seconds(seconds[c])} on its own"  # noqa: E731
    if chosen == best:
        if not comparisons:
            return f"Use {what(best)}."
        beaten = sum(c.worse for c in comparisons)
        if prefer == "most accurate":
            return (
                f"Use {what(best)}, the most accurate model found within the budget ({beaten} of "
                f"{len(comparisons)} other cell(s) shown worse, Holm-corrected; the others' intervals are below)."
            )
        return (
            f"Use {what(best)}, the most accurate, and no cell that may be as good is more than 10% faster "
            f"({beaten} of {len(comparisons)} other cell(s) shown worse, Holm-corrected)."
        )
    if prefer == "most accurate":  # the most accurate was cut short
        return f"Use {what(chosen)}, the most accurate finished model found within the budget."
    assert against is not None  # a recommended cell other than the best was compared with it
    speed = f", {seconds[best] / seconds[chosen]:.1f}x faster" if seconds[best] and seconds[chosen] else ""
    return (
        f"Use {what(chosen)}{speed}. The most accurate is {what(best)}; {chosen.label} is "
        f"{against.diff * 100:+.1f} points from it (95% CI {against.low * 100:+.1f} to {against.high * 100:+.1f}, "
        f"Holm-corrected p = {against.p_holm:.2f}): not shown to be worse."
    )


def _cut_short(cells: dict[Cell, list[LoadedRun]], chosen: Cell) -> str:
    """Which cells have a run that stopped before its last epoch (Ctrl-C): their accuracy is what the epochs they
    ran reached and their time is not a whole run's, so they are used only when no finished cell is a candidate."""
    short = [(cell, r) for cell, group in cells.items() for r in group if r.summary.status != "completed"]
    if not short:
        return ""
    what = ", ".join(
        f"{cell.label} after {r.summary.epochs_completed} of {r.config.recipe.epochs} epochs" for cell, r in short
    )
    if any(cell == chosen for cell, _ in short):
        return (
            f" Cut short: {what}; no finished cell is a candidate, so the accuracy and time above are those of "
            "the epochs it ran (`transferlab train --resume RUN` finishes it)."
        )
    return f" Not recommended because cut short (its time is not a whole run's): {what}."


def _settle(comparisons: list[CellComparison], val_images: int, chosen: CellComparison | None) -> str:
    """What would settle the comparison the recommendation rests on (else the widest undecided one)."""
    undecided = [c for c in comparisons if not c.worse and c.diff < 0 and np.isfinite(c.low)]
    small = (
        f"Only {val_images} validation images (under {SMALL_VALIDATION}): intervals are wide. "
        if val_images < SMALL_VALIDATION
        else ""
    )
    if not undecided:
        return small.strip()
    widest = chosen if chosen in undecided else max(undecided, key=lambda c: c.high - c.low)
    half = (widest.high - widest.low) * 50
    return (
        f"{small}With {val_images} validation images an interval is about +-{half:.1f} points wide "
        f"({widest.cell} vs the most accurate: {widest.diff * 100:+.1f} points, 95% CI "
        f"{widest.low * 100:+.1f} to {widest.high * 100:+.1f}): to tell a difference that size from noise, add "
        "validation images, or use --cv for extract; more seeds narrow only the run-to-run part of an interval, "
        "not the part that comes from resampling images."
    )


def headline(answer: Recommendation | None) -> str:
    """The recommendation in one sentence (what `compare` prints and the report leads with)."""
    return answer.sentence if answer is not None else "No run finished: nothing to recommend."


def cell_rows(runs: list[LoadedRun]) -> list[dict]:
    """Each cell as data: its axes, runs, mean accuracy and mean total seconds (for the compare summary)."""
    return [
        {
            "label": cell.label,
            "backbone": cell.backbone,
            "strategy": cell.strategy,
            "batch_size": cell.batch_size,
            "runs": [r.name for r in group],
            "accuracy": cell_accuracy(group),
            "seconds": mean([r.summary.fresh_seconds for r in group]),
        }
        for cell, group in by_cell(runs).items()
    ]


def cross_validation_rows(cv: dict) -> list[dict]:
    """`compare --cv`: each backbone's cross-validated probe accuracy over every image, with its Wilson interval,
    compared with the best backbone's on the same images (paired bootstrap, Holm-corrected)."""
    from transferlab.analysis.evaluate import wilson_interval

    if not cv:
        return []
    best = max(cv, key=lambda name: cv[name]["accuracy"])
    index = {name: {p: i for i, p in enumerate(entry["paths"])} for name, entry in cv.items()}
    rows, raw = [], []
    for name, entry in cv.items():
        low, high = wilson_interval(sum(entry["correct"]), entry["images"])
        shared = sorted(set(index[name]) & set(index[best]))
        a = np.array([entry["correct"][index[name][p]] for p in shared])
        b = np.array([cv[best]["correct"][index[best][p]] for p in shared])
        difference = paired_bootstrap(a, b, name, best) if name != best and shared else None
        raw.append(difference.p_value if difference else 1.0)
        rows.append(
            {
                "backbone": name,
                "folds": entry["folds"],
                "images": entry["images"],
                "accuracy": entry["accuracy"],
                "low": low,
                "high": high,
                "diff": difference.diff if difference else 0.0,
                "p_value": raw[-1],
            }
        )
    for row, p in zip(rows, holm(raw)):
        row["p_holm"] = p
    return rows
