"""Export a trained run to ONNX or TorchScript with its preprocessing inside, its classes attached, and prove parity.

The exported network takes what a photo is after the only steps that need an image library: uint8 RGB pixels
(N, S, S, 3), the photo's short side resized to `resize_size` (bilinear) and centre-cropped to `input_size` =
S (`data.images.eval_crop` is the reference, ten lines). It scales, normalizes and lays them out itself, and outputs
`probabilities` and, when the run has an "unknown" detector, `unknown_score` (the mean cosine distance to the
nearest training photos, whose features travel inside the file; above `unknown.threshold` the answer is
"unknown"). The batch size is free. The description travels inside the file (ONNX metadata properties; a
TorchScript extra file) and in a JSON file beside it. After export, the exported model (onnxruntime for ONNX) and
transferlab's own prediction run on real photos; the largest absolute difference of probabilities and scores is
reported and must not exceed `PARITY_TOLERANCE`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch

from transferlab.data.images import load_crop
from transferlab.data.layout import Dataset, dataset_for
from transferlab.errors import DatasetError, TransferlabError, UnreadableImage, UsageError
from transferlab.inference.predict import Classifier
from transferlab.runs import read_run_config, resolve_run
from transferlab.utils.storage import save_json

PARITY_TOLERANCE = 1e-4
FORMATS = ("onnx", "torchscript")
INPUT = "pixels"
OUTPUTS = ("probabilities", "unknown_score", "heatmap")


class ParityError(TransferlabError, RuntimeError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


@dataclass(kw_only=True)
class ExportResult:
    path: Path
    metadata_path: Path
    max_abs_diff: float
    images: int


class Packaged(torch.nn.Module):
    """The classifier as it ships: uint8 (N, S, S, 3) RGB pixels -> class probabilities, and the "unknown" score
    (mean cosine distance to the k nearest training photos) when the run has a detector."""

    mean: torch.Tensor
    std: torch.Tensor
    bank: torch.Tensor

    def __init__(self, classifier: Classifier, heatmap: bool = False):
        super().__init__()
        spec, self.model = classifier.spec, classifier.model.eval().to(memory_format=torch.contiguous_format)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0)
        detector = classifier.unknown
        self.k = min(detector.k, detector.bank.shape[0]) if detector else 0
        self.register_buffer("bank", detector.bank.float().T.contiguous() if detector else torch.zeros(0))
        self.heatmap = heatmap
        self.grid: list[torch.Tensor] = []  # the backbone's grid of features before its pooling, while tracing
        if heatmap:
            from transferlab.inference.explain import has_maps

            if not has_maps(classifier) or getattr(self.model.backbone, "has_grids", False):
                raise UsageError(f"{spec.name}: the export has no heat map for this model (an ensemble's are several "
                                 "grids of several sizes): export it without --heatmap")  # fmt: skip
            pool = next(m for m in self.model.backbone.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d))
            pool.register_forward_hook(lambda _m, given, _out: self.grid.append(given[0]))

    @property
    def outputs(self) -> list[str]:
        return [OUTPUTS[0], *(OUTPUTS[1:2] if self.k else []), *(OUTPUTS[2:] if self.heatmap else [])]

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std
        self.grid.clear()
        features = self.model.backbone(x)
        out = [self.model.head(features).float().softmax(1)]
        if self.k:
            distances = 1.0 - torch.nn.functional.normalize(features.float(), dim=1) @ self.bank
            out.append(distances.topk(self.k, dim=1, largest=False).values.mean(1))
        if self.heatmap:  # each cell's contribution to each class's logit (`inference.explain.class_maps`)
            out.append(torch.einsum("kc,nchw->nkhw", self.model.head[-1].weight.float(), self.grid[-1].float()))
        return tuple(out)


def export_metadata(classifier: Classifier, heatmap: bool = False) -> dict:
    spec = classifier.spec
    return {
        "classes": classifier.classes,
        "backbone": spec.name,
        "strategy": classifier.meta.strategy,
        "input": {
            "name": INPUT,
            "layout": "NHWC",
            "dtype": "uint8",
            "channels": "RGB",
            "resize_size": spec.resize_size,
            "input_size": spec.input_size,
            "background_for_transparency": list(classifier.background),
        },
        "outputs": {"probabilities": "softmax over classes, in the order of `classes`"}
        | ({"unknown_score": "above unknown.threshold: the answer is 'unknown'"} if classifier.unknown else {})
        | (
            {
                "heatmap": "class activation maps (N, classes, h, w): each cell's contribution to each class's logit "
                "(their mean plus the head's bias is the logit); upsampled to the crop, its positive part is where the "
                "answer comes from"
            }
            if heatmap
            else {}
        ),
        **({"unknown": classifier.unknown.describe()} if classifier.unknown else {}),
        "preprocessing": f"on the host: convert to RGB (transparency composited on {tuple(classifier.background)}, "
        f"EXIF rotation applied), resize the short side to {spec.resize_size} (bilinear), centre-crop "
        f"{spec.input_size}x{spec.input_size} (top = round((height - {spec.input_size}) / 2)), uint8 HWC; "
        "scaling and normalization happen inside the model",
    }


def export_run(
    run_dir: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    samples: list[Path] | None = None,
    *,
    heatmap: bool = False,
) -> ExportResult:
    """Export `run_dir`'s best model to `fmt`, write metadata beside it and check parity on sample images; with
    `heatmap`, the model also outputs its class activation maps (`heatmap`)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    run_dir = resolve_run(run_dir)
    classifier = Classifier.load(run_dir)
    model = Packaged(classifier, heatmap).eval()
    out = Path(out) if out else run_dir / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    crops = sample_crops(classifier, run_dir, samples)  # before writing anything: real photos or no export
    metadata = export_metadata(classifier, heatmap)
    size = classifier.spec.input_size
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    partial = out.with_name(out.name + ".partial")  # an interrupted export leaves no half-written model behind
    try:
        if fmt == "onnx":
            _export_onnx(model, example, partial, metadata)
        else:
            _export_torchscript(model, example, partial, metadata)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    metadata_path = out.with_name(out.name + ".json")
    save_json(metadata, metadata_path)
    diff = parity(classifier, crops, out, fmt, heatmap)
    if diff > PARITY_TOLERANCE:
        raise ParityError(
            f"{out}: the export's answers differ from transferlab's by {diff:.2e} (> {PARITY_TOLERANCE:g})"
        )
    return ExportResult(path=out, metadata_path=metadata_path, max_abs_diff=diff, images=len(crops))


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path, metadata: dict) -> None:
    import onnx

    batch = torch.export.Dim("batch", min=1, max=4096)
    outputs = cast(Packaged, model).outputs
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT],
        output_names=outputs,
        dynamic_shapes=({0: batch},),
        verbose=False,
    )
    assert program is not None  # dynamo=True always returns the program
    program.save(str(out))
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(
        proto, {"transferlab": json.dumps(metadata), "classes": json.dumps(metadata["classes"])}
    )
    onnx.save(proto, str(out))


