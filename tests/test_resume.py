"""Resuming a run: a finished run stays finished, an early stop stays stopped, `--epochs N` extends, and a run
whose classes or settings changed is a clear error (each test failed on the code before it)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from transferlab import DataConfig, Recipe, TrainConfig, train
from transferlab.cli import main


def _resumable(tiny_dataset, tmp_path, epochs=3):
    return [
        "train",
        str(tiny_dataset),
        "--strategy",
        "finetune",
        "--backbone",
        "efficientnet_lite0",
        "--recipe",
        "reference",
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--out",
        str(tmp_path),
        "--name",
        "r",
        "-q",
        "--workers",
        "0",
        "--deterministic",
    ]


def _epochs(run) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resuming_a_finished_run_does_nothing_and_says_so(tiny_dataset, tmp_path, monkeypatch, capsys):
    assert main(_resumable(tiny_dataset, tmp_path, epochs=1)) == 0
    import transferlab.training.trainer as training

    monkeypatch.setattr(training, "prepare_data", lambda *a, **k: pytest.fail("decoded photos for nothing"))
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "r"), "-q"]) == 0
    assert "already finished" in capsys.readouterr().out and _epochs(tmp_path / "r") == [1]


def test_resuming_an_early_stopped_run_does_not_train_on(tiny_dataset, tmp_path):
    from transferlab import resume

    config = TrainConfig(
        data=DataConfig(root=str(tiny_dataset)),
        strategy="extract",
        backbone="efficientnet_lite0",
        recipe=Recipe(epochs=8, batch_size=8, patience=1),
        out=str(tmp_path),
        quiet=True,
        workers=0,
    )
    run = train(config)
    stopped = _epochs(run.run_dir)
    assert len(stopped) < 8  # patience 1 on easy pictures: it stopped early
    assert resume(run.run_dir).already_finished and _epochs(run.run_dir) == stopped


def test_a_run_killed_just_after_stopping_early_stays_stopped(tiny_dataset, tmp_path, monkeypatch):
    import transferlab.training.checkpoint as checkpoint
    from transferlab import resume

    config = TrainConfig(
        data=DataConfig(root=str(tiny_dataset)),
        strategy="extract",
        backbone="efficientnet_lite0",
        recipe=Recipe(epochs=8, batch_size=8, patience=1),
        quiet=True,
        workers=0,
    )
    whole = _epochs(train(dataclasses.replace(config, out=str(tmp_path / "whole"))).run_dir)
    real_save = checkpoint.save_training_state

    def save_then_die(run_dir, epoch, *args, **kwargs):
        real_save(run_dir, epoch, *args, **kwargs)
        if epoch == whole[-1]:  # the epoch that stopped early: killed before the summary says completed
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_training_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(config, out=str(tmp_path / "cut")))
    monkeypatch.setattr(checkpoint, "save_training_state", real_save)
    (cut,) = (tmp_path / "cut").iterdir()
    assert _epochs(resume(cut).run_dir) == whole


def test_epochs_extends_a_finished_run(tiny_dataset, tmp_path, capsys):
    assert main(_resumable(tiny_dataset, tmp_path, epochs=2)) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "3", "-q"]) == 0
    assert _epochs(tmp_path / "r") == [1, 2, 3]
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "2", "-q"]) == 2


def test_flags_given_with_resume_are_refused_by_name(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.1", "--seed", "3", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--lr" in err and "--seed" in err and err.count("\n") == 1


def test_renamed_class_folders_are_a_clear_error_when_resuming(tiny_dataset, tmp_path, capsys):
    assert main(_resumable(tiny_dataset, tmp_path, epochs=1)) == 0
    state = json.loads((tmp_path / "r" / "summary.json").read_text())
    (tmp_path / "r" / "summary.json").write_text(json.dumps({**state, "status": "interrupted"}))
    for split in ("train", "val"):
        (tiny_dataset / split / "red").rename(tiny_dataset / split / "crimson")
    assert main(["train", "--resume", str(tmp_path / "r"), "-q"]) == 2
    assert "class folders" in capsys.readouterr().err


def test_an_unknown_key_in_a_runs_config_is_a_clear_error(tiny_dataset, tmp_path, capsys):
    assert main(_resumable(tiny_dataset, tmp_path, epochs=1)) == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    (tmp_path / "r" / "config.json").write_text(json.dumps({**config, "colour": "blue"}))
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "2", "-q"]) == 1  # the file, not an option
    err = capsys.readouterr().err
    assert "colour" in err and "config.json" in err and err.count("\n") == 1
