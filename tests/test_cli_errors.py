"""Every expected failure is one line and an exit code (2: a bad option or folder, 1: the machine or the run
refuses), checked before any work; anything else shows its traceback (each test failed on the code before it)."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from conftest import make_folder
from transferlab.cli import main


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "argv",
    [["--epochs", "0"], ["--batch-size", "-4"], ["--lr", "0"], ["--max-per-class", "0"], ["--val-fraction", "1.5"]],
)
def test_bad_numbers_are_one_line_errors_before_any_run_folder(tiny_dataset, tmp_path, capsys, argv):
    code = main(["train", str(tiny_dataset), "--strategy", "extract", "--out", str(tmp_path / "runs"), "-q", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("python", "shell", "setting"),
    [
        ({"seeds": 0}, ["--seeds", "0"], "seeds must be at least 1, got 0"),
        ({"cv": 1}, ["--cv", "1"], "cv must be at least 2, got 1"),
        ({"strategies": ("extract", "probe")}, ["--strategies", "extract,probe"], "strategies must be one of"),
    ],
)
def test_a_bad_setting_is_named_as_the_caller_wrote_it(tiny_dataset, tmp_path, capsys, python, shell, setting):
    from transferlab import DataConfig, TrainConfig, compare
    from transferlab.errors import InvalidSetting

    config = TrainConfig(data=DataConfig(root=str(tiny_dataset)), out=str(tmp_path / "runs"), quiet=True)
    with pytest.raises(InvalidSetting) as error:  # from Python: the argument's own name
        compare(config, **python)
    assert str(error.value).startswith(setting) and "--" not in str(error.value)
    assert main(["compare", str(tiny_dataset), "--out", str(tmp_path / "runs"), "-q", *shell]) == 2
    assert capsys.readouterr().err.startswith(f"error: --{setting}")  # from the shell: the flag
    assert not (tmp_path / "runs").exists()


def test_a_reader_that_leaves_the_pipe_early_ends_predict_quietly(trained_run, tmp_path):
    import subprocess
    import sys

    photos = []
    for i in range(3):
        photos.append(tmp_path / f"p{i}.png")
        photos[-1].write_bytes(_png())
    process = subprocess.Popen(
        [sys.executable, "-m", "transferlab", "predict", str(trained_run), *map(str, photos)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # `| head -0`: the reader is gone before the first line
    assert process.wait(timeout=300) == 141
    assert b"Traceback" not in process.stderr.read()


def test_a_full_disk_is_one_line_not_a_traceback(monkeypatch, capsys):
    import errno

    from transferlab.cli import commands

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/r/model.safetensors")

    monkeypatch.setitem(commands.COMMANDS, "backbones", full)
    assert main(["backbones"]) == 1
    assert capsys.readouterr().err == "error: No space left on device: runs/r/model.safetensors\n"
    monkeypatch.setitem(commands.COMMANDS, "backbones", lambda args: open("/nonexistent/x"))
    with pytest.raises(FileNotFoundError):  # other OS errors are bugs here, and keep their traceback
        main(["backbones"])


@pytest.mark.parametrize("command", ["train", "compare", "fit"])
def test_an_output_folder_inside_the_photo_folder_is_refused(tmp_path, capsys, monkeypatch, command):
    photos = make_folder(tmp_path / "photos", {"red": 4, "green": 4}, split=False)
    monkeypatch.chdir(photos)  # `transferlab train .` from inside it: runs/ would be a class next time
    extra = ["--budget", "1m"] if command == "fit" else ["--backbone", "efficientnet_lite0"]
    assert main([command, ".", "-q", *extra]) == 2
    assert "is inside the photo folder" in capsys.readouterr().err and not (photos / "runs").exists()
    split = make_folder(tmp_path / "split", {"red": 4, "green": 4})  # beside train/ and val/ it is no class
    assert (
        main(
            [
                "train",
                str(split),
                "--out",
                str(split / "runs"),
                "--strategy",
                "extract",
                "--backbone",
                "efficientnet_lite0",
                "--epochs",
                "1",
                "-q",
                "--workers",
                "0",
            ]
        )
        == 0
    )


def test_topk_zero_is_a_one_line_error(trained_run, tmp_path, capsys):
    photo = tmp_path / "p.png"
    photo.write_bytes(_png())
    assert main(["predict", str(trained_run), str(photo), "--topk", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_an_expected_failure_exits_1_and_a_bug_shows_its_traceback(tmp_path, monkeypatch, capsys):
    photo = tmp_path / "p.png"
    photo.write_bytes(_png())
    assert main(["predict", str(tmp_path), str(photo)]) == 1  # not a run folder
    assert "no saved model" in capsys.readouterr().err

    import transferlab.training.trainer as training

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(training, "train", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", str(tmp_path), "-q"])


def test_missing_resnet_weights_fail_before_any_photo_is_decoded(tiny_dataset, tmp_path, monkeypatch, capsys):
    import transferlab.training.trainer as training

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(training, "prepare_data", lambda *a, **k: pytest.fail("decoded photos before the weights"))
    assert main(["train", str(tiny_dataset), "--backbone", "resnet18", "--out", str(tmp_path / "runs"), "-q"]) == 1
    assert "--weights" in capsys.readouterr().err and not (tmp_path / "runs").exists()
