"""Ctrl-C at any stage keeps what finished and leaves nothing half-written: compare while decoding or evaluating,
doctor while inspecting, export while writing (each test failed on the code before it)."""

from __future__ import annotations

import pytest

from conftest import ctrl_c_on_call
from transferlab.cli import main


def test_ctrl_c_while_compare_decodes_leaves_no_folder_and_one_line(tiny_dataset, tmp_path, monkeypatch, capsys):
    import transferlab.training.comparison as comparison

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(comparison, "prepare_data", interrupted)
    out = tmp_path / "runs"
    assert main(["compare", str(tiny_dataset), "--backbone", "efficientnet_lite0", "--out", str(out), "-q"]) == 130
    assert capsys.readouterr().err == "interrupted\n" and list(out.iterdir()) == []


def test_ctrl_c_during_compares_evaluation_keeps_and_reports_what_finished(tiny_dataset, tmp_path, monkeypatch, capsys):
    import transferlab.analysis.evaluate as evaluate

    monkeypatch.setattr(evaluate, "evaluate_decoded", ctrl_c_on_call(evaluate.evaluate_decoded, 2))
    code = main(
        [
            "compare",
            str(tiny_dataset),
            "--strategies",
            "extract,finetune",
            "--backbone",
            "efficientnet_lite0",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
            "--name",
            "c",
            "-q",
            "--workers",
            "0",
        ]
    )
    assert code == 130
    report = (tmp_path / "c" / "report.md").read_text()
    assert "| extract |" in report and "| finetune |" in report  # both trained; finetune's evaluation was cut
    assert "Use " in report and "+nan" not in report and "CI nan" not in report
    assert (tmp_path / "c" / "extract" / "evaluation").is_dir()


def test_resuming_a_compare_run_cut_short_writes_the_answer_again(tiny_dataset, tmp_path, monkeypatch, capsys):
    import transferlab.runs as runs_module

    real = runs_module.append_metrics
    monkeypatch.setattr(runs_module, "append_metrics", ctrl_c_on_call(real, 2))  # during the second epoch
    args = ["--backbone", "efficientnet_lite0", "--epochs", "3", "--out", str(tmp_path), "--name", "c", "-q"]
    assert main(["compare", str(tiny_dataset), "--strategies", "finetune,extract", *args]) == 130
    cut = (tmp_path / "c" / "report.md").read_text()
    assert "Cut short: finetune (efficientnet_lite0, batch 32) after 1 of 3 epochs" in cut
    assert (
        "not run, the comparison was stopped first (the answer is among the cells that ran): extract "
        "(efficientnet_lite0, batch 32, seed 0)"
        in cut
        and "not run, " in capsys.readouterr().out
    )
    monkeypatch.setattr(runs_module, "append_metrics", real)
    assert main(["train", "--resume", str(tmp_path / "c" / "finetune"), "-q"]) == 0
    report = (tmp_path / "c" / "report.md").read_text()
    assert "Cut short" not in report and "Use finetune" in report
    assert (tmp_path / "c" / "finetune" / "evaluation" / "predictions.csv").exists()


def test_compare_on_a_bad_folder_leaves_no_folder(tmp_path, capsys):
    (tmp_path / "photos" / "only").mkdir(parents=True)
    assert main(["compare", str(tmp_path / "photos"), "--out", str(tmp_path / "runs"), "-q"]) == 2
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_during_doctor_keeps_what_was_inspected(tiny_dataset, monkeypatch):
    import transferlab.curate.doctor as doctor
    import transferlab.data.inspection as inspection

    real = inspection._inspect_job
    monkeypatch.setattr(inspection, "_inspect_job", ctrl_c_on_call(real, 3))
    with pytest.raises(KeyboardInterrupt):
        doctor.diagnose(tiny_dataset, workers=0, quiet=True)
    monkeypatch.setattr(inspection, "_inspect_job", real)
    assert doctor.diagnose(tiny_dataset, workers=0, quiet=True).cached == 2


def test_ctrl_c_during_export_leaves_no_half_written_model(trained_run, tmp_path, monkeypatch, capsys):
    import transferlab.inference.export as export

    def interrupted(model, example, out, metadata):
        out.write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_export_onnx", interrupted)
    assert main(["export", str(trained_run), "--out", str(tmp_path / "m.onnx")]) == 130
    assert list(tmp_path.iterdir()) == []
