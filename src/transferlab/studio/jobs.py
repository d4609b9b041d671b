"""Long work started from the page: one training at a time, and the folder checks.

A training runs `transferlab fit` or `transferlab compare` in a child process, so cancelling it is exactly Ctrl-C
(SIGINT: the run folder keeps what finished and the report is written) and a crash cannot take the page down. Its
progress is read from the files the runs write as they go (the run-folder contract: `compare.json`, each run's
`metrics.jsonl` and `summary.json`), never from a second implementation of training. The checks (`doctor`, and the
label check of `doctor --labels`) run in a thread of the studio and keep their last result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from transferlab.errors import Conflict, DamagedFile, TransferlabError, UsageError
from transferlab.runs import read_compare_summary, read_metrics, read_summary
from transferlab.studio.requests import TrainRequest
from transferlab.utils.storage import read_json_if_readable

JobStatus = Literal["idle", "running", "finished", "failed", "cancelled"]


def command_line(request: TrainRequest, folder: Path, out: Path, name: str) -> list[str]:
    """The `transferlab` arguments that run `request` on `folder`, into `out/name`."""
    common = [str(folder), "--out", str(out), "--name", name, "-q"]
    if request.epochs is not None:
        common += ["--epochs", str(request.epochs)]
    if request.mode == "fit":
        return ["fit", *common, "--budget", request.budget]
    arguments = ["compare", *common, "--strategies", ",".join(request.strategies), "--seeds", str(request.seeds)]
    if len(request.backbones) == 1:
        arguments += ["--backbone", request.backbones[0]]
    elif request.backbones:
        arguments += ["--backbones", ",".join(request.backbones)]
    return arguments


class Training:
    """The one training the studio runs at a time, in a child process."""

    def __init__(self, folder: Path, out: Path):
        self.folder, self.out = folder, out
        self.process: subprocess.Popen | None = None
        self.run_dir: Path | None = None
        self.request: TrainRequest | None = None
        self.started = 0.0
        self.status: JobStatus = "idle"
        self.lines: deque[str] = deque(maxlen=50)  # the command's last lines of output
        self.lock = threading.Lock()

    def start(self, request: TrainRequest) -> Path:
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                raise Busy("a training is running: wait for it to finish, or cancel it")
            name = f"studio-{request.mode}-{time.strftime('%Y%m%d-%H%M%S')}"
            self.out.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "transferlab", *command_line(request, self.folder, self.out, name)]
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            self.run_dir, self.request, self.started, self.status = self.out / name, request, time.time(), "running"
            self.lines.clear()
            threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
            return self.run_dir

    def cancel(self) -> None:
        """Ctrl-C for the training: it keeps what finished and writes its report."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                raise UsageError("no training is running")
            self.process.send_signal(signal.SIGINT)
            self.status = "cancelled"

    def progress(self) -> dict[str, Any]:
        """Where the training is: its runs (stage, epoch, accuracy so far), elapsed and left, and how it ended."""
        code = self.process.poll() if self.process is not None else None
        if self.process is not None and code is not None and self.status == "running":
            self.status = "finished" if code == 0 else "failed"
        runs = read_runs(self.run_dir) if self.run_dir is not None else []
        elapsed = time.time() - self.started if self.started else 0.0
        return {
            "status": self.status,
            "code": code,
            "folder": self.run_dir.name if self.run_dir else None,
            "request": self.request.model_dump() if self.request else None,
            "elapsed": round(elapsed, 1),
            "left": self._left(elapsed, runs),
            "runs": runs,
            "lines": list(self.lines)[-8:],
            "answer": _answer(self.run_dir) if self.run_dir is not None and code is not None else None,
        }

    def _left(self, elapsed: float, runs: list[dict]) -> float | None:
        if self.status != "running" or self.request is None:
            return None
        if self.request.mode == "fit":
            from transferlab.training.budget import parse_duration

            return max(0.0, round(parse_duration(self.request.budget) - elapsed, 1))
        plan = read_json_if_readable(self.run_dir / "compare.json") if self.run_dir else None
        if not plan or not runs:
            return None
        total = len(plan.get("strategies", [])) * len(plan.get("backbones", [])) * plan.get("seeds", 1)
        total *= len(plan.get("batch_sizes", [1]))
        done = sum(r["status"] != "running" for r in runs)
        per_run = elapsed / max(done, 0.5)
        return round(max(0.0, per_run * (total - done)), 1)

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip())


class Busy(Conflict):
    """A second training asked for while one runs."""


class Check:
    """A check of the folder run in a thread (`doctor`, or the label check); keeps its last result or error."""

    def __init__(self, work: Callable[[], Any]):
        self.work = work
        self.status: JobStatus = "idle"
        self.result: Any = None
        self.error = ""
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return  # already running: the page polls for its result
        self.status, self.error = "running", ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result, self.status = self.work(), "finished"
        except Exception as error:  # noqa: BLE001 - shown on the page, one line, as the command line would
            self.error, self.status = f"{type(error).__name__}: {error}", "failed"


def read_runs(folder: Path) -> list[dict]:
    """Each run of a compare or fit folder as it stands: strategy, backbone, status, epochs, last and best accuracy.
    A run whose files cannot be read yet (being written) or at all is left out."""
    runs: list[dict] = []
    if not folder.is_dir():
        return runs
    for run in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
        try:
            summary = read_summary(run)
        except (TransferlabError, OSError):
            continue
        try:
            metrics = read_metrics(run)  # a line being written is left out
        except DamagedFile:
            metrics = []  # the run's own commands say so; the page shows what it can
        last = metrics[-1] if metrics else {}
        accuracies = [m["val_acc"] for m in metrics if isinstance(m.get("val_acc"), (int, float))]
        runs.append(
            {
                "name": run.name,
                "strategy": summary.strategy,
                "backbone": summary.backbone,
                "status": summary.status,
                "stage": last.get("stage") or None,
                "epoch": last.get("epoch"),
                "val_acc": last.get("val_acc"),
                "best_val_acc": max(accuracies, default=None),
                "curve": accuracies,
            }
        )
    return runs


def _answer(folder: Path) -> str | None:
    try:
        summary = read_compare_summary(folder)
    except TransferlabError:
        return None
    return summary.sentence if summary is not None else None
