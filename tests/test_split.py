"""`transferlab split` and the automatic split of one folder never leak a picture into validation: copies of one
picture stay on one side, a picture under two classes is left out and named, the split is seeded and stratified,
a non-empty DST is refused, an interrupted split leaves nothing half-made."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pillow_heif
import pytest

from conftest import ctrl_c_on_call, photo_like
from transferlab.cli import main
from transferlab.data.layout import load_dataset


@pytest.fixture
def scattered(tmp_path: Path) -> Path:
    """cat/dog, 10 distinct photos each, plus: a photo saved three times in cat (resized, re-encoded, same bytes),
    one photo under both classes, one broken file."""
    root = tmp_path / "scattered"
    for label, offset in (("cat", 0), ("dog", 100)):
        (root / label).mkdir(parents=True)
        for i in range(10):
            photo_like(offset + i).save(root / label / f"{label}{i}.jpg", quality=90)
    burst = photo_like(500)
    burst.save(root / "cat" / "burst_a.jpg", quality=95)
    burst.resize((160, 120)).save(root / "cat" / "burst_b.jpg", quality=60)
    (root / "cat" / "burst_c.jpg").write_bytes((root / "cat" / "burst_a.jpg").read_bytes())
    photo_like(600).save(root / "cat" / "both.jpg")
    (root / "dog" / "both_again.jpg").write_bytes((root / "cat" / "both.jpg").read_bytes())
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    pillow_heif.from_pillow(photo_like(700)).save(root / "dog" / "phone.heic", quality=90)  # a phone's photo
    return root


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.suffix in (".jpg", ".heic")}


def test_split_keeps_copies_together_and_leaves_out_two_labels(scattered, tmp_path, capsys):
    out = tmp_path / "split"
    assert main(["split", str(scattered), "--out", str(out), "--val-fraction", "0.25", "-q"]) == 0
    printed = capsys.readouterr().out
    train, val = _names(out / "train"), _names(out / "val")
    assert not train & val
    bursts = {"burst_a.jpg", "burst_b.jpg", "burst_c.jpg"}
    assert bursts <= train or bursts <= val  # one side, whichever
    assert not {"both.jpg", "both_again.jpg", "broken.jpg"} & (train | val)
    assert "cat/both.jpg = dog/both_again.jpg" in printed and "dog/broken.jpg" in printed
    assert "cat: " in printed and "1 group(s) of copies kept on one side" in printed
    manifest = json.loads((out / "split.json").read_text())
    assert manifest["counts"]["val"] == {"cat": 3, "dog": 3}  # round(13 x 0.25) = 3 (cat: 10 + 3 copies), dog 11 -> 3
    assert sum(manifest["counts"]["train"].values()) + sum(manifest["counts"]["val"].values()) == 24
    assert "phone.heic" in train | val
    assert (scattered / "cat" / "cat0.jpg").exists()  # copies: the source is untouched


def test_split_is_seeded(scattered, tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["split", str(scattered), "--out", str(tmp_path / name), "--seed", seed, "-q"]) == 0
    assert _names(tmp_path / "a" / "val") == _names(tmp_path / "b" / "val") != _names(tmp_path / "c" / "val")


def test_split_with_link_makes_hard_links(scattered, tmp_path):
    assert main(["split", str(scattered), "--out", str(tmp_path / "linked"), "--link", "-q"]) == 0
    placed = next((tmp_path / "linked" / "train" / "dog").glob("dog*.jpg"))
    assert os.stat(placed).st_ino == os.stat(scattered / "dog" / placed.name).st_ino


def test_split_refuses_a_non_empty_destination_and_a_split_source(scattered, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["split", str(scattered), "--out", str(tmp_path / "full"), "-q"]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert main(["split", str(scattered), "--out", str(tmp_path / "ok"), "-q"]) == 0
    assert main(["split", str(tmp_path / "ok"), "--out", str(tmp_path / "again"), "-q"]) == 2
    assert "already split" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert main(["split", str(scattered), "--out", str(tmp_path / "empty"), "-q"]) == 0


def test_an_interrupted_split_leaves_no_half_made_folder(scattered, tmp_path, monkeypatch):
    import transferlab.curate.splitting as splitting

    monkeypatch.setattr(splitting, "_place", ctrl_c_on_call(splitting._place, 5))
    assert main(["split", str(scattered), "--out", str(tmp_path / "cut"), "-q"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scattered"]  # neither DST nor its partial folder


def test_automatic_split_at_training_time_groups_the_same_way(scattered):
    (scattered / "dog" / "broken.jpg").unlink()
    for seed in range(6):  # whatever the seed, no copy on both sides
        dataset = load_dataset(scattered, val_fraction=0.3, seed=seed)
        train = {s.path.name for s in dataset.train}
        val = {s.path.name for s in dataset.val}
        bursts = {"burst_a.jpg", "burst_b.jpg", "burst_c.jpg"}
        assert not train & val and (bursts <= train or bursts <= val)
        assert [[p.name for p in g] for g in dataset.excluded] == [["both.jpg", "both_again.jpg"]]
        assert not {"both.jpg", "both_again.jpg"} & (train | val)