def _export_torchscript(model: torch.nn.Module, example: torch.Tensor, out: Path, metadata: dict) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    torch.jit.save(traced, str(out), _extra_files={"transferlab.json": json.dumps(metadata)})


def sample_crops(
    classifier: Classifier, run_dir: Path, samples: list[Path] | None = None, count: int = 8
) -> np.ndarray:
    """uint8 (N, S, S, 3) evaluation crops of real validation photos of the run (or `samples`), made the way the
    metadata tells a user to (`data.images.eval_crop`). Parity is only ever checked on real photos: when none can
    be read, the export fails and says how to name some."""
    where = "the images given"
    if samples is None:
        where = f"the run's validation images ({read_run_config(run_dir).data_root})"
        try:
            val = run_dataset(run_dir).val
            samples = [s.path for s in val[:: max(1, len(val) // count)]][:count]
        except DatasetError:
            samples = []
    spec, crops = classifier.spec, []
    for path in samples:
        try:
            crops.append(load_crop(path, classifier.background, spec.resize_size, spec.input_size))
        except UnreadableImage:  # an unreadable sample only narrows the check
            continue
    if not crops:
        raise TransferlabError(
            f"no photo to check the export on: none of {where} could be read; pass --images DIR (a folder of photos)"
        )
    return np.stack(crops)


def run_dataset(run_dir: Path, max_per_class: bool = False) -> Dataset:
    """The run's photo folder split as the run split it (every photo; with `max_per_class`, the run's own cap)."""
    saved = read_run_config(run_dir)
    return dataset_for(saved.config.data, saved.data_root, capped=max_per_class)


@torch.inference_mode()
def parity(classifier: Classifier, crops: np.ndarray, path: Path, fmt: str, heatmap: bool = False) -> float:
    """Largest absolute difference between transferlab's own answers (`Classifier.assess`: probabilities and the
    unknown score; the maps of `inference.explain.class_maps`, relative to their largest value) and the exported
    file's, over the batch and over one photo alone."""
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2)
    assessed = classifier.assess(batch)
    expected = [np.stack([a.probs.numpy() for a in assessed])]
    if classifier.unknown is not None:
        expected.append(np.array([a.distance for a in assessed], dtype=np.float32))
    scale = 1.0
    if heatmap:
        from transferlab.inference.explain import class_maps

        maps = class_maps(classifier, batch).numpy()
        scale = max(1.0, float(np.abs(maps).max()))
        expected.append(maps / scale)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run = lambda x: session.run(None, {INPUT: x})  # noqa: E731
    else:
        loaded = torch.jit.load(str(path))
        run = lambda x: [o.numpy() for o in loaded(torch.from_numpy(x))]  # noqa: E731
    whole, single = run(crops), run(crops[:1])  # a different batch size: the exported batch dimension is free
    if heatmap:  # maps on the scale of their largest value, as the expected ones
        whole[-1], single[-1] = whole[-1] / scale, single[-1] / scale
    return float(max(max(np.abs(w - e).max(), np.abs(s - e[:1]).max()) for w, s, e in zip(whole, single, expected)))
