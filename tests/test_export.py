"""Exports carry classes and preprocessing, have a free batch size, and match PyTorch within 1e-4."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from conftest import ANIMALS4, make_folder
from transferlab.cli import main
from transferlab.inference.export import ParityError, export_run
from transferlab.runs import read_run_config

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _data_root(run: Path) -> Path:
    return read_run_config(run).data_root


def test_onnx_export_takes_pixels_and_gives_probabilities_and_the_unknown_score(trained_run, tmp_path):
    result = export_run(trained_run, "onnx", tmp_path / "m.onnx")
    assert result.max_abs_diff <= 1e-4 and result.images == 8
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(props["classes"]) == ["blue", "green", "red"]
    meta = json.loads(props["transferlab"])
    assert meta["input"] == {**meta["input"], "name": "pixels", "layout": "NHWC", "dtype": "uint8", "input_size": 224}
    assert json.loads(result.metadata_path.read_text()) == meta and "threshold" in meta["unknown"]
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        pixels = np.random.default_rng(batch).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
        probabilities, score = session.run(None, {"pixels": pixels})
        assert probabilities.shape == (batch, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
        assert score.shape == (batch,) and (score >= 0).all()


def test_an_onnx_export_can_output_its_heat_maps_equal_to_transferlabs(trained_run, tmp_path):
    from transferlab.inference.explain import class_maps
    from transferlab.inference.predict import Classifier

    result = export_run(trained_run, "onnx", tmp_path / "m.onnx", heatmap=True)  # parity covers the maps too
    assert result.max_abs_diff <= 1e-4 and "heatmap" in json.loads(result.metadata_path.read_text())["outputs"]
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities", "unknown_score", "heatmap"]
    pixels = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    probabilities, _, maps = session.run(None, {"pixels": pixels})
    classifier = Classifier.load(trained_run)
    expected = class_maps(classifier, torch.from_numpy(pixels).permute(0, 3, 1, 2)).numpy()
    assert (
        maps.shape == expected.shape == (2, 3, 7, 7) and np.abs(maps - expected).max() <= 1e-4 * np.abs(expected).max()
    )
    logits = maps.mean((2, 3)) + classifier.model.head[-1].bias.detach().numpy()  # the maps' mean plus the bias
    assert np.allclose(torch.from_numpy(logits).softmax(1).numpy(), probabilities, atol=1e-4)
    assert main(["export", str(trained_run), "--heatmap", "--int8", "--out", str(tmp_path / "q.onnx")]) == 2


def test_the_export_fed_as_documented_answers_as_predict_does(trained_run, tmp_path):
    from transferlab.inference.predict import Classifier
    from transferlab.inference.shipped import ShippedModel

    result = export_run(trained_run, "onnx", tmp_path / "m.onnx")
    photos = sorted((_data_root(trained_run) / "val").rglob("*.jpg"))
    ours, shipped = Classifier.load(trained_run), ShippedModel(result.path)
    threshold = ours.unknown.threshold if ours.unknown is not None else None
    for (_, a), (_, b) in zip(ours.predict_files(photos), shipped.predict_files(photos), strict=True):
        assert np.abs(a.probs.numpy() - b.probs).max() <= 1e-4 and abs(a.distance - b.distance) <= 1e-4
        # the same answer, but where the distance is within the parity tolerance of the "unknown" threshold (the
        # threshold is a quantile of validation distances: one photo sits exactly on it, and 1e-7 decides its side)
        on_the_edge = threshold is not None and abs(a.distance - threshold) <= 1e-4
        assert ours.rank(a).label == shipped.rank(b).label or on_the_edge
    assert len(photos) >= 6


def test_predict_and_serve_of_an_export_never_import_torch(trained_run, tmp_path):
    result = export_run(trained_run, "onnx", tmp_path / "m.onnx")
    photo = next((_data_root(trained_run) / "val").rglob("*.jpg"))
    script = f"""
import sys, io
from transferlab.cli import main
assert main(["predict", {str(result.path)!r}, {str(photo)!r}, "--format", "json"]) == 0
from fastapi.testclient import TestClient
from transferlab.inference.serve import create_app
client = TestClient(create_app({str(result.path)!r}), base_url='http://127.0.0.1:8000')
answer = client.post("/predict", files={{"file": ("p.jpg", open({str(photo)!r}, "rb"), "image/jpeg")}}).json()
assert answer["label"] in ("blue", "green", "red", "unknown"), answer
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
assert not heavy, heavy
print("no torch")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "no torch" in done.stdout, done.stderr[-2000:]


def test_torchscript_export_takes_the_same_pixels(trained_run, tmp_path):
    result = export_run(trained_run, "torchscript", tmp_path / "m.pt")
    assert result.max_abs_diff <= 1e-4
    extra = {"transferlab.json": ""}
    loaded = torch.jit.load(str(result.path), _extra_files=extra)
    assert json.loads(extra["transferlab.json"])["classes"] == ["blue", "green", "red"]
    probabilities, score = loaded(torch.zeros(3, 224, 224, 3, dtype=torch.uint8))
    assert probabilities.shape == (3, 3) and score.shape == (3,)


