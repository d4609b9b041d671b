"""An exported ONNX model run with onnxruntime, Pillow and numpy alone: `predict MODEL.onnx` and `serve MODEL.onnx`
on a machine without torch, with the same answers as the run it came from.

The file carries what it needs (`export`): classes, the resize and crop its pixels need (`data.images.eval_crop`),
and the "unknown" threshold; the model itself scales, normalizes and scores. Importing this module loads neither
torch nor torchvision (a test checks)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias

import numpy as np
from PIL import Image

from transferlab.data.images import load_crop
from transferlab.errors import DamagedFile, UnreadableImage, at_least, first_line
from transferlab.inference.answers import Assessed, Prediction, answer
from transferlab.utils.machine import cpu_cores

if TYPE_CHECKING:
    from transferlab.inference.predict import Classifier


@dataclass(kw_only=True)
class ShippedAssessment:
    """One photo as the exported model sees it: class probabilities and its "unknown" score (None: no detector)."""

    probs: np.ndarray
    distance: float | None = None


class ShippedModel:
    """An exported `.onnx` file with the interface `predict` and `serve` use: preprocess, assess, rank."""

    def __init__(self, path: str | Path):
        import onnxruntime

        self.path = Path(path)
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.metadata: dict[str, Any] = json.loads(self.session.get_modelmeta().custom_metadata_map["transferlab"])
        except Exception as error:  # noqa: BLE001 - not ONNX, cut short, or not exported by transferlab
            raise DamagedFile(
                self.path, f"cannot be read as a transferlab export ({first_line(error)})", "export the run again"
            ) from None
        self.classes: list[str] = self.metadata["classes"]
        about = self.metadata["input"]
        self.resize_size, self.input_size = int(about["resize_size"]), int(about["input_size"])
        self.background = tuple(about.get("background_for_transparency", (255, 255, 255)))
        unknown = self.metadata.get("unknown")
        self.threshold: float | None = float(unknown["threshold"]) if unknown else None
        self.input_name = self.session.get_inputs()[0].name

    def describe(self) -> dict[str, Any]:
        """What a page says it runs: backbone, strategy (an export carries no validation accuracy)."""
        return {"backbone": self.metadata.get("backbone"), "strategy": self.metadata.get("strategy"), "val_acc": None}

    def preprocess(self, image: str | Path | BinaryIO | Image.Image) -> np.ndarray:
        """One picture -> the uint8 (S, S, 3) crop the model takes (as `Classifier.preprocess`, in HWC)."""
        return load_crop(image, self.background, self.resize_size, self.input_size)

    def assess(self, crops: np.ndarray, tta: bool = False) -> list[ShippedAssessment]:
        """Probabilities (averaged with the mirrored crops with `tta`) and "unknown" scores of (N, S, S, 3) crops."""
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(crops)})
        probs = outputs[0]
        if tta:
            probs = (probs + self.session.run(None, {self.input_name: np.ascontiguousarray(crops[:, :, ::-1])})[0]) / 2
        scores = [float(s) for s in outputs[1]] if len(outputs) > 1 else [None] * len(probs)
        return [ShippedAssessment(probs=p, distance=s) for p, s in zip(probs, scores)]

    def predict_files(
        self, paths: Sequence[str | Path], batch_size: int = 32, tta: bool = False, workers: int | None = None,
        quiet: bool = True,
    ) -> Iterator[tuple[Path, ShippedAssessment | str]]:  # fmt: skip
        """Stream (path, assessment) per file, batch by batch; an unreadable file yields (path, reason). Photos
        are decoded by threads (Pillow releases the GIL) while the model runs."""
        at_least("batch_size", batch_size, 1)
        return self._predict_files([Path(p) for p in paths], batch_size, tta, workers or cpu_cores())

    def _crop_or_reason(self, path: Path) -> np.ndarray | str:
        try:
            return self.preprocess(path)
        except UnreadableImage as error:
            return str(error)

    def _predict_files(
        self, paths: list[Path], batch_size: int, tta: bool, workers: int
    ) -> Iterator[tuple[Path, ShippedAssessment | str]]:
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(self._crop_or_reason, paths)
            pending: list[tuple[Path, np.ndarray | str]] = []
            readable = 0
            for path, result in zip(paths, results):
                pending.append((path, result))
                readable += not isinstance(result, str)
                if readable == batch_size:
                    yield from self._flush(pending, tta)
                    pending, readable = [], 0
            yield from self._flush(pending, tta)

    def _flush(self, pending: list[tuple[Path, np.ndarray | str]], tta: bool):
        good = [r for _, r in pending if not isinstance(r, str)]
        assessed = iter(self.assess(np.stack(good), tta) if good else [])
        for path, result in pending:
            yield path, result if isinstance(result, str) else next(assessed)

    def predict(self, image: str | Path | Image.Image, topk: int = 3) -> Prediction:
        """Class, probability and the top-k classes for one picture."""
        return self.rank(self.assess(self.preprocess(image)[None])[0], topk)

    def rank(self, assessment: Assessed, topk: int = 3) -> Prediction:
        return answer(assessment.probs.tolist(), self.classes, topk, assessment.distance, self.threshold)


def is_shipped(path: str | Path) -> bool:
    """Whether `path` names an exported ONNX file (rather than a run or compare folder)."""
    return Path(path).suffix.lower() == ".onnx" and Path(path).is_file()


Predictor: TypeAlias = "ShippedModel | Classifier"  # what predict and serve run: an export, or a run's model


def load_predictor(path: str | Path) -> Predictor:
    """An exported `.onnx` file (no torch), else a run folder's (or a compare folder's recommended run's) model."""
    if is_shipped(path):
        return ShippedModel(path)
    from transferlab.inference.predict import Classifier

    return Classifier.load(path)
