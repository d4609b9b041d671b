"""The command line gives one-line errors for bad input and exit codes a script can rely on."""

from __future__ import annotations

import pytest
from PIL import Image

from transferlab.cli import main


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such folder" in err and err.count("\n") == 1


def test_empty_class_is_a_one_line_error(tiny_dataset, capsys):
    for image in (tiny_dataset / "val" / "green").iterdir():
        image.unlink()
    assert main(["compare", str(tiny_dataset), "--backbone", "efficientnet_lite0", "-q"]) == 2
    assert "class folder(s) with no images: green" in capsys.readouterr().err


def test_unknown_strategy_is_rejected(tiny_dataset, capsys):
    assert main(["compare", str(tiny_dataset), "--strategies", "finetune,magic", "-q"]) == 2
    assert "magic" in capsys.readouterr().err


def test_backbones_lists_the_registry(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "efficientnet_lite0" in out


def test_train_then_predict_rgba_png_and_report_bad_file(tiny_dataset, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                str(tiny_dataset),
                "--strategy",
                "extract",
                "--backbone",
                "efficientnet_lite0",
                "--epochs",
                "1",
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
    assert "best val accuracy" in capsys.readouterr().out
    rgba = tmp_path / "transparent.png"
    Image.new("RGBA", (64, 64), (200, 40, 40, 0)).save(rgba)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    code = main(["predict", str(tmp_path / "runs" / "r"), str(rgba), str(broken)])
    out = capsys.readouterr().out
    assert "transparent.png: " in out and "broken.jpg: error:" in out
    assert code == 1  # a file failed, the others were still predicted


@pytest.mark.parametrize("argv", [["train", "--help"], ["compare", "--help"]])
def test_help_mentions_the_main_options(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    assert "--backbone" in out and "--epochs" in out and "--weights" in out
