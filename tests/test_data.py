"""Folder discovery, the seeded stratified split, and one-line errors for folders that cannot work."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from conftest import make_folder
from transferlab.curate.doctor import diagnose
from transferlab.data.layout import DatasetError, load_dataset


def test_train_val_layout_is_discovered(tiny_dataset):
    dataset = load_dataset(tiny_dataset)
    assert dataset.classes == ["blue", "green", "red"]
    assert len(dataset.train) == 24 and len(dataset.val) == 12
    assert dataset.counts()["val"] == {"blue": 4, "green": 4, "red": 4}
    assert all(dataset.classes[s.label] == s.path.parent.name for s in dataset.train + dataset.val)


def test_single_folder_is_split_stratified_and_seeded(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 20, "b": 10}, split=False)
    first = load_dataset(root, val_fraction=0.2, seed=1)
    again = load_dataset(root, val_fraction=0.2, seed=1)
    other = load_dataset(root, val_fraction=0.2, seed=2)
    assert Counter(s.label for s in first.val) == {0: 4, 1: 2}
    assert [s.path for s in first.val] == [s.path for s in again.val]
    assert [s.path for s in first.val] != [s.path for s in other.val]
    assert not {s.path for s in first.train} & {s.path for s in first.val}


def test_validation_folder_may_be_named_valid(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "val").rename(root / "valid")
    assert len(load_dataset(root).val) == 4


def test_max_per_class_keeps_a_subset_of_each_class(tiny_dataset):
    dataset = load_dataset(tiny_dataset, max_per_class=3)
    assert Counter(s.label for s in dataset.train) == {0: 3, 1: 3, 2: 3}


def test_non_image_files_are_ignored_and_listed(tiny_dataset):
    (tiny_dataset / "train" / "red" / "notes.txt").write_text("hello")
    dataset = load_dataset(tiny_dataset)
    assert [p.name for p in dataset.ignored_files] == ["notes.txt"]


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda root: __import__("shutil").rmtree(root / "val" / "red"), "red .* have no folder in"),
        (lambda root: [p.unlink() for p in (root / "train" / "red").iterdir()], "no images: red"),
        (
            lambda root: [
                __import__("shutil").rmtree(root / s / c) for s in ("train", "val") for c in ("red", "green")
            ],
            "only one class",
        ),
        (lambda root: __import__("shutil").rmtree(root / "val"), "found train/ but not its partner"),
        (lambda root: (root / "val").rename(root / "test"), "found train/ and test/ but no val/"),
    ],
)
def test_broken_folders_raise_one_line_errors_that_the_doctor_reports_first(tiny_dataset, break_it, message):
    break_it(tiny_dataset)
    with pytest.raises(DatasetError, match=message) as error:
        load_dataset(tiny_dataset)
    assert "\n" not in str(error.value)
    report = diagnose(tiny_dataset, workers=0, quiet=True, use_cache=False)
    assert report.findings[0].kind == "layout" and report.findings[0].severity == "error"
    assert re.search(message, report.findings[0].message)


def test_zip_and_nas_leftovers_are_neither_classes_nor_photos(tiny_dataset):
    (tiny_dataset / "train" / "__MACOSX" / "red").mkdir(parents=True)  # what unzipping a Mac's zip leaves
    (tiny_dataset / "train" / "__MACOSX" / "red" / "._red_0.jpg").write_bytes(b"\x00\x05\x16\x07")
    (tiny_dataset / "val" / "red" / "@eaDir").mkdir()  # a NAS's thumbnails inside a class folder
    (tiny_dataset / "val" / "red" / "red_0.jpg").rename(tiny_dataset / "val" / "red" / "@eaDir" / "thumb.jpg")
    dataset = load_dataset(tiny_dataset)
    assert dataset.classes == ["blue", "green", "red"]
    assert not [s for s in dataset.train + dataset.val if "@eaDir" in str(s.path) or "__MACOSX" in str(s.path)]
    report = diagnose(tiny_dataset, workers=0, quiet=True, use_cache=False)
    assert not [f for f in report.findings if f.severity == "error"]
    assert report.files_scanned == len(dataset.train) + len(dataset.val)


def test_folder_without_images_raises(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images in any class folder"):
        load_dataset(tmp_path)


def test_missing_folder_and_loose_images_raise(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(tmp_path / "missing")
    make_folder(tmp_path / "x", {"a": 2}, split=False)
    (tmp_path / "x" / "a" / "a_0.jpg").rename(tmp_path / "x" / "loose.jpg")
    (tmp_path / "x" / "a" / "a_1.jpg").unlink()
    (tmp_path / "x" / "a").rmdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_dataset(tmp_path / "x")


def test_class_too_small_to_split_raises(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 10, "b": 1}, split=False)
    with pytest.raises(DatasetError, match="class 'b' has 1 image"):
        load_dataset(root)
    assert "class 'b' has 1 image" in diagnose(root, workers=0, quiet=True, use_cache=False).findings[0].message


def test_near_duplicate_pairs_are_the_same_pictures_whatever_their_order():
    """The search is answered from the last one when the same prints come in another order (a photo moved to
    another class moves in the list): the pairs must still name the right indices."""
    from transferlab.data.fingerprints import fingerprint, near_duplicate_pairs

    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).resize((128, 96)) for _ in range(5)]
    prints = [fingerprint(p) for p in [*pictures, pictures[1], pictures[3]]]  # 5 = 1, 6 = 3
    assert near_duplicate_pairs(prints) == [(1, 5), (3, 6)]
    order = [6, 0, 5, 2, 3, 4, 1]
    shuffled = [prints[i] for i in order]
    assert near_duplicate_pairs(shuffled) == [(0, 4), (2, 6)]  # 6 = 3 at 0 and 4; 5 = 1 at 2 and 6
    assert near_duplicate_pairs([None, *shuffled]) == [(1, 5), (3, 7)]


def test_a_class_folder_is_listed_as_rglob_lists_it(tmp_path):
    """`files_below` (os.scandir) keeps `Path.rglob`'s answer: sorted, hidden and left-behind folders skipped, links
    to files kept, links to folders not followed."""
    import os

    from transferlab.data.images import is_hidden_below
    from transferlab.data.layout import files_below

    root = tmp_path / "cat"
    for name in ("b.jpg", "a.JPG", "sub/c.png", "sub/deeper/d.jpg", ".hidden.jpg", ".cache/e.jpg", "__MACOSX/f.jpg",
                 "sub/@eaDir/g.jpg", "Z.jpg", "sub-2/h.jpg"):  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    os.symlink(root / "b.jpg", root / "link.jpg")
    os.symlink(tmp_path, root / "loop")  # a link to a folder above: not walked into
    os.symlink(root / "gone.jpg", root / "broken.jpg")
    expected = [p for p in sorted(root.rglob("*")) if p.is_file() and not is_hidden_below(p, root)]
    assert files_below(root) == expected and len(expected) == 7
