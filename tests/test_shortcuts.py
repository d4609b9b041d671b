"""`doctor --shortcuts`: a cue planted on one class (a mark in one place, black and white, a frame, another file
format) is found and named with its class; varied photos with no cue give no finding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from transferlab.cli import main
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
