"""The quarantine never deletes and never overwrites: every move is in the manifest as it happens, files go back
to their own dataset, and nothing is followed out of the dataset (each test failed on the code before it)."""

from __future__ import annotations

import pytest

from conftest import make_folder
from transferlab.cli import main


def _with_broken_file(root, name="train/red/broken.jpg"):
    make_folder(root, {"red": 3, "green": 3})
    (root / name).write_bytes(b"not an image")
    return root


def test_two_datasets_quarantined_into_one_folder_each_get_their_own_file_back(tmp_path):
    from transferlab.curate.doctor import diagnose
    from transferlab.curate.quarantine import quarantine, restore

    a = _with_broken_file(tmp_path / "a")
    b = _with_broken_file(tmp_path / "b")
    (b / "train/red/broken.jpg").write_bytes(b"not an image either")
    jail = tmp_path / "jail"
    assert len(quarantine(diagnose(a, workers=0, quiet=True), jail)) == 1
    assert len(quarantine(diagnose(b, workers=0, quiet=True), jail)) == 1
    assert len(list((jail / "train" / "red").iterdir())) == 2  # nothing overwritten
    restored, left = restore(jail)
    assert len(restored) == 2 and not left
    assert (a / "train/red/broken.jpg").read_bytes() == b"not an image"
    assert (b / "train/red/broken.jpg").read_bytes() == b"not an image either"


def test_each_move_is_in_the_manifest_as_it_happens(tmp_path, monkeypatch):
    import transferlab.curate.quarantine as q
    from transferlab.curate.doctor import diagnose

    root = _with_broken_file(tmp_path / "a")
    (root / "val/green/empty.jpg").write_bytes(b"")
    real, moves = q.move_file, []

    def crash_on_second(source, target):
        moves.append(source)
        if len(moves) == 2:
            raise OSError("disk gone")
        real(source, target)

    monkeypatch.setattr(q, "move_file", crash_on_second)
    with pytest.raises(OSError):
        q.quarantine(diagnose(root, workers=0, quiet=True), tmp_path / "jail")
    monkeypatch.setattr(q, "move_file", real)
    restored, _ = q.restore(tmp_path / "jail")
    assert len(restored) == 1  # the move made before the crash was in the manifest, and came back
    assert (root / "train/red/broken.jpg").exists() and (root / "val/green/empty.jpg").exists()


def test_restore_never_overwrites_and_a_quarantine_inside_the_dataset_is_refused(tmp_path, capsys):
    from transferlab.curate.doctor import diagnose
    from transferlab.curate.quarantine import quarantine, restore

    root = _with_broken_file(tmp_path / "a")
    assert main(["doctor", str(root), "--quarantine", str(root / "train" / "jail"), "-q"]) == 2
    assert (root / "train/red/broken.jpg").exists()
    quarantine(diagnose(root, workers=0, quiet=True), tmp_path / "jail")
    (root / "train/red/broken.jpg").write_bytes(b"a new file in its place")
    restored, left = restore(tmp_path / "jail")
    assert not restored and left == [str(root.resolve() / "train/red/broken.jpg")]
    assert (root / "train/red/broken.jpg").read_bytes() == b"a new file in its place"


def test_a_symlinked_class_folder_is_not_followed_out_of_the_dataset(tmp_path):
    from transferlab.curate.doctor import diagnose
    from transferlab.curate.quarantine import quarantine

    root = make_folder(tmp_path / "a", {"red": 3, "green": 3})
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.jpg").write_bytes(b"not an image, but not yours to move")
    (root / "train" / "linked").symlink_to(outside, target_is_directory=True)
    report = diagnose(root, workers=0, quiet=True)
    assert not any("precious" in f for finding in report.findings for f in finding.lines())
    quarantine(report, tmp_path / "jail")
    assert (outside / "precious.jpg").exists()
