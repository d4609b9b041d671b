"""Use a trained run: `Classifier.load(run_dir).predict(image_or_path)`.

The picture goes through exactly the preprocessing used for validation during training (`images.load_rgb`,
then `presets.decoded_view` and `presets.eval_view`), so any image mode works and results match training.
A photo like no training photo is answered `unknown` (with the nearest class) when the run has a detector
(`unknown.py`; runs trained before it existed answer a class for everything).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import torch
from PIL import Image

from transferlab.data.decoding import Decode
from transferlab.data.images import load_rgb
from transferlab.data.presets import decoded_view, eval_view, normalize
from transferlab.errors import DamagedFile, at_least
from transferlab.inference.answers import UNKNOWN, Assessed, Prediction, answer
from transferlab.inference.unknown import UnknownDetector, load_detector
from transferlab.models.backbones import BackboneSpec
from transferlab.models.model import TransferModel, build_model
from transferlab.runs import META_FILE, WEIGHTS_FILE, ModelMeta, load_checkpoint, resolve_run
from transferlab.utils.machine import keep_freed_memory
from transferlab.utils.parallel import parallel_map


@dataclass(kw_only=True)
class Assessment:
    """One photo as the model sees it: class probabilities and its distance to the training photos."""

    probs: torch.Tensor
    distance: float | None = None


class Classifier:
    """A trained model together with its classes and preprocessing."""

    def __init__(
        self,
        model: TransferModel,
        spec: BackboneSpec,
        classes: list[str],
        meta: ModelMeta,
        device: str | torch.device = "cpu",
        unknown: UnknownDetector | None = None,
    ):
        self.device = torch.device(device)
        self.unknown = unknown
        self.model = model.to(self.device).eval()
        self.features: Callable[[torch.Tensor], torch.Tensor] = self.model.backbone  # or ONNX Runtime's, below
        self.spec = spec
        self.classes = classes
        self.meta = meta
        red, green, blue = meta.background
        self.background = (red, green, blue)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | torch.device = "cpu") -> Classifier:
        """Load the best weights of a run directory, or of the run a compare folder recommends (no pickle)."""
        keep_freed_memory()
        run_dir = resolve_run(run_dir)
        state, meta = load_checkpoint(run_dir)
        model, spec, _ = build_model(meta.backbone, len(meta.classes), meta.strategy, pretrained=False)
        try:
            model.load_state_dict(state)
        except RuntimeError:  # the right names, other shapes: the network this version builds for it is another
            problem = f"does not fit the network this version of transferlab builds for {meta.backbone}"
            remedy = (
                "made by another version (an ensemble from before its members gave their last stages?): train again"
            )
            raise DamagedFile(run_dir / WEIGHTS_FILE, problem, remedy) from None
        if meta.revision != spec.revision:  # the same weights, but its features are computed otherwise now
            problem = f"was fitted on {meta.backbone}'s features as another version of transferlab computed them"
            raise DamagedFile(run_dir / META_FILE, problem, "train again")
        return cls(model, spec, meta.classes, meta, device, load_detector(run_dir))

    def describe(self) -> dict[str, Any]:
        """What a page says it runs: backbone, strategy, validation accuracy."""
        return {"backbone": self.meta.backbone, "strategy": self.meta.strategy, "val_acc": self.meta.val_acc}

    def prefer_onnx_features(self) -> None:
        """On the CPU, compute the backbone's features with ONNX Runtime from here on (`models.onnx_features`: the
        same within 1e-4, about twice as fast). Worth it where the export is cached: an extract run's frozen
        backbone was exported when its features were computed."""
        if self.device.type == "cpu":
            from transferlab.models.onnx_features import onnx_features

            self.features = onnx_features(self.model.backbone, self.spec) or self.features

    def preprocess(self, image: str | Path | BinaryIO | Image.Image) -> torch.Tensor:
        """One picture (path, open file or PIL image) -> the uint8 (3, S, S) evaluation crop."""
        picture = load_rgb(image, self.background, min_side=self.spec.resize_size)
        return eval_view(decoded_view(picture, self.spec.resize_size), self.spec.input_size)

    @torch.inference_mode()
    def logits(self, crops: torch.Tensor) -> torch.Tensor:
        """Logits for a uint8 batch of evaluation crops (N, 3, S, S)."""
        return self.model(normalize(crops.to(self.device), self.spec)).float().cpu()

    def probabilities(self, crops: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Class probabilities for a uint8 batch of crops; `tta` averages with the horizontally flipped crops."""
        return torch.stack([a.probs for a in self.assess(crops, tta)])

    @torch.inference_mode()
    def assess(self, crops: torch.Tensor, tta: bool = False) -> list[Assessment]:
        """Probabilities (averaged with the flipped crops with `tta`) and distance to the training photos."""
        features = self.features(normalize(crops.to(self.device), self.spec))
        probs = self.model.head(features).float().softmax(1).cpu()
        if tta:
            flipped = self.features(normalize(crops.flip(-1).to(self.device), self.spec))
            probs = (probs + self.model.head(flipped).float().softmax(1).cpu()) / 2
        distances = self.unknown.scores(features.float().cpu()).tolist() if self.unknown else [None] * len(probs)
        return [Assessment(probs=p, distance=d) for p, d in zip(probs, distances)]

    def predict_files(
        self,
        paths: Sequence[str | Path],
        batch_size: int = 32,
        tta: bool = False,
        workers: int | None = None,
        quiet: bool = True,
    ) -> Iterator[tuple[Path, Assessment | str]]:
        """Stream (path, assessment) per file, batch by batch; an unreadable file yields (path, reason)."""
        at_least("batch_size", batch_size, 1)
        return self._predict_files(paths, batch_size, tta, workers, quiet)

    def _predict_files(
        self, paths: Sequence[str | Path], batch_size: int, tta: bool, workers: int | None, quiet: bool
    ) -> Iterator[tuple[Path, Assessment | str]]:
        crop = Decode(self.spec.resize_size, self.spec.input_size, self.background, fingerprints=False)
        chunk = max(batch_size, 64)
        for start in range(0, len(paths), chunk):
            group = [Path(p) for p in paths[start : start + chunk]]
            results = [result for result, _ in parallel_map(crop, group, workers, "predict", quiet)]
            good = [i for i, r in enumerate(results) if not isinstance(r, str)]
            assessed: dict[int, Assessment] = {}
            for b in range(0, len(good), batch_size):
                index = good[b : b + batch_size]
                batch = torch.stack([torch.from_numpy(results[i]) for i in index])
                assessed.update(zip(index, self.assess(batch, tta)))
            for i, path in enumerate(group):
                yield path, assessed[i] if i in assessed else cast(str, results[i])  # not assessed: unreadable

    def predict(self, image: str | Path | Image.Image, topk: int = 3) -> Prediction:
        """Class, probability and the top-k classes for one picture."""
        return self.predict_many([image], topk)[0]

    def predict_many(self, images: list, topk: int = 3) -> list[Prediction]:
        return [self.rank(a, topk) for a in self.assess(torch.stack([self.preprocess(i) for i in images]))]

    def rank(self, assessment: Assessed | torch.Tensor, topk: int = 3) -> Prediction:
        """One photo's assessment (or bare probabilities) -> its answer and the top-k (label, probability) pairs;
        the answer is "unknown" when the photo is farther from the training photos than the run's threshold."""
        if isinstance(assessment, torch.Tensor):
            assessment = Assessment(probs=assessment)
        threshold = self.unknown.threshold if self.unknown else None
        return answer(assessment.probs.tolist(), self.classes, topk, assessment.distance, threshold)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Shorthand for `Classifier.load`."""
    return Classifier.load(run_dir, device)


__all__ = ["Assessment", "Classifier", "Prediction", "UNKNOWN", "load_run"]
