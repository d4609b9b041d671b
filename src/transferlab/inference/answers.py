"""What a prediction says, whatever computed it (PyTorch or an exported ONNX file): the class or "unknown", its
probability and the top k. Imports neither torch nor onnxruntime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from transferlab.errors import at_least

UNKNOWN = "unknown"


@dataclass(kw_only=True)
class Prediction:
    label: str  # the class, or "unknown" for a photo like no training photo
    probability: float  # of the most likely class
    topk: list[tuple[str, float]]
    known: bool = True
    nearest: str = ""  # the most likely class, also when the answer is "unknown"
    distance: float | None = None  # to the training photos (None: the run has no detector)


class Assessed(Protocol):
    """One photo as a model saw it: class probabilities (a tensor or an array) and its "unknown" score."""

    probs: Any
    distance: float | None


def answer(
    probabilities: Sequence[float], classes: list[str], topk: int, distance: float | None, threshold: float | None
) -> Prediction:
    """One photo's probabilities -> its answer and the top-k (label, probability) pairs; "unknown" when the photo is
    farther from the training photos than `threshold` (None: the model has no detector)."""
    at_least("topk", topk, 1)
    order = sorted(range(len(classes)), key=lambda i: -float(probabilities[i]))[: min(topk, len(classes))]
    ranked = [(classes[i], float(probabilities[i])) for i in order]
    known = distance is None or threshold is None or distance <= threshold
    return Prediction(
        label=ranked[0][0] if known else UNKNOWN,
        probability=ranked[0][1],
        topk=ranked,
        known=known,
        nearest=ranked[0][0],
        distance=distance,
    )
