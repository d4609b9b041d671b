"""Faults and hostile input: nothing lost, nothing injected, no hang (each test failed on the code before it)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import io
import threading
import time

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from conftest import ctrl_c_on_call, make_folder
from transferlab import DataConfig, Recipe, TrainConfig, train
from transferlab.cli import main
from transferlab.serve import BodyLimit, create_app

HOSTILE = "<img src=x onerror=alert(1)>"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


# --- the web app -------------------------------------------------------------------------------------------

def _call(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, list[bytes]]:
    """Drive an ASGI app by hand: (status, body chunks the app pulled from the request)."""
    pulled, sent = [], {}

    async def receive():
        body = chunks.pop(0) if chunks else b""
        pulled.append(body)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent["status"], pulled


def _draining_app(scope, receive, send):
    async def app():
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app()


def test_an_announced_oversize_body_is_refused_before_a_byte_is_read():
    status, pulled = _call(BodyLimit(_draining_app, limit=1000), [(b"content-length", b"200000000")], [b"x" * 10])
    assert status == 413 and pulled == []


def test_a_body_without_a_length_is_cut_off_once_past_the_limit():
    chunks = [b"x" * 400] * 10
    status, pulled = _call(BodyLimit(_draining_app, limit=1000), [], chunks)
    assert status == 413 and len(pulled) == 3  # 1200 bytes read, then refused: the other 2800 never pulled


def test_uploads_wait_for_a_decoding_slot_then_get_503(trained_run, monkeypatch):
    import transferlab.serve as serve

    real_decode, started = serve._decode, threading.Event()

    def slow_decode(*args):
        started.set()
        time.sleep(1.5)
        return real_decode(*args)

    monkeypatch.setattr(serve, "_decode", slow_decode)
    client = TestClient(create_app(trained_run, decode_slots=1, decode_wait=0.2))
    first = {}
    worker = threading.Thread(target=lambda: first.update(r=client.post("/predict", files={"file": ("a.png", _png())})))
    worker.start()
    started.wait(10)
    second = client.post("/predict", files={"file": ("b.png", _png())})
    worker.join()
    assert second.status_code == 503 and "busy" in second.json()["detail"]
    assert first["r"].status_code == 200


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("hostile"), {"red": 6, "green": 6})
    for split in ("train", "val"):
        (root / split / "red").rename(root / split / HOSTILE)
    out = tmp_path_factory.mktemp("runs")
    assert main(["compare", str(root), "--strategies", "extract", "--backbone", "efficientnet_lite0",
                 "--out", str(out), "--name", "c", "-q", "--workers", "0"]) == 0
    return out / "c"


def test_class_names_reach_the_page_and_the_report_as_text(hostile_run):
    page = TestClient(create_app(hostile_run / "extract")).get("/").text
    report = (hostile_run / "report.html").read_text()
    for html in (page, report):
        assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "innerHTML" not in page


# --- the command line --------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--batch-size", "-4"], ["--lr", "0"], ["--max-per-class", "0"],
                                  ["--val-fraction", "1.5"]])
def test_bad_numbers_are_one_line_errors_before_any_run_folder(tiny_dataset, tmp_path, capsys, argv):
    code = main(["train", str(tiny_dataset), "--strategy", "extract", "--out", str(tmp_path / "runs"), "-q", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_reader_that_leaves_the_pipe_early_ends_predict_quietly(trained_run, tmp_path):
    import subprocess
    import sys

    photos = []
    for i in range(3):
        photos.append(tmp_path / f"p{i}.png")
        photos[-1].write_bytes(_png())
    process = subprocess.Popen([sys.executable, "-m", "transferlab", "predict", str(trained_run), *map(str, photos)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # `| head -0`: the reader is gone before the first line
    assert process.wait(timeout=300) == 141
    assert b"Traceback" not in process.stderr.read()


def test_a_full_disk_is_one_line_not_a_traceback(monkeypatch, capsys):
    import errno

    from transferlab import commands

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
    assert main(["train", str(split), "--out", str(split / "runs"), "--strategy", "extract", "--backbone",
                 "efficientnet_lite0", "--epochs", "1", "-q", "--workers", "0"]) == 0


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

    import transferlab.training as training

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(training, "train", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", str(tmp_path), "-q"])


# --- caches and numbers ------------------------------------------------------------------------------------

def test_an_inconsistent_feature_cache_entry_is_a_miss_never_a_crash(tiny_dataset, tmp_path, caplog):
    from safetensors.torch import save_file

    from transferlab import storage

    config = TrainConfig(DataConfig(str(tiny_dataset)), strategy="extract", backbone="efficientnet_lite0",
                         recipe=Recipe(epochs=1, batch_size=8), out=str(tmp_path), quiet=True, workers=0)
    first = train(config)
    entries = list((storage.cache_dir() / "features").glob("*.safetensors"))  # the head's, and the centre crops'
    assert len(entries) == 2
    for entry in entries:
        save_file({"train": torch.zeros(1, 0, 1280), "val": torch.zeros(0, 1280)}, entry)  # what a bad run left
    again = train(config)
    assert again.summary.features_from_cache is False and again.best_val_acc == first.best_val_acc
    assert "ignoring the feature cache" in caplog.text


def test_join_finds_the_ddp_module_inside_a_compiled_wrapper(tmp_path):
    import torch.distributed as dist
    from torch.distributed.algorithms.join import Join
    from torch.nn.parallel import DistributedDataParallel

    from transferlab.engine import _join_uneven

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(torch.nn.Linear(2, 2))
        assert isinstance(_join_uneven(torch.compile(ddp, backend="eager")), Join)
    finally:
        dist.destroy_process_group()


def test_evaluating_on_another_folder_keeps_the_runs_own_predictions(trained_run, tmp_path, capsys):
    own = trained_run / "evaluation" / "predictions.csv"
    before = own.read_text() if own.exists() else None
    other = make_folder(tmp_path / "elsewhere", {"red": 3, "green": 3, "blue": 3})
    assert main(["evaluate", str(trained_run), str(other), "-q"]) == 0
    assert (trained_run / "evaluation-elsewhere" / "predictions.csv").exists()
    assert (own.read_text() if own.exists() else None) == before
    assert "evaluation-elsewhere" in capsys.readouterr().out


def test_export_checks_parity_on_real_photos_or_fails_clearly(tmp_path, capsys):
    root = make_folder(tmp_path / "photos", {"red": 4, "green": 4})
    assert main(["train", str(root), "--strategy", "extract", "--backbone", "efficientnet_lite0", "--out",
                 str(tmp_path / "runs"), "--name", "r", "-q", "--workers", "0"]) == 0
    run = tmp_path / "runs" / "r"
    assert json.loads((run / "config.json").read_text())["resolved"]["data_root"] == str(root.resolve())
    moved = root.rename(tmp_path / "moved")  # the photos are gone from where the run saw them
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "pass --images DIR" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx"), "--images", str(moved / "val")]) == 0
    captured = capsys.readouterr()
    assert "parity on 4 images" in captured.out
    assert "Replaced initializer" not in captured.err and captured.err.count("\n") <= 2  # no optimizer chatter


# --- resuming ----------------------------------------------------------------------------------------------

def _resumable(tiny_dataset, tmp_path, epochs=3):
    return ["train", str(tiny_dataset), "--strategy", "finetune", "--backbone", "efficientnet_lite0", "--recipe",
            "reference", "--epochs", str(epochs), "--batch-size", "8", "--out", str(tmp_path), "--name", "r", "-q",
            "--workers", "0", "--deterministic"]


def _epochs(run) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resuming_a_finished_run_does_nothing_and_says_so(tiny_dataset, tmp_path, monkeypatch, capsys):
    assert main(_resumable(tiny_dataset, tmp_path, epochs=1)) == 0
    import transferlab.training as training

    monkeypatch.setattr(training, "prepare_data", lambda *a, **k: pytest.fail("decoded photos for nothing"))
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "r"), "-q"]) == 0
    assert "already finished" in capsys.readouterr().out and _epochs(tmp_path / "r") == [1]


def test_resuming_an_early_stopped_run_does_not_train_on(tiny_dataset, tmp_path):
    from transferlab import resume

    config = TrainConfig(DataConfig(str(tiny_dataset)), strategy="extract", backbone="efficientnet_lite0",
                         recipe=Recipe(epochs=8, batch_size=8, patience=1), out=str(tmp_path), quiet=True, workers=0)
    run = train(config)
    stopped = _epochs(run.run_dir)
    assert len(stopped) < 8  # patience 1 on easy pictures: it stopped early
    assert resume(run.run_dir).already_finished and _epochs(run.run_dir) == stopped


def test_a_run_killed_just_after_stopping_early_stays_stopped(tiny_dataset, tmp_path, monkeypatch):
    import transferlab.runs as runs
    from transferlab import resume

    config = TrainConfig(DataConfig(str(tiny_dataset)), strategy="extract", backbone="efficientnet_lite0",
                         recipe=Recipe(epochs=8, batch_size=8, patience=1), quiet=True, workers=0)
    whole = _epochs(train(dataclasses.replace(config, out=str(tmp_path / "whole"))).run_dir)
    real_save = runs.save_training_state

    def save_then_die(run_dir, epoch, *args, **kwargs):
        real_save(run_dir, epoch, *args, **kwargs)
        if epoch == whole[-1]:  # the epoch that stopped early: killed before the summary says completed
            raise KeyboardInterrupt

    monkeypatch.setattr(runs, "save_training_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(config, out=str(tmp_path / "cut")))
    monkeypatch.setattr(runs, "save_training_state", real_save)
    (cut,) = (tmp_path / "cut").iterdir()
    assert _epochs(resume(cut).run_dir) == whole


def test_epochs_extends_a_finished_run(tiny_dataset, tmp_path, capsys):
    assert main(_resumable(tiny_dataset, tmp_path, epochs=2)) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "3", "-q"]) == 0
    assert _epochs(tmp_path / "r") == [1, 2, 3]
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "2", "-q"]) == 2


def test_flags_given_with_resume_are_refused_by_name(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.1", "--seed", "3", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--lr" in err and "--seed" in err and err.count("\n") == 1


def test_renamed_class_folders_are_a_clear_error_when_resuming(tiny_dataset, tmp_path, capsys):
    assert main(_resumable(tiny_dataset, tmp_path, epochs=1)) == 0
    state = json.loads((tmp_path / "r" / "summary.json").read_text())
    (tmp_path / "r" / "summary.json").write_text(json.dumps({**state, "status": "interrupted"}))
    for split in ("train", "val"):
        (tiny_dataset / split / "red").rename(tiny_dataset / split / "crimson")
    assert main(["train", "--resume", str(tmp_path / "r"), "-q"]) == 2
    assert "class folders" in capsys.readouterr().err


def test_an_unknown_key_in_a_runs_config_is_a_clear_error(tiny_dataset, tmp_path, capsys):
    assert main(_resumable(tiny_dataset, tmp_path, epochs=1)) == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    (tmp_path / "r" / "config.json").write_text(json.dumps({**config, "colour": "blue"}))
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "2", "-q"]) == 2
    assert "colour" in capsys.readouterr().err


# --- interruptions -----------------------------------------------------------------------------------------

def test_ctrl_c_while_compare_decodes_leaves_no_folder_and_one_line(tiny_dataset, tmp_path, monkeypatch, capsys):
    import transferlab.comparison as comparison

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(comparison, "prepare_data", interrupted)
    out = tmp_path / "runs"
    assert main(["compare", str(tiny_dataset), "--backbone", "efficientnet_lite0", "--out", str(out), "-q"]) == 130
    assert capsys.readouterr().err == "interrupted\n" and list(out.iterdir()) == []


def test_ctrl_c_during_compares_evaluation_keeps_and_reports_what_finished(tiny_dataset, tmp_path, monkeypatch,
                                                                            capsys):
    import transferlab.evaluate as evaluate

    monkeypatch.setattr(evaluate, "evaluate_decoded", ctrl_c_on_call(evaluate.evaluate_decoded, 2))
    code = main(["compare", str(tiny_dataset), "--strategies", "extract,finetune", "--backbone", "efficientnet_lite0",
                 "--epochs", "1", "--out", str(tmp_path), "--name", "c", "-q", "--workers", "0"])
    assert code == 130
    report = (tmp_path / "c" / "report.md").read_text()
    assert "| extract |" in report and "| finetune |" in report  # both trained; finetune's evaluation was cut
    assert "Use " in report and "+nan" not in report and "CI nan" not in report
    assert (tmp_path / "c" / "extract" / "evaluation").is_dir()


def test_resuming_a_compare_run_cut_short_writes_the_answer_again(tiny_dataset, tmp_path, monkeypatch, capsys):
    import transferlab.runs as runs_module

    real = runs_module.append_metrics
    monkeypatch.setattr(runs_module, "append_metrics", ctrl_c_on_call(real, 2))  # during the second epoch
    args = ["--backbone", "efficientnet_lite0", "--epochs", "3", "--out", str(tmp_path), "--name", "c", "-q"]
    assert main(["compare", str(tiny_dataset), "--strategies", "finetune,extract", *args]) == 130
    cut = (tmp_path / "c" / "report.md").read_text()
    assert "Cut short: finetune (efficientnet_lite0, batch 32) after 1 of 3 epochs" in cut
    assert "not run, the comparison was stopped first (the answer is among the cells that ran): extract " \
           "(efficientnet_lite0, batch 32, seed 0)" in cut and "not run, " in capsys.readouterr().out
    monkeypatch.setattr(runs_module, "append_metrics", real)
    assert main(["train", "--resume", str(tmp_path / "c" / "finetune"), "-q"]) == 0
    report = (tmp_path / "c" / "report.md").read_text()
    assert "Cut short" not in report and "Use finetune" in report
    assert (tmp_path / "c" / "finetune" / "evaluation" / "predictions.csv").exists()


def test_compare_on_a_bad_folder_leaves_no_folder(tmp_path, capsys):
    (tmp_path / "photos" / "only").mkdir(parents=True)
    assert main(["compare", str(tmp_path / "photos"), "--out", str(tmp_path / "runs"), "-q"]) == 2
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_during_doctor_keeps_what_was_inspected(tiny_dataset, monkeypatch):
    import transferlab.doctor as doctor
    import transferlab.inspection as inspection

    real = inspection._inspect_job
    monkeypatch.setattr(inspection, "_inspect_job", ctrl_c_on_call(real, 3))
    with pytest.raises(KeyboardInterrupt):
        doctor.diagnose(tiny_dataset, workers=0, quiet=True)
    monkeypatch.setattr(inspection, "_inspect_job", real)
    assert doctor.diagnose(tiny_dataset, workers=0, quiet=True).cached == 2


def test_ctrl_c_during_export_leaves_no_half_written_model(trained_run, tmp_path, monkeypatch, capsys):
    import transferlab.export as export

    def interrupted(model, example, out, metadata):
        out.write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_export_onnx", interrupted)
    assert main(["export", str(trained_run), "--out", str(tmp_path / "m.onnx")]) == 130
    assert list(tmp_path.iterdir()) == []


# --- the doctor's quarantine -------------------------------------------------------------------------------

def _with_broken_file(root, name="train/red/broken.jpg"):
    make_folder(root, {"red": 3, "green": 3})
    (root / name).write_bytes(b"not an image")
    return root


def test_two_datasets_quarantined_into_one_folder_each_get_their_own_file_back(tmp_path):
    from transferlab.doctor import diagnose
    from transferlab.quarantine_folder import quarantine, restore

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
    import transferlab.quarantine_folder as q
    from transferlab.doctor import diagnose

    root = _with_broken_file(tmp_path / "a")
    (root / "val/green/empty.jpg").write_bytes(b"")
    real, moves = q._move, []

    def crash_on_second(source, target):
        moves.append(source)
        if len(moves) == 2:
            raise OSError("disk gone")
        real(source, target)

    monkeypatch.setattr(q, "_move", crash_on_second)
    with pytest.raises(OSError):
        q.quarantine(diagnose(root, workers=0, quiet=True), tmp_path / "jail")
    monkeypatch.setattr(q, "_move", real)
    restored, _ = q.restore(tmp_path / "jail")
    assert len(restored) == 1  # the move made before the crash was in the manifest, and came back
    assert (root / "train/red/broken.jpg").exists() and (root / "val/green/empty.jpg").exists()


def test_restore_never_overwrites_and_a_quarantine_inside_the_dataset_is_refused(tmp_path, capsys):
    from transferlab.doctor import diagnose
    from transferlab.quarantine_folder import quarantine, restore

    root = _with_broken_file(tmp_path / "a")
    assert main(["doctor", str(root), "--quarantine", str(root / "train" / "jail"), "-q"]) == 2
    assert (root / "train/red/broken.jpg").exists()
    quarantine(diagnose(root, workers=0, quiet=True), tmp_path / "jail")
    (root / "train/red/broken.jpg").write_bytes(b"a new file in its place")
    restored, left = restore(tmp_path / "jail")
    assert not restored and left == [str(root.resolve() / "train/red/broken.jpg")]
    assert (root / "train/red/broken.jpg").read_bytes() == b"a new file in its place"


def test_a_symlinked_class_folder_is_not_followed_out_of_the_dataset(tmp_path):
    from transferlab.doctor import diagnose
    from transferlab.quarantine_folder import quarantine

    root = make_folder(tmp_path / "a", {"red": 3, "green": 3})
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.jpg").write_bytes(b"not an image, but not yours to move")
    (root / "train" / "linked").symlink_to(outside, target_is_directory=True)
    report = diagnose(root, workers=0, quiet=True)
    assert not any("precious" in f for finding in report.findings for f in finding.files)
    quarantine(report, tmp_path / "jail")
    assert (outside / "precious.jpg").exists()


def test_missing_resnet_weights_fail_before_any_photo_is_decoded(tiny_dataset, tmp_path, monkeypatch, capsys):
    import transferlab.training as training

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(training, "prepare_data", lambda *a, **k: pytest.fail("decoded photos before the weights"))
    assert main(["train", str(tiny_dataset), "--backbone", "resnet18", "--out", str(tmp_path / "runs"), "-q"]) == 1
    assert "--weights" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_uploads_are_parsed_by_a_python_multipart_without_the_known_dos_bugs():
    from importlib.metadata import version

    from conftest import REPO

    assert '"python-multipart>=0.0.18"' in (REPO / "pyproject.toml").read_text()
    assert tuple(int(p) for p in version("python-multipart").split(".")[:3]) >= (0, 0, 18)
