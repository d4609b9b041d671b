"""Quarantine: move the files the doctor flags out of the dataset (never delete, never overwrite), with a manifest
saying why, and put them back with `restore`.

Every move is recorded in `manifest.json` as it happens (written atomically after each one), so a crash midway can
still be restored. A file whose name is taken in the quarantine folder (two datasets quarantined into one folder)
gets a unique name; `restore` puts each file back exactly where it came from, and never over an existing file. A
quarantine folder inside the dataset is refused, and nothing outside the dataset (a symlinked class folder) moves.
"""

from __future__ import annotations

import os
from pathlib import Path

from transferlab.curate.doctor import DoctorReport
from transferlab.errors import DamagedFile, RunNotFound, UsageError
from transferlab.utils.storage import read_json_object, save_json

MANIFEST = "manifest.json"


def quarantine(report: DoctorReport, destination: str | Path) -> list[dict]:
    """Move every problem file into `destination` (its path relative to the dataset, or a free name beside it),
    recording each move and why in manifest.json."""
    root, destination = Path(report.root).resolve(), Path(destination).resolve()
    if destination == root or root in destination.parents:
        raise UsageError(f"the quarantine folder {destination} is inside the dataset {root}: choose one outside it")
    manifest_path = destination / MANIFEST
    entries = _moved(manifest_path) if manifest_path.exists() else []
    destination.mkdir(parents=True, exist_ok=True)
    moved = []
    for relative, reasons in sorted(report.problem_files().items()):
        source = root / relative
        if not source.is_file() or root not in source.resolve().parents:  # gone, or outside the dataset
            continue
        target = free_name(destination / relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        move_file(source, target)
        moved.append({"from": str(source), "to": str(target), "reasons": reasons})
        save_json({"moved": entries + moved}, manifest_path)  # after each move: a crash loses none
    return moved


def restore(destination: str | Path) -> tuple[list[str], list[str]]:
    """Put quarantined files back where they came from; returns (restored, left: place taken or file gone)."""
    manifest_path = Path(destination) / MANIFEST
    if not manifest_path.exists():
        raise RunNotFound(f"{manifest_path} not found: nothing to restore")
    remaining = _moved(manifest_path)
    restored, left = [], []
    for entry in list(remaining):
        source, target = Path(entry["to"]), Path(entry["from"])
        if target.exists() or not source.exists():
            left.append(entry["from"])
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        move_file(source, target)
        restored.append(entry["from"])
        remaining.remove(entry)
        save_json({"moved": remaining}, manifest_path)
    if not remaining:
        manifest_path.unlink()
    return restored, left


def _moved(manifest: Path) -> list[dict]:
    """The moves a manifest records; a damaged manifest is a `DamagedFile` (the files are still in the folder)."""
    remedy = "the quarantined files are still there, but where each came from is lost: move them back by hand"
    data = read_json_object(manifest, remedy)
    moved = data.get("moved")
    if not isinstance(moved, list) or not all(isinstance(e, dict) and {"from", "to"} <= set(e) for e in moved):
        raise DamagedFile(manifest, "is damaged (its list of moves is missing or malformed)", remedy)
    return moved


def free_name(path: Path) -> Path:
    """`path`, or `name (2).ext`, `name (3).ext`, ... whichever does not exist yet."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
    return candidate


def move_file(source: Path, target: Path) -> None:
    """Move a file without ever replacing one: a hard link fails if the target exists (then the source goes);
    across file systems, copy to the target exclusively, then remove the source."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:  # another file system, or links not allowed
        with open(source, "rb") as reading, open(target, "xb") as writing:
            writing.write(reading.read())
    os.unlink(source)
