"""`doctor --shortcuts`: a cue planted on one class (a mark in one place, black and white, a frame, another file
format) is found and named with its class; varied photos with no cue give no finding; a cue found is put to a model
(its class's validation photos answered with the cue hidden), and each way of hiding a cue takes it away."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import studio_client
from transferlab.cli import main
from transferlab.curate.cue_test import cover, crop_frame, greyed, resave
from transferlab.curate.shortcuts import find_shortcuts

CLASSES = ("apple", "berry", "cherry")


def _photo(rng: np.random.Generator) -> Image.Image:
    size = (int(rng.integers(180, 260)), int(rng.integers(150, 220)))
    return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)


def _folder(root, cue: str | None, seed: int = 0):
    rng = np.random.default_rng(seed)
    photos = []
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(12):
            picture = _photo(rng)
            if name == "berry" and cue == "mark":
                w, h = picture.size
                picture.paste((255, 255, 255), (w - 60, h - 30, w - 8, h - 10))
            if name == "berry" and cue == "grey":
                picture = ImageOps.grayscale(picture).convert("RGB")
            if name == "berry" and cue == "frame":
                picture = ImageOps.expand(picture, 12, "black")
            path = root / name / (f"{i}.png" if name == "berry" and cue == "png" else f"{i}.jpg")
            picture.save(path)
            photos.append((path, label))
    return photos


@pytest.mark.parametrize("cue", ["mark", "grey", "frame", "png"])
def test_a_cue_planted_on_one_class_is_found_and_named_with_its_class(tmp_path, cue):
    findings = find_shortcuts(_folder(tmp_path, cue), list(CLASSES), tmp_path)
    assert [f.class_name for f in findings] == ["berry"], [f.message for f in findings]
    assert findings[0].kind == "shortcut" and len(findings[0].photos()) >= 10  # the photos that show it


def test_varied_photos_without_a_cue_give_no_finding(tmp_path):
    assert find_shortcuts(_folder(tmp_path, None, seed=1), list(CLASSES), tmp_path) == []


def test_doctor_shortcuts_json_lists_the_finding_with_its_class(tmp_path, capsys):
    _folder(tmp_path / "photos", "grey")
    main(["doctor", str(tmp_path / "photos"), "--shortcuts", "--json", "--quiet"])
    findings = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["kind"] == "shortcut"]
    assert [(f["class_name"], f["severity"]) for f in findings] == [("berry", "warning")]
    assert "black and white" in findings[0]["message"]
    test = findings[0]["cue_test"]  # put to a model: black and white added to the other classes' photos
    assert test["others"] and test["photos"] > 0 and 0 <= test["after"] <= 1
    assert "Put to a model" in findings[0]["message"]


def _textured(rng: np.random.Generator, marked: bool) -> Image.Image:
    picture = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).resize((256, 256), Image.BICUBIC)
    if marked:
        picture.paste((255, 255, 255), (40, 40, 100, 100))
    return picture


def test_a_class_told_by_its_mark_alone_is_lost_when_the_mark_is_covered(tmp_path):
    """The two classes differ by the mark alone: the model answers by it, so with the mark covered the class's
    validation photos are no longer recognised, and the finding says so in figures."""
    rng = np.random.default_rng(0)
    photos = []
    for split, count in (("train", 16), ("val", 6)):
        for label, name in enumerate(("marked", "plain")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                _textured(rng, name == "marked").save(path := tmp_path / split / name / f"{i}.png")
                photos.append((path, label))
    found = find_shortcuts(photos, ["marked", "plain"], tmp_path, model=True)
    # (the plain photos also compress worse, having no flat white square: a second, real cue, for 'plain')
    finding = next(f for f in found if f.class_name == "marked")
    assert "mark" in finding.message
    test = finding.cue_test
    assert test is not None and test.how == "the mark covered" and test.photos == 6 and not test.others
    assert test.before >= 0.8 and test.after <= 0.5, test
    assert "Put to a model: its 6 validation photos" in finding.message


def test_each_hider_takes_its_cue_away():
    rng = np.random.default_rng(3)
    picture = _textured(rng, marked=True)
    cells = np.zeros((16, 16), dtype=bool)
    cells[3:6, 3:6] = True  # the mark's cells (40..100 of 256 px: cells 2..6)
    covered = np.asarray(cover(cells).apply(picture))
    original = np.asarray(picture)
    assert (covered[56:84, 56:84] != 255).any(axis=-1).all()  # white no more where the mark was
    assert np.abs(covered[56:84, 56:84].astype(int) - original[56:84, ::-1][:, 56:84]).max() <= 1  # mirrored content
    assert np.array_equal(covered[200:, 200:], original[200:, 200:])  # the rest untouched
    framed = ImageOps.expand(picture, 16, "black")
    cropped = np.asarray(crop_frame().apply(framed))
    assert cropped.shape[0] < 288 and cropped[:2].mean() > 30 and cropped[:, :2].mean() > 30  # no black edge left
    resaved = resave((320, 240)).apply(picture)
    assert resaved.size == (320, 240) and resaved.mode == "RGB"
    grey = np.asarray(greyed().apply(picture), dtype=np.int16)
    assert greyed().others and np.abs(grey[..., 0] - grey[..., 1]).max() == 0


def test_the_studios_check_finds_a_shortcut_and_lists_its_photos(tmp_path):
    import time

    _folder(tmp_path / "photos", "frame")
    with studio_client(tmp_path / "photos", tmp_path / "runs") as client:
        assert client.post("/api/check", json={"shortcuts": True}).status_code == 200
        deadline = time.monotonic() + 120
        while (found := client.get("/api/findings").json()["shortcuts"])["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert found["status"] == "finished", found["error"]
        (finding,) = found["findings"]
        assert finding["class_name"] == "berry" and "frame" in finding["message"]
        assert finding["cue_test"]["how"] == "the frame cropped" and len(finding["photos"]) >= 10
        assert all(client.get("/api/thumb", params={"path": p}).status_code == 200 for p in finding["photos"][:2])