def test_parity_failure_is_loud(trained_run, tmp_path, monkeypatch, capsys):
    import transferlab.inference.export as export_module

    monkeypatch.setattr(export_module, "parity", lambda *args: 0.5)
    with pytest.raises(ParityError, match="differ from transferlab's by 5.00e-01"):
        export_run(trained_run, "onnx", tmp_path / "bad.onnx")
    assert main(["export", str(trained_run), "--out", str(tmp_path / "bad2.onnx")]) == 1
    assert "parity check FAILED" in capsys.readouterr().err


def test_export_command_prints_the_parity_figure(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(tmp_path / "c.onnx")]) == 0
    assert "max |difference| from transferlab's own answers" in capsys.readouterr().out


def test_export_checks_parity_on_real_photos_or_fails_clearly(tmp_path, capsys):
    root = make_folder(tmp_path / "photos", {"red": 4, "green": 4})
    assert (
        main(
            [
                "train",
                str(root),
                "--strategy",
                "extract",
                "--backbone",
                "efficientnet_lite0",
                "--out",
                str(tmp_path / "runs"),
                "--name",
                "r",
                "-q",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    run = tmp_path / "runs" / "r"
    assert json.loads((run / "config.json").read_text())["resolved"]["data_root"] == str(root.resolve())
    moved = root.rename(tmp_path / "moved")  # the photos are gone from where the run saw them
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "pass --images DIR" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx"), "--images", str(moved / "val")]) == 0
    captured = capsys.readouterr()
    assert "parity on 4 images" in captured.out
    assert "Replaced initializer" not in captured.err and captured.err.count("\n") <= 2  # no optimizer chatter


def test_int8_is_checked_against_float32_and_refused_when_shown_worse(trained_run, tmp_path, capsys):
    from transferlab.analysis.quantize import QuantizationRefused, quantize_export

    assert main(["export", str(trained_run), "--int8", "--out", str(tmp_path / "m8.onnx")]) == 0
    out = capsys.readouterr().out
    assert "int8 against float32 on 9 validation photos" in out and "photos/s at batch 32" in out
    float_model = export_run(trained_run, "onnx", tmp_path / "m.onnx").path
    broken = np.full((4, 224, 224, 3), 128, np.uint8)  # calibrated on flat grey: every range is one value wide
    with pytest.raises(QuantizationRefused, match="nothing written"):
        quantize_export(float_model, trained_run, tmp_path / "bad.onnx", calibration=broken)
    assert not (tmp_path / "bad.onnx").exists()


def test_int8_export_is_in_the_python_api_too(tmp_path):
    from transferlab import DataConfig, Recipe, TrainConfig, export_int8, train

    # a fitted head (the probe): the shared fixture's two SGD epochs leave margins of 0.001 between classes, where
    # int8's rounding decides the answer and agreement measures nothing
    root = make_folder(tmp_path / "data", {"red": 6, "green": 6, "blue": 6})
    recipe = Recipe(epochs=1, batch_size=8, head_solver="probe")
    config = TrainConfig(
        data=DataConfig(root=str(root)),
        strategy="extract",
        backbone="efficientnet_lite0",
        recipe=recipe,
        out=str(tmp_path / "runs"),
        quiet=True,
        workers=0,
    )
    report, max_abs_diff = export_int8(train(config).run_dir, tmp_path / "api8.onnx")
    assert report.path == tmp_path / "api8.onnx" and report.path.stat().st_size > 1_000_000
    assert max_abs_diff <= 1e-4 and report.agreement >= 0.8


def test_an_int8_model_onnx_runtime_cannot_run_is_one_line_and_nothing_written(
    trained_run, tmp_path, monkeypatch, capsys
):
    # as ONNX Runtime did with a cubic Resize in an ensemble's int8 graph: the session fails when it runs
    from transferlab.analysis import quantize

    def fails(*args, **kwargs):
        raise RuntimeError(
            "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Resize node\nmore"
        )

    monkeypatch.setattr(quantize, "_compare", fails)
    assert main(["export", str(trained_run), "--int8", "--out", str(tmp_path / "m8.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not make or run this model in int8" in err and "Traceback" not in err
    assert not (tmp_path / "m8.onnx").exists()


@pytest.mark.skipif(not ANIMALS4.is_dir(), reason=f"real photos not found at {ANIMALS4}")
def test_the_docs_ten_line_host_side_feeds_the_export_as_predict_sees_photos(trained_run, tmp_path):
    from transferlab.inference.predict import Classifier

    model = export_run(trained_run, "onnx", tmp_path / "m.onnx").path
    docs = (Path(__file__).parents[1] / "docs" / "usage.md").read_text()
    snippet = docs.split("The host side, in full")[1].split("```python\n")[1].split("```")[0]
    classifier = Classifier.load(trained_run)
    photos = sorted((ANIMALS4 / "val").rglob("*.jpg"))[::25][:8]  # phone photos and small web images alike
    for photo in photos:
        scope: dict = {}
        exec(snippet.replace('"model.onnx"', repr(str(model))).replace('"photo.jpg"', repr(str(photo))), scope)
        ours = classifier.assess(classifier.preprocess(photo)[None])[0]
        assert np.abs(scope["probabilities"][0] - ours.probs.numpy()).max() <= 1e-4
        assert abs(float(scope["unknown"][0][0]) - ours.distance) <= 1e-4
    assert len(photos) == 8
