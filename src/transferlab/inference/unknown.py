""" "None of my classes": answer `unknown` for a photo that is like no training photo.

With two classes the largest softmax probability is high for almost anything, so it cannot tell a stranger from a
known photo (`benchmarks/unknown_photos.py` measures it). What does is distance in feature space: a photo of a known
class lies near training photos of it; a stranger lies far from all of them. The score of a photo is the mean
cosine distance of its pooled backbone features (the run's own backbone, best weights) to its `K` nearest training
photos (centre crops). The threshold is chosen on the validation photos: the ceil((n + 1) x `QUANTILE`)-th
smallest of their n scores (split conformal prediction: a new photo of a known class is then turned away with
probability at most 1 - QUANTILE = 5%; the plain 95% point of 60 scores turns away about 6.5%). The share of known
photos it rejects is estimated by cross-validation over the validation photos (threshold from the other folds), so
the figure is not the one the threshold was fitted to.
Stored with the run (`unknown.safetensors`: the training features and the threshold), used by predict, the web app
and exports (which also output the features).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from transferlab.errors import DamagedFile, first_line
from transferlab.inference.conformal import conformal_threshold
from transferlab.utils.storage import write_atomically

K = 5
QUANTILE = 0.95  # of the validation photos' scores: the threshold
FILE = "unknown.safetensors"
METHOD = (
    f"mean cosine distance of the backbone's pooled features to the {K} nearest training photos; above the "
    "threshold the answer is 'unknown'"
)


@dataclass(kw_only=True)
class UnknownDetector:
    bank: torch.Tensor  # (N, D) L2-normalised features of the training photos (centre crops)
    threshold: float
    known_rejected: float  # cross-validated share of known (validation) photos the threshold calls unknown
    k: int = K

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Mean cosine distance of each row of `features` to its k nearest training photos."""
        unit = torch.nn.functional.normalize(features.float(), dim=1)
        distances = 1.0 - unit @ self.bank.T
        k = min(self.k, self.bank.shape[0])
        return distances.topk(k, dim=1, largest=False).values.mean(1)

    def describe(self) -> dict:
        return {
            "method": METHOD,
            "k": self.k,
            "threshold": self.threshold,
            "quantile": QUANTILE,
            "known_rejected": self.known_rejected,
            "training_photos": int(self.bank.shape[0]),
        }


def fit_unknown_detector(
    train_features: torch.Tensor, val_features: torch.Tensor, folds: int = 5, seed: int = 0
) -> UnknownDetector:
    """Threshold from the validation photos' scores (`conformal_threshold`); the share of known photos rejected
    estimated on held-out folds of the validation photos."""
    detector = UnknownDetector(
        bank=torch.nn.functional.normalize(train_features.float(), dim=1), threshold=0.0, known_rejected=0.0
    )
    scores = detector.scores(val_features).numpy()
    detector.threshold = conformal_threshold(scores, QUANTILE)
    order = np.random.default_rng(seed).permutation(len(scores))
    rejected = []
    for held in np.array_split(order, max(2, min(folds, len(scores)))):
        rest = np.setdiff1d(order, held)
        if len(rest) and len(held):
            rejected.append(float((scores[held] > conformal_threshold(scores[rest], QUANTILE)).mean()))
    detector.known_rejected = float(np.mean(rejected)) if rejected else float("nan")
    return detector


def save_detector(detector: UnknownDetector, run_dir: Path) -> Path:
    from safetensors.torch import save_file

    path = Path(run_dir) / FILE
    about = {"detector": json.dumps(detector.describe())}
    write_atomically(path, lambda tmp: save_file({"bank": detector.bank.contiguous()}, tmp, metadata=about))
    return path


def load_detector(run_dir: str | Path) -> UnknownDetector | None:
    """The run's detector, or None (a run trained before it existed: every answer is a known class)."""
    from safetensors import safe_open

    path = Path(run_dir) / FILE
    if not path.exists():
        return None
    try:
        with safe_open(path, "pt") as handle:
            about = json.loads(handle.metadata()["detector"])
            bank = handle.get_tensor("bank")
        return UnknownDetector(
            bank=bank,
            threshold=float(about["threshold"]),
            known_rejected=float(about["known_rejected"]),
            k=int(about["k"]),
        )
    except Exception as error:  # noqa: BLE001 - cut short, overwritten, or without its fields
        raise DamagedFile(
            path,
            f"cannot be read ({first_line(error)})",
            "the run's 'unknown' detector is damaged; copy the run folder again, or train it again",
        ) from None


def fit_and_save(features, run_dir: Path) -> UnknownDetector:
    """The detector of centre-crop training features and validation features (a `features.FeatureCache`), saved."""
    detector = fit_unknown_detector(features.train_centre, features.val)
    save_detector(detector, run_dir)
    return detector
