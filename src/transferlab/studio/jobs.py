"""Long work started from the page: one training at a time, and the folder checks.

A training runs `transferlab fit` or `transferlab compare` in a child process, so cancelling it is exactly Ctrl-C
(SIGINT: the run folder keeps what finished and the report is written) and a crash cannot take the page down. Its
progress is read from the files it writes as it goes: the steps it reports (`utils.progress`: decoding, features,
the probe, epochs, evaluation) and the run-folder contract (each run's `metrics.jsonl` and `summary.json`), never
from a second implementation of training. It runs in a session of its own with its output in a file, so it outlives
a studio stopped or restarted meanwhile, and `training.json` lets the next studio find it. The checks (`doctor`, and the
label check of `doctor --labels`) run in a thread of the studio and keep their last result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from transferlab.config import parse_duration
from transferlab.errors import Conflict, DamagedFile, TransferlabError, UsageError
from transferlab.runs import read_compare_summary, read_metrics, read_summary
from transferlab.studio.requests import TrainRequest
from transferlab.utils.progress import ENV as PROGRESS_ENV
from transferlab.utils.progress import ProgressEvent, read_progress
from transferlab.utils.storage import read_json_if_readable, save_json

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


@dataclass(kw_only=True)
class TrainingRecord:
    """training.json in the studio's folder: the training started last, so a studio started again finds it (still
    running, or how it ended). One writer (`Training.start`), one reader (`_read_record`)."""

    pid: int
    name: str  # the run or compare folder, in the runs folder
    request: dict[str, Any]
    started: float


class Training:
    """The one training the studio runs at a time, in a child process of its own session: it writes its output and
    progress into the studio's folder (never a pipe), so it outlives a studio that is stopped or restarted, and a
    studio started again shows it, running or finished."""

    def __init__(self, folder: Path, out: Path, home: Path):
        self.folder, self.out, self.home = folder, out, home
        self.process: subprocess.Popen | None = None  # a training this studio started (its exit code is known)
        self.pid: int | None = None  # a training found running when the studio started
        self.run_dir: Path | None = None
        self.request: TrainRequest | None = None
        self.started = 0.0
        self.status: JobStatus = "idle"
        self.lock = threading.Lock()
        self._attach()

    # --- starting, stopping ------------------------------------------------------------------------------------

    def start(self, request: TrainRequest) -> Path:
        with self.lock:
            if self._running():
                raise Busy("a training is running: wait for it to finish, or cancel it")
            name = f"studio-{request.mode}-{time.strftime('%Y%m%d-%H%M%S')}"
            self.out.mkdir(parents=True, exist_ok=True)
            self._file(name, ".log").parent.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "transferlab", *command_line(request, self.folder, self.out, name)]
            with open(self._file(name, ".log"), "w", encoding="utf-8") as log_file:
                self.process = subprocess.Popen(
                    command,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C or a restart of the studio leaves it running
                    env={**os.environ, "PYTHONUNBUFFERED": "1", PROGRESS_ENV: str(self._file(name, ".progress.jsonl"))},
                )
            self.pid = None
            self.run_dir, self.request, self.started, self.status = self.out / name, request, time.time(), "running"
            record = TrainingRecord(pid=self.process.pid, name=name, request=request.model_dump(), started=self.started)
            save_json(asdict(record), self.home / RECORD)
            return self.run_dir

    def cancel(self) -> None:
        """Ctrl-C for the training: it keeps what finished and writes its report."""
        with self.lock:
            if not self._running():
                raise UsageError("no training is running")
            if self.process is not None:
                self.process.send_signal(signal.SIGINT)
            elif self.pid is not None:
                os.kill(self.pid, signal.SIGINT)
            self.status = "cancelled"

    # --- where it stands ---------------------------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        """Where the training is: its steps (decoding, features, the probe, epochs, evaluation) with the time each
        has left, its runs (stage, epoch, accuracy so far), elapsed and left, and how it ended."""
        running = self._running()
        code = self.process.poll() if self.process is not None else None
        if not running and self.status == "running":
            ended_well = code == 0 if self.process is not None else self._answer() is not None
            self.status = "finished" if ended_well else "failed"
        runs = read_runs(self.run_dir) if self.run_dir is not None else []
        elapsed = (time.time() if running else self._ended()) - self.started if self.started else 0.0
        name = self.run_dir.name if self.run_dir else None
        return {
            "status": self.status,
            "code": code,
            "folder": name,
            "request": self.request.model_dump() if self.request else None,
            "elapsed": round(elapsed, 1),
            "left": self._left(elapsed, runs) if running else None,
            "steps": summarize(read_progress(self._file(name, ".progress.jsonl"))) if name else [],
            "runs": runs,
            "lines": self._lines() if self.status == "failed" else [],  # what went wrong, in its own words
            "answer": self._answer() if not running else None,
        }

    def _file(self, name: str, suffix: str) -> Path:
        """Training `name`'s output (".log") or progress (".progress.jsonl") file in the studio's folder."""
        return self.home / "trainings" / f"{name}{suffix}"

    def _running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and _alive(self.pid)

    def _answer(self) -> str | None:
        return _answer(self.run_dir) if self.run_dir is not None else None

    def _ended(self) -> float:
        """When the training ended, as far as its files tell (its log's last write)."""
        try:
            return self._file(self.run_dir.name, ".log").stat().st_mtime if self.run_dir else 0.0
        except OSError:
            return time.time()

    def _lines(self) -> list[str]:
        path = self._file(self.run_dir.name, ".log") if self.run_dir else None
        try:
            text = path.read_text(encoding="utf-8", errors="replace") if path else ""
        except OSError:
            return []
        return [line[:300] for line in text.splitlines()[-8:]]

    def _left(self, elapsed: float, runs: list[dict]) -> float | None:
        if self.request is None:
            return None
        if self.request.mode == "fit":
            return max(0.0, round(parse_duration(self.request.budget) - elapsed, 1))
        total = len(self.request.strategies) * max(1, len(self.request.backbones)) * self.request.seeds
        done = sum(r["status"] != "running" for r in runs)
        if not runs or not done:
            return None
        return round(max(0.0, elapsed / done * (total - done)), 1)

    def _attach(self) -> None:
        """Find the training started last (from training.json): running still, or how it ended."""
        record = _read_record(self.home / RECORD)
        if record is None:
            return
        try:
            self.request = TrainRequest.model_validate(record.request)
        except ValueError:
            return
        self.run_dir, self.started = self.out / record.name, record.started
        if _alive(record.pid) and record.name in _command_of(record.pid):
            self.pid, self.status = record.pid, "running"
        else:
            self.status = "finished" if self._answer() is not None else "failed"


RECORD = "training.json"


def _read_record(path: Path) -> TrainingRecord | None:
    data = read_json_if_readable(path)
    if not isinstance(data, dict):
        return None
    try:
        record = TrainingRecord(**data)
    except TypeError:
        return None
    if not (isinstance(record.pid, int) and isinstance(record.name, str) and isinstance(record.request, dict)):
        return None
    if not isinstance(record.started, (int, float)) or "/" in record.name or record.name in ("", ".", ".."):
        return None
    return record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, OverflowError):
        return False
    try:  # a child of ours that ended but was not reaped yet (a zombie) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def summarize(events: list[ProgressEvent]) -> list[dict[str, Any]]:
    """Each step as it stands (its latest event), in the order the steps began, with the seconds it has left at
    the pace it has kept (None until it has a pace)."""
    first: dict[tuple[str, str], ProgressEvent] = {}
    latest: dict[tuple[str, str], ProgressEvent] = {}
    for event in events:
        key = (event.step, event.detail)
        first.setdefault(key, event)
        latest[key] = event
    steps = []
    for step, event in latest.items():
        start = first[step]
        pace = (event.time - start.time) / (event.done - start.done) if event.done > start.done else None
        left = round(pace * (event.total - event.done), 1) if pace is not None and event.done < event.total else None
        steps.append(
            {"step": event.step, "detail": event.detail, "done": event.done, "total": event.total, "left": left}
        )
    return steps


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

    def wait(self, timeout: float | None = None) -> None:
        """Until the check under way (if any) ends, at most `timeout` seconds."""
        if self.thread is not None:
            self.thread.join(timeout)

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
    return summary.answer if summary is not None else None
