"""The studio's journal: every change to the photo folder, written before and after it happens, so a kill at any
moment leaves every photo either where it was or journaled where it went.

Changes are made one at a time (a lock): a second request to move, undo or set aside a photo that the first has
just moved finds it gone and gets a `Conflict` (409), and a change that fails after its `begin` is journaled as
`abandoned` before the request answers, so no `begin` is left open. A line of the wrong shape (a hand edit, another
version) is skipped with a warning; a reason is kept to `MAX_REASON` characters.

A change is a move (to another class, or set aside into the quarantine folder) or an added photo. Each is appended
to `journal.jsonl` as `begin` (fsynced) before the file moves, and as `done` after; `recover` (run when the studio
starts) settles a change that began and never ended by looking at the disk: a move whose target exists was made (its
source is removed if a hard link left both), one whose source is still alone never happened. Moves never overwrite
(`quarantine.move_file`); `undo` moves a file back only to a free place, and is journaled like any move.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import TypeAdapter

from transferlab.curate.quarantine import free_name, move_file
from transferlab.errors import Conflict, UsageError

log = logging.getLogger("transferlab")
JOURNAL = "journal.jsonl"
MAX_REASON = 500
Kind = Literal["move", "aside", "add", "undo"]
State = Literal["begin", "done", "abandoned", "undone"]


@dataclass(kw_only=True)
class Entry:
    """One change: what moved from where to where, why, and how it ended."""

    id: str
    kind: Kind
    source: str  # relative to the studio's root (the parent of the photo folder and the quarantine folder)
    target: str
    reason: str = ""
    state: State = "begin"
    time: float = field(default_factory=time.time)
    undoes: str | None = None  # an undo: the entry it reverses


_ENTRY = TypeAdapter(Entry)


def _read_entry(line: str) -> Entry:
    """A journal line as an Entry, its every field of the right type (ValueError otherwise)."""
    try:
        entry = _ENTRY.validate_json(line, strict=True)
    except Exception as error:  # noqa: BLE001 - pydantic's ValidationError: the line is of another shape
        raise ValueError(str(error)) from None
    for path in (entry.source, entry.target):
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise ValueError(f"a path out of the studio's folder: {path}")
    return entry


class Journal:
    """The journal of one photo folder. `root` holds every path it records (they are written relative to it)."""

    def __init__(self, path: Path, root: Path):
        self.path, self.root = path, root
        self.lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def entries(self) -> list[Entry]:
        """Every change, newest state of each, oldest first; a line a crash cut short is skipped."""
        latest: dict[str, Entry] = {}
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        damaged = 0
        for number, line in enumerate(lines, 1):
            try:
                entry = _read_entry(line)
            except ValueError:
                damaged += number < len(lines)  # a torn last line (killed while appending) was never begun on disk
                continue
            latest[entry.id] = entry
        if damaged:
            log.warning(
                "%s: %d damaged line(s) skipped (torn, or of another shape): their changes cannot be undone here",
                self.path,
                damaged,
            )
        return list(latest.values())

    def move(self, source: Path, target: Path, kind: Kind, reason: str = "", undoes: str | None = None) -> Entry:
        """Move `source` to `target` (or a free name beside it), journaled before and after. A source that another
        change moved away meanwhile is a Conflict; a move that fails is journaled as abandoned."""
        with self.lock:
            if not source.is_file():
                raise Conflict(f"{self._rel(source)} was changed by another request meanwhile: look again")
            target = free_name(target)
            entry = Entry(
                id=uuid.uuid4().hex[:12],
                kind=kind,
                source=self._rel(source),
                target=self._rel(target),
                reason=reason[:MAX_REASON],
                undoes=undoes,
            )
            self._append(entry)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                move_file(source, target)
            except OSError as error:
                entry.state = "done" if target.exists() and not source.exists() else "abandoned"
                self._append(entry)
                if entry.state == "abandoned":
                    raise Conflict(f"cannot move {entry.source}: {error.strerror or error}") from None
                return entry
            entry.state = "done"
            self._append(entry)
            return entry

    def added(self, target: Path, reason: str) -> Entry:
        """Record a photo written into the folder (by upload or webcam); it was written under a temporary name and
        renamed into place before this is called."""
        with self.lock:
            entry = Entry(
                id=uuid.uuid4().hex[:12],
                kind="add",
                source="",
                target=self._rel(target),
                reason=reason[:MAX_REASON],
                state="done",
            )
            self._append(entry)
            return entry

    def undo(self, entry_id: str, aside: Path) -> Entry:
        """Reverse entry `entry_id`: a move goes back to its source (if that place is free), an added photo is set
        aside into `aside` (never deleted). One undo at a time: a second undo of the same change is a Conflict."""
        with self.lock:
            entry = next((e for e in self.entries() if e.id == entry_id), None)
            if entry is not None and entry.state == "undone":
                raise Conflict(f"change {entry_id} is undone already")
            if entry is None or entry.state != "done":
                raise UsageError(f"nothing to undo: change {entry_id} is not a finished change")
            target = self.root / entry.target
            if not target.is_file():
                raise Conflict(f"cannot undo: {entry.target} is no longer there")
            if entry.kind == "add":
                back = self.move(target, aside / entry.target, "undo", f"undo: added {entry.target}", undoes=entry.id)
            else:
                source = self.root / entry.source
                if os.path.lexists(source):
                    raise Conflict(f"cannot undo: {entry.source} is taken by another file")
                back = self.move(target, source, "undo", f"undo: {entry.reason}", undoes=entry.id)
            entry.state = "undone"
            self._append(entry)
            return back

    def recover(self) -> list[Entry]:
        """Settle every change that began and never ended (the studio was killed during it); returns them."""
        settled = []
        for entry in self.entries():
            if entry.state != "begin":
                continue
            source, target = self.root / entry.source, self.root / entry.target
            if target.exists() and source.exists() and os.path.samefile(source, target):
                os.unlink(source)  # killed between the hard link and removing the source
            entry.state = "done" if target.exists() else "abandoned"
            with self.lock:
                self._append(entry)
            settled.append(entry)
        return settled

    def _rel(self, path: Path) -> str:
        return str(Path(os.path.abspath(path)).relative_to(self.root))

    def _append(self, entry: Entry) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(entry)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
