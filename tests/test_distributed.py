"""torchrun with 2 CPU processes (gloo) trains one run with the same samples per epoch as one process and
validates on the whole validation set once; a run killed mid-training resumes and ends exactly like an
uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import make_folder
from transferlab.analysis.evaluate import evaluate_run
from transferlab.inference.predict import Classifier
from transferlab.runs import read_compare_summary

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _train_args(data: Path, out: Path, name: str, strategy: str, epochs: int) -> list[str]:
    return [
        "-m",
        "transferlab",
        "train",
        str(data),
        "--backbone",
        "efficientnet_lite0",
        "--strategy",
        strategy,
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--out",
        str(out),
        "--name",
        name,
        "-q",
        "--workers",
        "0",
        "--recipe",
        "reference",
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # 7 train images per class: 21 in all, an odd number, so the two processes get unequal shares
    return make_folder(tmp_path_factory.mktemp("d"), {"red": 7, "green": 7, "blue": 7})


@pytest.mark.parametrize("strategy", ["finetune", "extract"])
def test_two_processes_share_one_run_and_see_every_image_once(data, tmp_path, strategy):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        *_train_args(data, tmp_path, "ddp", strategy, 2),
    ]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[:3000]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    run = tmp_path / "ddp"
    metrics = _metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(m["train_samples"] == 21 and m["val_samples"] == 9 for m in metrics)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["status"] == "completed"
    assert done.stdout.count("best val accuracy") == 1  # rank 0 alone reports
    classifier = Classifier.load(run)
    assert classifier.unknown is not None  # fitted once, by rank 0
    # the weights rank 0 saved are the best epoch's: evaluated again, they score what the run recorded (to one image)
    evaluation = evaluate_run(run, quiet=True)
    assert abs(evaluation.accuracy - summary["best_val_acc"]) <= 1 / len(evaluation.labels) + 1e-9


def test_two_processes_fit_one_probe_on_every_image(data, tmp_path):
    args = _train_args(data, tmp_path, "probe", "extract", 1)[:-2] + ["--recipe", "fast"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[:3000]
    (record,) = _metrics(tmp_path / "probe")
    assert record["stage"] == "probe" and record["train_samples"] == 21 and record["val_samples"] == 9
    assert done.stdout.count("best val accuracy") == 1


def test_killed_run_resumes_and_matches_an_uninterrupted_run(data, tmp_path):
    epochs = 4
    args = _train_args(data, tmp_path, "killed", "finetune", epochs) + ["--deterministic"]
    process = subprocess.Popen([sys.executable, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "killed"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (run / "metrics.jsonl").exists() and len(_metrics(run)) >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = len(_metrics(run))
    assert 1 <= finished_before_kill < epochs, "the kill came too late to test resuming"

    resumed = subprocess.run(
        [sys.executable, "-m", "transferlab", "train", "--resume", str(run), "-q"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = subprocess.run(
        [sys.executable, *_train_args(data, tmp_path, "whole", "finetune", epochs), "--deterministic"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    def comparable(metrics):
        return [{k: v for k, v in m.items() if "seconds" not in k} for m in metrics]

    assert [m["epoch"] for m in _metrics(run)] == list(range(1, epochs + 1))
    assert comparable(_metrics(run)) == comparable(_metrics(tmp_path / "whole"))
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_join_finds_the_ddp_module_inside_a_compiled_wrapper(tmp_path):
    import torch.distributed as dist
    from torch.distributed.algorithms.join import Join
    from torch.nn.parallel import DistributedDataParallel

    from transferlab.training.engine import _join_uneven

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(torch.nn.Linear(2, 2))
        assert isinstance(_join_uneven(torch.compile(ddp, backend="eager")), Join)
    finally:
        dist.destroy_process_group()


def test_fit_under_two_processes_makes_one_folder_evaluated_and_reported_once(data, tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "transferlab",
        "fit",
        str(data),
        "--budget",
        "40s",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--out",
        str(tmp_path),
        "--name",
        "fit",
        "-q",
        "--workers",
        "0",
    ]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]  # one folder, made by rank 0 and named to rank 1
    fit = tmp_path / "fit"
    runs = [p for p in fit.iterdir() if (p / "summary.json").exists()]
    assert runs and all(json.loads((r / "summary.json").read_text())["processes"] == 2 for r in runs)
    assert all((r / "evaluation" / "evaluation.json").exists() for r in runs)  # every run evaluated (by rank 0)
    answer = read_compare_summary(fit)
    assert answer is not None and answer.kind == "fit" and answer.recommended_run in [r.name for r in runs]
    assert answer.sentence is not None and answer.sentence.startswith("Use ")
    assert done.stdout.count("report: ") == 1  # rank 0 alone reports
