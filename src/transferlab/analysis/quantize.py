"""`export --int8`: an int8 copy of the exported model, kept only if it is not shown to be worse.

ONNX Runtime's static quantization of the backbone (`backbone_nodes`; after its pre-processing: shapes inferred,
BatchNorm folded; QDQ, per-channel int8 weights, uint8 activations, ranges by MinMax), calibrated on the run's training
photos (`CALIBRATION` of them, spread over the classes); the preprocessing, the head and the "unknown" score stay
float. Then both models answer the run's validation photos: both accuracies, their paired difference with a 95%
interval (bootstrap over the photos), the share of photos on which they agree, file sizes, latency at batch 1 and
throughput at batch 32. The int8 file is written only when it is not shown worse by more than `MAX_LOSS` (the
difference below -1 point and its interval below 0).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferlab.analysis.stats import Difference, paired_bootstrap
from transferlab.errors import TransferlabError, UnreadableImage, first_line
from transferlab.inference.export import run_dataset
from transferlab.inference.shipped import ShippedModel

CALIBRATION = 128  # training photos the activation ranges are measured on
MAX_LOSS = 0.01  # int8 shown worse by more than this (a fraction: 1 point) is refused


class QuantizationRefused(TransferlabError):
    """The int8 model was shown worse than float32 by more than MAX_LOSS, or ONNX Runtime could not make or run it:
    nothing was written."""


@dataclass(kw_only=True)
class Speed:
    bytes: int
    latency_ms: float  # batch 1, median
    throughput: float  # photos a second at batch 32


@dataclass(kw_only=True)
class QuantizationReport:
    path: Path | None  # None: refused
    photos: int
    float_accuracy: float
    int8_accuracy: float
    difference: Difference
    agreement: float
    float_speed: Speed
    int8_speed: Speed

    def lines(self) -> list[str]:
        d = self.difference
        return [
            f"int8 against float32 on {self.photos} validation photos: accuracy {self.int8_accuracy:.1%} vs "
            f"{self.float_accuracy:.1%}, difference {100 * d.diff:+.1f} points (95% CI {100 * d.low:+.1f} to "
            f"{100 * d.high:+.1f}); the two agree on {self.agreement:.1%} of the photos",
            *(
                f"{name}: {s.bytes / 1e6:.1f} MB, {s.latency_ms:.1f} ms for one photo, {s.throughput:.0f} photos/s "
                "at batch 32"
                for name, s in (("float32", self.float_speed), ("int8", self.int8_speed))
            ),
        ]


def export_int8(
    run: str | Path, out: str | Path | None = None, samples: list[Path] | None = None
) -> tuple[QuantizationReport, float]:
    """`export --int8` as a function: run `run` (a compare folder: its recommended run) exported to ONNX, checked
    against transferlab's own answers (on `samples`, else the run's validation photos), then quantized to int8 into
    `out` (default RUN/model.int8.onnx) and checked against float32, or refused (`QuantizationRefused`, nothing
    written). Returns the int8 report and the float32 export's largest difference from transferlab's answers."""
    from transferlab.inference.export import export_run
    from transferlab.runs import resolve_run

    run_dir = resolve_run(run)
    target = Path(out) if out else run_dir / "model.int8.onnx"
    with tempfile.TemporaryDirectory() as work:
        exported = export_run(run_dir, "onnx", Path(work) / "model.onnx", samples)
        return quantize_export(exported.path, run_dir, target), exported.max_abs_diff


def quantize_export(
    float_model: Path, run_dir: Path, out: Path, calibration: np.ndarray | None = None
) -> QuantizationReport:
    """Quantize `float_model` (an export of `run_dir`) into `out`, or refuse (`QuantizationRefused`, nothing at
    `out`). `calibration` (uint8 crops) replaces the training photos (tests use it to break the calibration)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    shipped = ShippedModel(float_model)
    dataset = run_dataset(run_dir, max_per_class=True)
    train, val = dataset.train, dataset.val
    crops = calibration if calibration is not None else _crops(shipped, _spread(train, CALIBRATION))[0]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{shipped.input_name: crops[i : i + 16]} for i in range(0, len(crops), 16)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as work:
        candidate, prepared = Path(work) / "int8.onnx", Path(work) / "prepared.onnx"
        try:  # shapes inferred, BatchNorm folded into the convolutions; then quantized, then run
            quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared), str(candidate), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_quantize=backbone_nodes(prepared),
            )  # fmt: skip
            report = _compare(shipped, ShippedModel(candidate), val)
        except (TransferlabError, MemoryError):  # ours say it better; no memory is no model problem
            raise
        except Exception as error:  # noqa: BLE001 - ONNX Runtime's own failures (an operator it cannot quantize or run)
            raise QuantizationRefused(
                f"ONNX Runtime could not make or run this model in int8 ({first_line(error)}): nothing written; the "
                f"float32 export {float_model} is unchanged"
            ) from None
        if report.difference.diff < -MAX_LOSS and report.difference.high < 0:
            raise QuantizationRefused(
                "int8 is shown worse than float32 by more than 1 point: nothing written. " + " ".join(report.lines())
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate, out)
    report.path = out
    return report


