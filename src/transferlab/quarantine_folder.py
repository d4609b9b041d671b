"""Quarantine: move the files the doctor flags out of the dataset (never delete), with a manifest saying why,
and put them back with `restore`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .doctor import DoctorReport
from .errors import RunNotFound

MANIFEST = "manifest.json"


def quarantine(report: DoctorReport, destination: str | Path) -> list[dict]:
    """Move every problem file into `destination` (same relative path), recording why in manifest.json."""
    root, destination = Path(report.root), Path(destination)
    manifest_path = destination / MANIFEST
    entries = json.loads(manifest_path.read_text())["moved"] if manifest_path.exists() else []
    moved = []
    for relative, reasons in sorted(report.problem_files().items()):
        source, target = root / relative, destination / relative
        if not source.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
        moved.append({"from": str(source.resolve()), "to": str(target.resolve()), "reasons": reasons})
    destination.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({"root": str(root.resolve()), "moved": entries + moved}, indent=2))
    return moved


def restore(destination: str | Path) -> tuple[list[str], list[str]]:
    """Put quarantined files back where they came from; returns (restored, left because the place is taken)."""
    manifest_path = Path(destination) / MANIFEST
    if not manifest_path.exists():
        raise RunNotFound(f"{manifest_path} not found: nothing to restore")
    manifest = json.loads(manifest_path.read_text())
    restored, left = [], []
    for entry in manifest["moved"]:
        source, target = Path(entry["to"]), Path(entry["from"])
        if target.exists() or not source.exists():
            left.append(entry["from"])
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
        restored.append(entry["from"])
    remaining = [e for e in manifest["moved"] if e["from"] in left]
    if remaining:
        manifest_path.write_text(json.dumps({**manifest, "moved": remaining}, indent=2))
    else:
        manifest_path.unlink()
    return restored, left
