"""`fit --budget`: probes on every backbone at hand, then two-stage on the best, never more than one epoch past the
budget, with the same report and a recommended run."""

from __future__ import annotations

import time

import pytest

from transferlab.cli import main
from transferlab.runs import read_compare_summary, resolve_run
from transferlab.training.budget import parse_duration


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("2.5m", 150)])
def test_durations_read_as_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0", "-5m", ""])
def test_a_bad_duration_is_a_one_line_error(text, capsys):
    assert main(["fit", "photos", f"--budget={text}"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_no_epoch_starts_that_would_end_past_the_deadline(tmp_path):
    import torch

    from transferlab.runs import EpochRecord, ModelMeta
    from transferlab.training.checkpoint import CheckpointSaver
    from transferlab.utils.distributed import Dist

    model = torch.nn.Linear(2, 2)
    saver = CheckpointSaver(
        tmp_path,
        model,
        ModelMeta(backbone="x", classes=["a", "b"], strategy="finetune"),
        Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu")),
        torch.Generator(),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saver.begin_stage("finetune", optimizer=optimizer, scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1))
    saver.deadline = time.monotonic() + 30
    record = lambda epoch, seconds: EpochRecord(  # noqa: E731
        epoch=epoch,
        lr=0.1,
        train_loss=1,
        train_acc=0.5,
        val_loss=1,
        val_acc=0.5,
        seconds=seconds,
        data_seconds=0,
        compute_seconds=seconds,
        val_seconds=0,
    )  # noqa: E731
    assert saver(record(1, 5.0)) is None  # another 5-second epoch ends before the deadline
    assert "budget" in saver(record(2, 40.0))  # another 40-second one would not


def test_fit_probes_every_backbone_at_hand_then_keeps_the_best(tiny_dataset, tmp_path, capsys):
    code = main(
        [
            "fit",
            str(tiny_dataset),
            "--budget",
            "10m",
            "--out",
            str(tmp_path),
            "--name",
            "f",
            "-q",
            "--workers",
            "0",
            "--batch-size",
            "8",
            "--epochs",
            "1",
        ]
    )
    assert code == 0
    folder = tmp_path / "f"
    runs = sorted(run.name for run in folder.iterdir() if (run / "summary.json").exists())
    assert "efficientnet_lite0-extract" in runs and any(name.endswith("-two-stage") for name in runs)
    ensemble = "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2-extract"
    assert ensemble in runs  # the probes' backbones together: one more probe, their features side by side
    assert not any(name.startswith("efficientnet_lite0+") and name.endswith("two-stage") for name in runs)
    summary = read_compare_summary(folder)
    assert summary.recommendation["recommended_run"] in runs and resolve_run(folder).is_dir()
    out = capsys.readouterr().out
    assert "Use " in out and "s budget" in out and (folder / "report.md").exists()
