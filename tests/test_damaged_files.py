"""Every file transferlab writes and later reads, damaged every way a disk or a copy damages it: a cache is computed
again with a one-line warning; anything else is one line naming the file and what to do (exit 1). Never a traceback,
never a silent wrong answer. Then a full disk at a write (a real tmpfs where the machine allows it, a writer that
fails on purpose elsewhere), and two commands creating run folders at once. docs/faults.md is the table."""

from __future__ import annotations

import dataclasses
import errno
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_folder
from transferlab.cli import main


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def emptied(path: Path) -> None:
    path.write_bytes(b"")


def garbage(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(max(64, path.stat().st_size)))


def newer(path: Path) -> None:  # written by a later version: a setting this one does not know
    path.write_text(json.dumps({**json.loads(path.read_text()), "written_by_a_later_version": True}))


DAMAGE = {"truncated": truncated, "emptied": emptied, "garbage": garbage}


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    """A copy of a trained extract run (with its unknown detector) to damage."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (200, 40, 40)).save(path)
    return path


def _one_line_naming(capsys, name: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and name in err, err
    assert "Traceback" not in err
    return err


# --- the run folder: read by predict (the model), resume (the training record) ---------------------------------

PREDICT_READS = ["model.safetensors", "model.json", "unknown.safetensors"]
RESUME_READS = ["config.json", "summary.json", "last.pt"]


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", PREDICT_READS)
def test_a_damaged_model_file_is_one_line_when_predicting(run, photo, capsys, name, damage):
    DAMAGE[damage](run / name)
    assert main(["predict", str(run), str(photo)]) == 1
    _one_line_naming(capsys, name)


def test_a_model_of_another_shape_is_one_line_when_predicting(run, photo, capsys):
    """Readable weights that do not fit the network this version builds (e.g. an ensemble run saved before its
    members gave their last stages: a narrower head)."""
    from safetensors.torch import load_file, save_file

    state = load_file(run / "model.safetensors")
    state["head.1.weight"] = state["head.1.weight"][:, :-7].contiguous()
    save_file(state, run / "model.safetensors")
    assert main(["predict", str(run), str(photo)]) == 1
    assert "train again" in _one_line_naming(capsys, "model.safetensors")


def test_a_model_whose_features_are_computed_otherwise_now_is_one_line_when_predicting(run, photo, capsys):
    """A run fitted on features another version computed from the same weights (an ensemble run from before its
    members' views were resized bicubic: revision 0, where this version's ensembles are revision 1)."""
    meta = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**meta, "revision": 1}))  # this run's backbone is at revision 0
    assert main(["predict", str(run), str(photo)]) == 1
    assert "train again" in _one_line_naming(capsys, "model.json")


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", RESUME_READS)
def test_a_damaged_training_record_is_one_line_when_resuming(run, capsys, name, damage):
    DAMAGE[damage](run / name)
    assert main(["train", "--resume", str(run), "--epochs", "3", "-q"]) == 1
    _one_line_naming(capsys, name)


def test_a_damaged_metrics_line_is_one_line_and_a_last_line_cut_short_is_dropped(run, capsys):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], '{"epoch": 2, "val_ac', *lines[1:]]) + "\n")
    assert main(["train", "--resume", str(run), "--epochs", "3", "-q"]) == 1
    _one_line_naming(capsys, "metrics.jsonl")
    (run / "metrics.jsonl").write_text("\n".join([*lines, '{"epoch": 3, "val_ac']) + "\n")  # killed mid-line
    assert main(["train", "--resume", str(run), "--epochs", "3", "-q"]) == 0
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


@pytest.mark.parametrize("name", ["summary.json", "model.json"])
def test_a_file_from_a_later_version_with_more_fields_still_reads(run, photo, capsys, name):
    newer(run / name)
    assert main(["predict", str(run), str(photo), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"]


def test_a_config_from_a_later_version_is_one_line_when_resuming(run, capsys):
    newer(run / "config.json")
    assert main(["train", "--resume", str(run), "--epochs", "3", "-q"]) == 1
    _one_line_naming(capsys, "config.json")


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_compare_summary_is_one_line(run, photo, tmp_path, capsys, damage):
    from transferlab.runs import CompareSummary, write_compare_summary

    compare = tmp_path / "compare"
    shutil.copytree(run, compare / "extract")
    answer = {"recommended_run": "extract", "sentence": "Use extract."}
    write_compare_summary(compare, CompareSummary(cells=[], recommendation=answer, skipped_backbones={}))
    assert main(["predict", str(compare), str(photo)]) == 0
    capsys.readouterr()
    DAMAGE[damage](compare / "summary.json")
    assert main(["predict", str(compare), str(photo)]) == 1
    _one_line_naming(capsys, "summary.json")


# --- caches: computed again, with a warning ---------------------------------------------------------------------


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_store_entry_is_computed_again(tiny_dataset, tmp_path, caplog, damage):
    from transferlab import DataConfig, Recipe, TrainConfig, train
    from transferlab.utils.storage import cache_dir

    config = TrainConfig(
        data=DataConfig(root=str(tiny_dataset)), strategy="extract", backbone="efficientnet_lite0",
        recipe=Recipe(epochs=1, batch_size=8), out=str(tmp_path / "runs"), quiet=True, workers=0,
    )  # fmt: skip
    first = train(config).summary.best_val_acc
    entries = list((cache_dir() / "store" / "spaces").glob("*/*/*.npy"))  # pictures, fingerprints, features
    assert entries
    for entry in entries:
        DAMAGE[damage](entry)
    again = train(dataclasses.replace(config, name="again"))
    assert again.summary.best_val_acc == first and again.summary.features_from_cache is False
    assert again.summary.photos_decoded == again.summary.train_images + again.summary.val_images
    assert any("damaged store entry" in r.message for r in caplog.records)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_doctor_cache_is_inspected_again(tiny_dataset, caplog, damage):
    from transferlab.curate.doctor import diagnose
    from transferlab.utils.storage import cache_dir

    first = diagnose(tiny_dataset, workers=0, quiet=True)
    (entry,) = (cache_dir() / "doctor").glob("*.json")
    DAMAGE[damage](entry)
    again = diagnose(tiny_dataset, workers=0, quiet=True)
    assert again.cached == 0 and again.files_scanned == first.files_scanned
    assert [f.kind for f in again.findings] == [f.kind for f in first.findings]
    assert any("inspection cache" in r.message for r in caplog.records)


# --- the dataset tools' records -----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_quarantine_manifest_is_one_line_and_moves_nothing(tmp_path, capsys, damage):
    photos = make_folder(tmp_path / "photos", {"red": 4, "green": 4})
    (photos / "train" / "red" / "empty.jpg").write_bytes(b"")
    assert main(["doctor", str(photos), "--quarantine", str(tmp_path / "jail"), "-q"]) == 1  # an unreadable file
    capsys.readouterr()
    DAMAGE[damage](tmp_path / "jail" / "manifest.json")
    assert main(["doctor", "--restore", str(tmp_path / "jail")]) == 1
    _one_line_naming(capsys, "manifest.json")
    assert (tmp_path / "jail" / "train" / "red" / "empty.jpg").exists()  # still where it was, not lost


@pytest.mark.parametrize("damage", ["garbage", "no url column"])
def test_a_damaged_sources_csv_is_one_line(tmp_path, capsys, damage):
    (tmp_path / "urls").mkdir()
    (tmp_path / "urls" / "cat.txt").write_text("http://127.0.0.1:9/cat.jpg\n")
    (tmp_path / "photos").mkdir()
    sources = tmp_path / "photos" / "sources.csv"
    sources.write_text("url,label\n")
    if damage == "garbage":
        garbage(sources)
    else:
        sources.write_text("address,class\nhttp://x/1.jpg,cat\n")
    assert main(["collect", str(tmp_path / "urls"), "--out", str(tmp_path / "photos"), "-q"]) == 1
    _one_line_naming(capsys, "sources.csv")


def test_a_damaged_journal_line_is_skipped_with_a_warning(tmp_path, caplog):
    from transferlab.studio.app import create_studio

    photos = make_folder(tmp_path / "photos", {"red": 2, "green": 2}, split=False)
    studio = create_studio(photos, tmp_path / "runs").state.studio
    studio.journal.move(photos / "red" / "red_0.jpg", photos / "green" / "red_0.jpg", "move")
    journal = photos.parent / "photos.studio" / "journal.jsonl"
    journal.write_text("\x00\x13garbage\n" + journal.read_text())
    entries = create_studio(photos, tmp_path / "runs").state.studio.journal.entries()
    assert [(e.kind, e.state) for e in entries] == [("move", "done")]
    assert any("damaged line" in r.message for r in caplog.records)


# --- a full disk ----------------------------------------------------------------------------------------------------


def test_a_write_that_fails_leaves_the_previous_file_and_no_half_file(run, monkeypatch):
    import torch

    import transferlab.runs.run as runs  # where the weights are written
    from transferlab.models.model import build_model

    before = (run / "model.safetensors").read_bytes()

    def disk_full(state, path, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runs, "save_file", disk_full)
    model, _, _ = build_model("efficientnet_lite0", 3, "extract", pretrained=False)
    with pytest.raises(OSError):
        runs.save_checkpoint(
            run, model, runs.ModelMeta(backbone="efficientnet_lite0", classes=["a", "b", "c"], strategy="extract")
        )
    assert (run / "model.safetensors").read_bytes() == before
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
    torch.manual_seed(0)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only; the test is skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_training_onto_a_full_disk_is_one_line_and_leaves_no_half_file(tiny_dataset, small_disk, capsys):
    code = main(["train", str(tiny_dataset), "--strategy", "extract", "--backbone", "efficientnet_lite0",
                 "--epochs", "1", "--out", str(small_disk), "--name", "r", "-q", "--workers", "0"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    left = [p.name for p in small_disk.rglob("*") if p.is_file()]
    assert not [name for name in left if ".tmp" in name], left  # nothing half-written
    assert "model.safetensors" not in left  # 13 MB of weights do not fit: never a piece of them


# --- two commands at once -------------------------------------------------------------------------------------------


def test_two_processes_creating_run_folders_in_one_second_never_share_one(tmp_path):
    script = (
        "import sys; from transferlab.runs import new_run_dir\n"
        "print('\\n'.join(str(new_run_dir(sys.argv[1], 'same', 'x')) for _ in range(50)))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    made = [line for p in procs for line in p.communicate()[0].splitlines()]
    assert len(made) == 200 and len(set(made)) == 200  # each folder made by exactly one of them


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    import os

    return subprocess.Popen(
        [sys.executable, "-m", "transferlab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_two_doctors_on_one_folder_at_once_agree_and_leave_a_whole_cache(tmp_path):
    photos = make_folder(tmp_path / "photos", {"red": 12, "green": 12}, split=False)
    env = {"TRANSFERLAB_CACHE": str(tmp_path / "cache")}
    procs = [_cli("doctor", str(photos), "--json", "--workers", "0", "-q", env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    assert reports[0]["findings"] == reports[1]["findings"] and reports[0]["files_scanned"] == 24
    third = _cli("doctor", str(photos), "--json", "--workers", "0", "-q", env=env)
    out, err = third.communicate(timeout=300)
    assert json.loads(out)["cached"] == 24 and "ignoring" not in err  # the cache they left is whole


def test_two_trainings_filling_one_store_at_once(tmp_path):
    photos = make_folder(tmp_path / "photos", {"red": 6, "green": 6})
    env = {"TRANSFERLAB_CACHE": str(tmp_path / "cache")}
    args = ["--strategy", "extract", "--backbone", "efficientnet_lite0", "--epochs", "1", "-q", "--workers", "0"]
    procs = [_cli("train", str(photos), "--out", str(tmp_path / f"runs{k}"), *args, env=env) for k in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    again = _cli("train", str(photos), "--out", str(tmp_path / "runs2"), *args, env=env)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0 and "damaged" not in err  # the entries they both wrote are whole
    (run,) = (tmp_path / "runs2").iterdir()
    assert json.loads((run / "summary.json").read_text())["features_from_cache"] is True


def test_the_studio_moving_photos_while_a_doctor_runs_loses_none_and_flags_none(tmp_path):
    import threading

    from transferlab.curate.doctor import diagnose
    from transferlab.studio.app import create_studio

    photos = make_folder(tmp_path / "photos", {"red": 20, "green": 20}, split=False)
    journal = create_studio(photos, tmp_path / "runs").state.studio.journal
    reports, failures = [], []

    def doctor() -> None:
        try:
            for _ in range(3):
                reports.append(diagnose(photos, workers=0, quiet=True, use_cache=False))
        except Exception as error:  # noqa: BLE001 - the test reports it
            failures.append(error)

    thread = threading.Thread(target=doctor)
    thread.start()
    moved = 0
    while thread.is_alive():
        source = sorted((photos / "red").iterdir())[0]
        journal.move(source, photos / "green" / source.name, "move")
        moved += 1
        back = photos / "green" / source.name
        journal.move(back, photos / "red" / source.name, "move")
    thread.join()
    assert not failures and moved and len(reports) == 3
    assert all(not [f for f in r.findings if f.kind == "unreadable"] for r in reports)  # moved is not unreadable
    assert sum(1 for _ in photos.rglob("*.jpg")) == 40  # every photo in one place
