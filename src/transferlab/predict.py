"""Use a trained run: `Classifier.load(run_dir).predict(image_or_path)`.

The picture goes through exactly the preprocessing used for validation during training (`images.load_rgb`,
then `presets.decoded_view` and `presets.eval_view`), so any image mode works and results match training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import torch
from PIL import Image

from .backbones import BackboneSpec
from .decoding import Decode
from .images import load_rgb
from .machine import keep_freed_memory
from .model import TransferModel, build_model
from .parallel import parallel_map
from .presets import decoded_view, eval_view, normalize
from .runs import load_checkpoint, resolve_run


@dataclass
class Prediction:
    label: str
    probability: float
    topk: list[tuple[str, float]]


class Classifier:
    """A trained model together with its classes and preprocessing."""

    def __init__(self, model: TransferModel, spec: BackboneSpec, classes: list[str], metadata: dict,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.spec = spec
        self.classes = classes
        self.metadata = metadata
        self.background = tuple(metadata.get("background", (255, 255, 255)))

    @classmethod
    def load(cls, run_dir: str | Path, device: str | torch.device = "cpu") -> "Classifier":
        """Load the best weights of a run directory, or of the run a compare folder recommends (no pickle)."""
        keep_freed_memory()
        state, meta = load_checkpoint(resolve_run(run_dir))
        model, spec, _ = build_model(meta["backbone"], len(meta["classes"]), meta["strategy"], pretrained=False)
        model.load_state_dict(state)
        return cls(model, spec, meta["classes"], meta, device)

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
        probs = self.logits(crops).softmax(1)
        if tta:
            probs = (probs + self.logits(crops.flip(-1)).softmax(1)) / 2
        return probs

    def predict_files(self, paths: Sequence[str | Path], batch_size: int = 32, tta: bool = False,
                      workers: int | None = None, quiet: bool = True) -> Iterator[tuple[Path, torch.Tensor | str]]:
        """Stream (path, probabilities) per file, batch by batch; an unreadable file yields (path, reason)."""
        crop = Decode(self.spec.resize_size, self.spec.input_size, self.background, fingerprints=False)
        chunk = max(batch_size, 64)
        for start in range(0, len(paths), chunk):
            group = [Path(p) for p in paths[start:start + chunk]]
            results = [result for result, _ in parallel_map(crop, group, workers, "predict", quiet)]
            good = [i for i, r in enumerate(results) if not isinstance(r, str)]
            probs: dict[int, torch.Tensor] = {}
            for b in range(0, len(good), batch_size):
                index = good[b:b + batch_size]
                batch = torch.stack([torch.from_numpy(results[i]) for i in index])
                probs.update(zip(index, self.probabilities(batch, tta)))
            for i, path in enumerate(group):
                yield path, probs[i] if i in probs else results[i]

    def predict(self, image: str | Path | Image.Image, topk: int = 3) -> Prediction:
        """Class, probability and the top-k classes for one picture."""
        return self.predict_many([image], topk)[0]

    def predict_many(self, images: list, topk: int = 3) -> list[Prediction]:
        probabilities = self.logits(torch.stack([self.preprocess(i) for i in images])).softmax(1)
        return [self.rank(row, topk) for row in probabilities]

    def rank(self, probabilities: torch.Tensor, topk: int = 3) -> Prediction:
        """One image's class probabilities -> its label and the top-k (label, probability) pairs."""
        values, indices = probabilities.topk(min(topk, len(self.classes)))
        ranked = [(self.classes[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]
        return Prediction(ranked[0][0], ranked[0][1], ranked)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Shorthand for `Classifier.load`."""
    return Classifier.load(run_dir, device)


__all__ = ["Classifier", "Prediction", "load_run"]
