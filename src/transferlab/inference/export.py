"""Export a trained run to ONNX or TorchScript, with its classes and preprocessing attached, and prove parity.

The exported network takes what the PyTorch model takes: float32 (N, 3, S, S) RGB, resized so the short side is
`resize_size`, centre-cropped to `input_size`, scaled to [0, 1] and normalized with `mean` and `std`; the batch
size is free. That description and the class names travel inside the file (ONNX metadata properties; a
TorchScript extra file) and in a JSON file beside it. After export, the exported model (onnxruntime for ONNX) and
the PyTorch model run on sample images; the largest absolute logit difference is reported and must not exceed
`PARITY_TOLERANCE`. A run with an "unknown" detector exports a second output, `features`, and its training features
(`<file>.unknown.safetensors`) with the threshold in the metadata, so the exported model can answer "unknown" too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferlab.data.layout import load_dataset
from transferlab.data.presets import normalize
from transferlab.errors import DatasetError, TransferlabError, UnreadableImage, UsageError
from transferlab.inference.predict import Classifier
from transferlab.inference.unknown import FILE as UNKNOWN_FILE
from transferlab.runs import resolve_run
from transferlab.utils.storage import read_json, save_json

PARITY_TOLERANCE = 1e-4
FORMATS = ("onnx", "torchscript")


class ParityError(TransferlabError, RuntimeError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


@dataclass
class ExportResult:
    path: Path
    metadata_path: Path
    max_abs_diff: float
    images: int


def export_metadata(classifier: Classifier) -> dict:
    spec = classifier.spec
    return {
        "classes": classifier.classes,
        "backbone": spec.name,
        "strategy": classifier.metadata.get("strategy"),
        "input": {
            "name": "image",
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "resize_size": spec.resize_size,
            "input_size": spec.input_size,
            "scale": "1/255",
            "mean": list(spec.mean),
            "std": list(spec.std),
            "background_for_transparency": list(classifier.background),
        },
        "output": {"name": "logits", "softmax": "not applied"},
        **(
            {
                "unknown": {
                    **classifier.unknown.describe(),
                    "features_output": "features",
                    "training_features": "the 'bank' tensor of the .unknown.safetensors file beside this one",
                }
            }
            if classifier.unknown
            else {}
        ),
        "preprocessing": f"convert to RGB (transparency composited on {tuple(classifier.background)}, EXIF rotation "
        f"applied), resize short side to {spec.resize_size}, centre-crop {spec.input_size}, divide "
        "by 255, subtract mean, divide by std",
    }


def export_run(
    run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None, samples: list[Path] | None = None
) -> ExportResult:
    """Export `run_dir`'s best model to `fmt`, write metadata beside it and check parity on sample images."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    run_dir = resolve_run(run_dir)
    classifier = Classifier.load(run_dir)
    model: torch.nn.Module = classifier.model.eval().to(memory_format=torch.contiguous_format)
    if classifier.unknown is not None:  # the features go out too: "unknown" needs their distance to the training photos
        model = WithFeatures(model).eval()
    out = Path(out) if out else run_dir / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = sample_batch(classifier, run_dir, samples)  # before writing anything: real photos or no export
    metadata = export_metadata(classifier)
    size = classifier.spec.input_size
    example = torch.zeros(2, 3, size, size)
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
    if classifier.unknown is not None:
        shutil.copyfile(run_dir / UNKNOWN_FILE, out.with_name(out.name + ".unknown.safetensors"))
    diff = parity(model, batch, out, fmt)
    if diff > PARITY_TOLERANCE:
        raise ParityError(f"{out}: exported logits differ from PyTorch's by {diff:.2e} (> {PARITY_TOLERANCE:g})")
    return ExportResult(out, metadata_path, diff, len(batch))


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path, metadata: dict) -> None:
    import onnx

    batch = torch.export.Dim("batch", min=1, max=4096)
    outputs = ["logits", "features"] if isinstance(model, WithFeatures) else ["logits"]
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["image"],
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


def sample_batch(
    classifier: Classifier, run_dir: Path, samples: list[Path] | None = None, count: int = 8
) -> torch.Tensor:
    """Normalized inputs from real validation images of the run (or `samples`). Parity is only ever checked on
    real photos: when none can be read, the export fails and says how to name some."""
    where = "the images given"
    if samples is None:
        config = read_json(run_dir / "config.json")
        root = config.get("resolved", {}).get("data_root") or config["data"]["root"]
        where = f"the run's validation images ({root})"
        try:
            dataset = load_dataset(root, config["data"]["val_fraction"], config["data"].get("split_seed", 0), None)
            samples = [s.path for s in dataset.val[:: max(1, len(dataset.val) // count)]][:count]
        except DatasetError:
            samples = []
    crops = []
    for path in samples:
        try:
            crops.append(classifier.preprocess(path))
        except UnreadableImage:  # an unreadable sample only narrows the check
            continue
    if not crops:
        raise TransferlabError(
            f"no photo to check the export on: none of {where} could be read; pass --images DIR (a folder of photos)"
        )
    return normalize(torch.stack(crops), classifier.spec).contiguous()


@torch.inference_mode()
def parity(model: torch.nn.Module, batch: torch.Tensor, path: Path, fmt: str) -> float:
    """Largest absolute logit difference between PyTorch and the exported file, over the batch and one image."""
    expected = _logits(model(batch)).float().numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run = lambda x: session.run(["logits"], {"image": x.numpy()})[0]  # noqa: E731
    else:
        loaded = torch.jit.load(str(path))
        run = lambda x: _logits(loaded(x)).float().numpy()  # noqa: E731
    whole = run(batch)
    single = run(batch[:1])  # a different batch size: the exported batch dimension is dynamic
    return float(max(np.abs(whole - expected).max(), np.abs(single - expected[:1]).max()))


class WithFeatures(torch.nn.Module):
    """The model with its pooled features as a second output (for the "unknown" distance test)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model: Any = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.backbone(x)
        return self.model.head(features), features


def _logits(output: torch.Tensor | tuple) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output
