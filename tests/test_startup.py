"""The command starts at once: which modules each command imports decides it, not a clock (benchmarks/startup.py
measures the times). `--help`, `backbones` and argument errors load no torch; predicting a photo loads no
scikit-learn, matplotlib or torchmetrics, and none of transferlab's training, analysis or dataset-tool code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

HEAVY = ("torch", "torchvision", "sklearn", "matplotlib", "torchmetrics", "scipy")

PROBE = """
import json, sys
from transferlab.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exit:
    code = exit.code
json.dump({"code": code, "modules": sorted(sys.modules)}, open(sys.argv[1], "w"))
"""


def imported_by(argv: list[str], tmp_path, full: bool = False) -> tuple[int, set[str]]:
    """Run the CLI with `argv` in a fresh interpreter: (exit code, top-level packages it imported, or with `full`
    every module's dotted name)."""
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", PROBE, str(out), *argv], check=True, capture_output=True)
    result = json.loads(out.read_text())
    return result["code"], {name if full else name.split(".")[0] for name in result["modules"]}


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["backbones"],
        ["train", "photos", "--epochs", "x"],
        ["compare", "photos", "--backbone", "nope"],
        ["predict"],
    ],
)
def test_help_backbones_and_argument_errors_import_no_torch(argv, tmp_path):
    code, modules = imported_by(argv, tmp_path)
    assert code in (0, 2)
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_predict_one_photo_imports_no_sklearn_matplotlib_or_torchmetrics(trained_run, tmp_path):
    photo = tmp_path / "one.png"
    Image.new("RGB", (80, 60), (200, 40, 40)).save(photo)
    code, modules = imported_by(["predict", str(trained_run), str(photo)], tmp_path)
    assert code == 0
    assert "torch" in modules
    assert not modules & {"sklearn", "matplotlib", "torchmetrics", "scipy"}, modules & {
        "sklearn",
        "matplotlib",
        "torchmetrics",
        "scipy",
    }


def test_predict_one_photo_imports_no_training_code(trained_run, tmp_path):
    photo = tmp_path / "one.png"
    Image.new("RGB", (80, 60), (40, 200, 40)).save(photo)
    code, modules = imported_by(["predict", str(trained_run), str(photo)], tmp_path, full=True)
    assert code == 0
    assert "transferlab.inference.predict" in modules
    training = sorted(
        m for m in modules if m.startswith(("transferlab.training", "transferlab.curate", "transferlab.analysis"))
    )
    assert not training, training


def test_extract_run_imports_neither_torchs_compiler_nor_torchvision(tiny_dataset, tmp_path):
    """torchvision imports torch._dynamo, and so does torch.optim's first use: ~2 s to import and ~2 s more to exit,
    in a command that needs neither (the probe solves with SciPy; the evaluation view is resized by torch)."""
    argv = ["train", str(tiny_dataset), "--strategy", "extract", "--backbone", "efficientnet_lite0"]
    code, modules = imported_by([*argv, "--out", str(tmp_path / "runs"), "--quiet"], tmp_path, full=True)
    assert code == 0
    assert "transferlab.training.probe" in modules
    assert not {"torch._dynamo", "torch._inductor", "torchvision"} & modules, modules & {"torch._dynamo", "torchvision"}
