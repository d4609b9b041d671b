"""Exports carry classes and preprocessing, have a free batch size, and match PyTorch within 1e-4."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from conftest import make_folder
from transferlab.cli import main
from transferlab.inference.export import ParityError, export_run

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_onnx_export_has_metadata_dynamic_batch_and_parity(trained_run, tmp_path):
    result = export_run(trained_run, "onnx", tmp_path / "m.onnx")
    assert result.max_abs_diff <= 1e-4 and result.images == 8
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(props["classes"]) == ["blue", "green", "red"]
    meta = json.loads(props["transferlab"])
    assert meta["input"]["input_size"] == 224 and len(meta["input"]["mean"]) == 3
    assert json.loads(result.metadata_path.read_text()) == meta
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        logits, features = session.run(None, {"image": np.zeros((batch, 3, 224, 224), np.float32)})
        assert logits.shape == (batch, 3) and features.shape == (batch, 1280)


def test_exports_carry_the_unknown_threshold_and_training_features(trained_run, tmp_path):
    from safetensors.torch import load_file

    from transferlab.inference.predict import Classifier
    from transferlab.inference.unknown import UnknownDetector

    result = export_run(trained_run, "onnx", tmp_path / "m.onnx")
    about = json.loads(result.metadata_path.read_text())["unknown"]
    classifier = Classifier.load(trained_run)
    assert about["threshold"] == classifier.unknown.threshold and about["k"] == classifier.unknown.k
    bank = load_file(tmp_path / "m.onnx.unknown.safetensors")["bank"]
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    _, features = session.run(None, {"image": image})
    exported = UnknownDetector(bank, about["threshold"], about["known_rejected"], about["k"])
    with torch.no_grad():
        expected = classifier.unknown.scores(classifier.model.backbone(torch.from_numpy(image)))
    assert torch.allclose(exported.scores(torch.from_numpy(features)), expected, atol=1e-4)


def test_torchscript_export_carries_metadata_and_matches(trained_run, tmp_path):
    result = export_run(trained_run, "torchscript", tmp_path / "m.pt")
    assert result.max_abs_diff <= 1e-4
    extra = {"transferlab.json": ""}
    loaded = torch.jit.load(str(result.path), _extra_files=extra)
    assert json.loads(extra["transferlab.json"])["classes"] == ["blue", "green", "red"]
    logits, features = loaded(torch.zeros(3, 3, 224, 224))
    assert logits.shape == (3, 3) and features.shape == (3, 1280)


def test_parity_failure_is_loud(trained_run, tmp_path, monkeypatch, capsys):
    import transferlab.inference.export as export_module

    monkeypatch.setattr(export_module, "parity", lambda *args: 0.5)
    with pytest.raises(ParityError, match="differ from PyTorch's by 5.00e-01"):
        export_run(trained_run, "onnx", tmp_path / "bad.onnx")
    assert main(["export", str(trained_run), "--out", str(tmp_path / "bad2.onnx")]) == 1
    assert "parity check FAILED" in capsys.readouterr().err


def test_export_command_prints_the_parity_figure(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(tmp_path / "c.onnx")]) == 0
    assert "max |logit difference|" in capsys.readouterr().out


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
