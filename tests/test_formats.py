"""Phone and browser photo formats (HEIC/HEIF, AVIF) are photos everywhere: decoded right, found in folders,
trained on, predicted, served, counted by the doctor. The files are made here (pillow-heif's encoder, a test
dependency; transferlab itself reads them with the decode-only pi-heif)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pillow_heif
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import COLOURS, LOCAL, synthetic_picture
from transferlab.cli import main
from transferlab.data.images import load_rgb
from transferlab.data.layout import load_dataset


def save_heic(picture: Image.Image, path: Path) -> Path:
    pillow_heif.from_pillow(picture).save(path, quality=90)
    return path


def save_avif(picture: Image.Image, path: Path) -> Path:
    picture.save(path, quality=90)
    return path


@pytest.mark.parametrize("save, ext", [(save_heic, ".heic"), (save_heic, ".heif"), (save_avif, ".avif")])
def test_phone_and_browser_photos_decode_to_their_colours(tmp_path, save, ext):
    path = save(Image.new("RGB", (64, 48), (200, 40, 40)), tmp_path / f"photo{ext}")
    picture = load_rgb(path)
    assert picture.mode == "RGB" and picture.size == (64, 48)
    assert all(abs(a - b) <= 8 for a, b in zip(picture.getpixel((32, 24)), (200, 40, 40)))


def test_transparent_heic_is_composited_on_the_background_not_black(tmp_path):
    path = save_heic(Image.new("RGBA", (32, 32), (0, 0, 255, 0)), tmp_path / "cutout.heic")
    assert min(load_rgb(path).getpixel((16, 16))) >= 240


def _phone_folder(root: Path) -> Path:
    """red/green/blue with HEIC, HEIF and AVIF photos only, in train/ and val/."""
    seed = 0
    for split, count in (("train", 4), ("val", 2)):
        for name in ("red", "green", "blue"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                seed += 1
                picture = synthetic_picture(COLOURS[name], seed)
                if i % 2:
                    save_avif(picture, folder / f"{i}.avif")
                else:
                    save_heic(picture, folder / f"{i}.{'heic' if seed % 3 else 'heif'}")
    return root


def test_a_folder_of_phone_photos_is_found_and_trains(tmp_path, capsys):
    root = _phone_folder(tmp_path / "phone")
    dataset = load_dataset(root)
    assert len(dataset.train) == 12 and len(dataset.val) == 6 and not dataset.ignored_files
    code = main(
        [
            "train",
            str(root),
            "--strategy",
            "extract",
            "--backbone",
            "efficientnet_lite0",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "runs"),
            "--name",
            "phone",
            "--workers",
            "0",
            "-q",
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "runs" / "phone" / "summary.json").read_text())
    assert summary["skipped_files"] == 0  # every HEIC and AVIF decoded
    assert "best val accuracy" in capsys.readouterr().out


def test_predict_and_the_web_app_read_heic_and_avif(trained_run, tmp_path, capsys):
    heic = save_heic(synthetic_picture(COLOURS["red"], 7), tmp_path / "phone.heic")
    avif = save_avif(synthetic_picture(COLOURS["blue"], 8), tmp_path / "browser.avif")
    assert main(["predict", str(trained_run), str(heic), str(avif), "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in rows] == [str(heic), str(avif)] and all("label" in r for r in rows)
    from transferlab.inference.serve import create_app

    client = TestClient(create_app(trained_run), base_url=LOCAL)
    for path, kind, row in ((heic, "image/heic", rows[0]), (avif, "image/avif", rows[1])):
        response = client.post("/predict", files={"file": (path.name, io.BytesIO(path.read_bytes()), kind)})
        assert response.status_code == 200
        served = [(t["label"], t["probability"]) for t in response.json()["topk"]]
        # the upload is decoded as predict decodes the file: the same classes, the same probabilities
        assert [label for label, _ in served] == [label for label, _ in row["topk"]]
        assert all(abs(p - q) < 1e-5 for (_, p), (_, q) in zip(served, row["topk"]))