QUANTIZED = ("Conv", "Clip", "Relu", "Add", "ReduceMean", "GlobalAveragePool", "Resize", "Concat")


def backbone_nodes(model: Path) -> list[str]:
    """The backbone's nodes to quantize: those the class probabilities depend on (ancestors of the Softmax) of the
    kinds ONNX Runtime runs in int8 (QUANTIZED), so the preprocessing, the head and the "unknown" score stay float,
    and the convolutions' ReLU6 and residual additions stay in int8 between them (no float round trip)."""
    import onnx

    graph = onnx.load(str(model)).graph
    producer = {output: node for node in graph.node for output in node.output}
    seen: set[str] = set()
    stack = [next(node for node in graph.node if node.op_type == "Softmax").input[0]]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            stack.extend(node.input)
    return [node.name for node in graph.node if node.name in seen and node.op_type in QUANTIZED]


def _spread(samples: list, count: int) -> list:
    """Up to `count` samples taken evenly over the list (which is ordered by class): every class is seen."""
    step = max(1, len(samples) // count)
    return samples[::step][:count]


def _crops(model: ShippedModel, samples: list) -> tuple[np.ndarray, np.ndarray]:
    """The readable samples' crops and their labels."""
    crops, labels = [], []
    for sample in samples:
        try:
            crops.append(model.preprocess(sample.path))
        except UnreadableImage:
            continue
        labels.append(sample.label)
    if not crops:
        raise TransferlabError("no readable photo to calibrate or check the int8 model on")
    return np.stack(crops), np.array(labels)


def _compare(reference: ShippedModel, int8: ShippedModel, val: list) -> QuantizationReport:
    crops, labels = _crops(reference, val)
    answers = [np.concatenate([m.session.run(None, {m.input_name: crops[i : i + 32]})[0].argmax(1)
                               for i in range(0, len(crops), 32)]) for m in (reference, int8)]  # fmt: skip
    right_float, right_int8 = answers[0] == labels, answers[1] == labels
    return QuantizationReport(
        path=None,
        photos=len(crops),
        float_accuracy=float(right_float.mean()),
        int8_accuracy=float(right_int8.mean()),
        difference=paired_bootstrap(right_int8, right_float, "int8", "float32"),
        agreement=float((answers[0] == answers[1]).mean()),
        float_speed=_speed(reference, crops),
        int8_speed=_speed(int8, crops),
    )


def _speed(model: ShippedModel, crops: np.ndarray) -> Speed:
    batch = np.resize(crops, (32, *crops.shape[1:]))  # batch 32, repeating photos if there are fewer
    run = lambda x: model.session.run(None, {model.input_name: x})  # noqa: E731
    run(batch[:1]), run(batch)  # warm-up
    singles = []
    for i in range(10):
        start = time.perf_counter()
        run(batch[i % len(batch)][None])
        singles.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(3):
        run(batch)
    throughput = 3 * len(batch) / (time.perf_counter() - start)
    return Speed(bytes=model.path.stat().st_size, latency_ms=1000 * statistics.median(singles), throughput=throughput)
