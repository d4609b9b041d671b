"""Where long work stands, for a page that started it in another process (the studio's Train view).

When the environment names a file (`TRANSFERLAB_PROGRESS`, set by the studio for the training it starts), each
step of the work appends one line to it as it goes: decoding N photos, features per backbone, the probe, training
epochs, evaluation. A step reports at most twice a second (and always at its start and end), so the file stays
small; lines are appended whole (one `write` of a short line), so a reader never sees half of one. Without the
variable, `report` does nothing. `ProgressEvent` is the line's one writer (`report`) and one reader
(`read_progress`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

ENV = "TRANSFERLAB_PROGRESS"
Step = Literal["decoding", "features", "probe", "training", "evaluation"]
STEPS: tuple[Step, ...] = get_args(Step)
EVERY = 0.5  # seconds between two lines of the same step
_last: dict[tuple[str, str], float] = {}


@dataclass(kw_only=True, frozen=True)
class ProgressEvent:
    """One step's progress: `done` of `total` (photos, images, epochs; 0 of 1 for a step without parts) at `time`."""

    step: Step
    detail: str  # what the step works on: a backbone, a split, a run
    done: int
    total: int
    time: float


def report(step: Step, detail: str, done: int, total: int) -> None:
    """Append where `step` stands to the progress file named by the environment, if any (throttled)."""
    path = os.environ.get(ENV)
    if not path:
        return
    now = time.time()
    key = (step, detail)
    if 0 < done < total and now - _last.get(key, 0.0) < EVERY:
        return
    _last[key] = now
    line = json.dumps(asdict(ProgressEvent(step=step, detail=detail, done=done, total=total, time=now))) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line)
    except OSError:
        pass  # progress is for the eyes only: never a reason to stop the work


class Tracked:
    """A terminal progress bar (tqdm, off when `quiet`) whose count also goes to the progress file as `step`."""

    def __init__(self, step: Step, detail: str, total: int, quiet: bool, **bar: Any):
        from tqdm.auto import tqdm

        self.step, self.detail, self.total, self.done = step, detail, total, 0
        self.bar = tqdm(total=total, disable=quiet, desc=step, leave=False, **bar)
        report(step, detail, 0, total)

    def update(self, n: int) -> None:
        self.done += n  # counted here: a disabled bar counts nothing
        self.bar.update(n)
        report(self.step, self.detail, self.done, self.total)

    def close(self) -> None:
        self.bar.close()


def read_progress(path: str | Path) -> list[ProgressEvent]:
    """Every whole line of a progress file (a torn or foreign one skipped), oldest first."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            record = json.loads(line)
            event = ProgressEvent(**record)
        except (ValueError, TypeError):
            continue
        if event.step in STEPS and all(isinstance(v, (int, float)) for v in (event.done, event.total, event.time)):
            events.append(event)
    return events
