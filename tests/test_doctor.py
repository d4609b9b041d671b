"""The doctor names every kind of broken or odd file for what it is, finds duplicates (exact, re-encoded,
across splits and classes) without calling different photos duplicates, and quarantines reversibly."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from conftest import photo_like
from transferlab.curate.doctor import diagnose
from transferlab.curate.quarantine import quarantine, restore


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


@pytest.fixture
def zoo(tmp_path):
    root = tmp_path / "zoo"
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
    seed = 100
    for split, count in (("train", 6), ("val", 3)):
        for label in ("cat", "dog"):
            for i in range(count):
                seed += 1
                photo_like(seed).save(root / split / label / f"photo{i}.jpg", quality=90)
    cat, dog = root / "train" / "cat", root / "train" / "dog"
    (cat / "zero.jpg").write_bytes(b"")
    good = _jpeg_bytes(photo_like(1))
    (cat / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (cat / "text.jpg").write_text("this is a text file, not a photo\n")
    pillow_heif.from_pillow(photo_like(13)).save(cat / "phone.heic", quality=90)  # what an iPhone saves
    photo_like(14).save(cat / "browser.avif", quality=80)  # what a browser's "save image" gives more and more
    rgba = photo_like(2).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(cat / "alpha.png")
    palette = photo_like(3).convert("P")
    palette.save(cat / "palette.png", transparency=0)
    photo_like(4).convert("CMYK").save(cat / "cmyk.jpg")
    Image.fromarray(np.asarray(photo_like(5).convert("L"), dtype=np.uint16) * 257).save(cat / "sixteen.png")
    photo_like(6).convert("L").save(cat / "grey.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo_like(7).save(cat / "rotated.jpg", exif=exif.tobytes())
    frames = [photo_like(8 + i).convert("P") for i in range(3)]
    frames[0].save(cat / "animated.gif", save_all=True, append_images=frames[1:])
    photo_like(11, size=(40, 30)).save(cat / "tiny.jpg")
    original = photo_like(12)
    original.save(dog / "original.jpg", quality=95)
    original.resize((200, 150)).save(dog / "resized_copy.jpg", quality=60)  # re-encoded and resized duplicate
    (root / "val" / "dog" / "leaked.jpg").write_bytes((dog / "photo0.jpg").read_bytes())  # exact, across splits
    (root / "train" / "dog" / "also_a_cat.jpg").write_bytes((cat / "photo1.jpg").read_bytes())  # two labels
    placeholder = Image.new("RGB", (300, 300), (240, 240, 240))
    placeholder.paste((60, 60, 60), (60, 140, 240, 160))
    placeholder.save(dog / "image_not_found.png")
    Image.new("1", (20000, 20000)).save(cat / "bomb.png")  # 400 megapixels in a few kilobytes
    (cat / "notes.txt").write_text("ignored")
    return root


def _finding(report, kind):
    found = [f for f in report.findings if f.kind == kind]
    assert found, f"no '{kind}' finding in {[f.kind for f in report.findings]}"
    return found[0]


def test_every_broken_or_odd_file_is_reported_as_what_it_is(zoo):
    report = diagnose(zoo, workers=0, quiet=True, use_cache=False)
    unreadable = "\n".join(_finding(report, "unreadable").lines())
    assert "train/cat/zero.jpg: empty file" in unreadable
    assert "train/cat/truncated.jpg: cannot decode" in unreadable
    assert "train/cat/text.jpg: not an image (a text file)" in unreadable
    assert "train/cat/bomb.png: decompression bomb" in unreadable
    assert "phone.heic" not in unreadable and "browser.avif" not in unreadable
    assert report.formats["HEIF"] == 1 and report.formats["AVIF"] == 1  # counted as photos, not ignored
    assert not any("phone.heic" in f or "browser.avif" in f for f in _finding(report, "ignored").photos())
    modes = "\n".join(_finding(report, "modes").lines())
    for name, mode in (("alpha.png", "RGBA"), ("palette.png", "P"), ("cmyk.jpg", "CMYK"), ("sixteen.png", "I")):
        assert f"train/cat/{name}: {mode}" in modes
    assert report.modes["L"] >= 1  # greyscale is counted, not flagged
    assert _finding(report, "exif-rotated").lines() == ["train/cat/rotated.jpg: orientation 6"]
    assert _finding(report, "animated").lines() == ["train/cat/animated.gif: 3 frames"]
    assert _finding(report, "tiny").lines() == ["train/cat/tiny.jpg: 40x30"]
    assert _finding(report, "not-a-photo").photos() == ["train/dog/image_not_found.png"]
    assert "train/cat/notes.txt" in _finding(report, "ignored").photos()


def test_duplicates_are_found_and_classified_without_false_alarms(zoo):
    report = diagnose(zoo, workers=0, quiet=True, use_cache=False)
    assert _finding(report, "leakage").lines() == ["train/dog/photo0.jpg = val/dog/leaked.jpg"]
    assert _finding(report, "conflicting-labels").lines() == ["train/cat/photo1.jpg = train/dog/also_a_cat.jpg"]
    assert _finding(report, "duplicate").lines() == ["train/dog/original.jpg = train/dog/resized_copy.jpg"]
    groups = [f for f in report.findings if f.kind in ("leakage", "conflicting-labels", "duplicate")]
    assert sum(len(f.items) for f in groups) == 3  # the 30 distinct photos are never paired
    # each group names its photos as paths, never as text to parse back
    assert _finding(report, "leakage").photos() == ["train/dog/photo0.jpg", "val/dog/leaked.jpg"]


def test_unsupported_format_is_named(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        photo_like(ord(label)).save(tmp_path / label / "ok.jpg")
    (tmp_path / "a" / "phone.jpg").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    report = diagnose(tmp_path, workers=0, quiet=True, use_cache=False)
    (unreadable,) = _finding(report, "unreadable").items
    assert unreadable.paths == ("a/phone.jpg",) and "HEIC/AVIF" in unreadable.detail  # named for what it is


def test_imbalance_is_reported(tmp_path):
    for label, count in (("many", 10), ("few", 2)):
        (tmp_path / label).mkdir()
        for i in range(count):
            photo_like(i + 50 * count).save(tmp_path / label / f"{i}.jpg")
    report = diagnose(tmp_path, workers=0, quiet=True, use_cache=False)
    assert "'many' has 5.0x the images of 'few'" in _finding(report, "imbalance").message


def test_one_class_filed_under_two_spellings_is_reported(tmp_path):
    for i, label in enumerate(("Cat", "cat", "golden_retriever", "Golden Retriever", "dog")):
        (tmp_path / label).mkdir()
        photo_like(i * 7 + 1).save(tmp_path / label / "a.jpg")
    report = diagnose(tmp_path, workers=0, quiet=True, use_cache=False)
    twins = sorted(f.message for f in report.findings if f.kind == "twin-classes")
    assert len(twins) == 2 and "'Cat' and 'cat'" in twins[0] and "'Golden Retriever' and 'golden_retriever'" in twins[1]


def test_second_run_uses_the_cache_and_notices_changed_files(zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    first = diagnose(zoo, workers=0, quiet=True)
    second = diagnose(zoo, workers=0, quiet=True)
    assert first.cached == 0 and second.cached == second.files_scanned
    assert json.loads(second.to_json())["findings"] == json.loads(first.to_json())["findings"]
    photo_like(999).save(zoo / "train" / "cat" / "photo0.jpg")
    third = diagnose(zoo, workers=0, quiet=True)
    assert third.cached == third.files_scanned - 1


def test_quarantine_moves_problem_files_and_restore_puts_them_back(zoo, tmp_path):
    report = diagnose(zoo, workers=0, quiet=True, use_cache=False)
    jail = tmp_path / "quarantine"
    moved = quarantine(report, jail)
    moved_names = {m["from"].split("zoo/")[1] for m in moved}
    assert {
        "train/cat/zero.jpg",
        "val/dog/leaked.jpg",
        "train/dog/resized_copy.jpg",
        "train/cat/photo1.jpg",
        "train/dog/also_a_cat.jpg",
    } <= moved_names
    assert "train/dog/photo0.jpg" not in moved_names  # the train copy of a leaked photo stays
    assert "train/dog/image_not_found.png" not in moved_names  # few colours alone move nothing (see below)
    assert (jail / "val" / "dog" / "leaked.jpg").exists() and not (zoo / "val" / "dog" / "leaked.jpg").exists()
    manifest = json.loads((jail / "manifest.json").read_text())
    assert any(e["reasons"] == ["leakage"] for e in manifest["moved"])
    after = diagnose(zoo, workers=0, quiet=True, use_cache=False)
    assert not [f for f in after.findings if f.severity == "error"]
    restored, left = restore(jail)
    assert len(restored) == len(moved) and not left
    assert (zoo / "val" / "dog" / "leaked.jpg").exists() and not (jail / "manifest.json").exists()


def test_training_warns_about_leakage_before_it_starts(tmp_path, caplog):
    from conftest import make_folder
    from transferlab import DataConfig, TrainConfig
    from transferlab.data.prepare import duplicate_problems, prepare_data

    root = make_folder(tmp_path / "d", {"red": 4, "blue": 4})
    (root / "val" / "red" / "copy.jpg").write_bytes((root / "train" / "red" / "red_0.jpg").read_bytes())
    with caplog.at_level(logging.WARNING, logger="transferlab"):
        prepared = prepare_data(TrainConfig(data=DataConfig(root=str(root)), backbone="efficientnet_lite0", quiet=True))
    assert "the same picture in train and val" in caplog.text and "copy.jpg" in caplog.text
    assert [kind for *_, kind in duplicate_problems(prepared)] == ["leakage"]  # the doctor's word for it


def test_a_possible_graphic_moves_only_when_the_label_check_finds_it_far_from_every_photo(zoo):
    report = diagnose(zoo, workers=0, quiet=True, use_cache=False)
    assert _finding(report, "not-a-photo").severity == "info" and not report.problem_files().get(
        "train/dog/image_not_found.png"
    )
    cleared = report.with_graphics_judged(set())  # the model finds it like the other photos: a note, nothing to move
    assert not [f for f in cleared.findings if f.kind == "not-a-photo"]
    assert _finding(cleared, "few-colours").photos() == ["train/dog/image_not_found.png"]
    confirmed = report.with_graphics_judged({"train/dog/image_not_found.png"})  # far from every photo: confirmed
    assert _finding(confirmed, "not-a-photo").severity == "warning"
    assert confirmed.problem_files()["train/dog/image_not_found.png"] == ["not-a-photo"]
    assert _finding(report, "not-a-photo").severity == "info"  # the report judged is left as it was
