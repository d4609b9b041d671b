"""A compare or fit folder: its plan (compare.json), the cross-validated probes of `compare --cv` (cv.json), its
summary with the recommendation (summary.json), and the run it stands for (`resolve_run`, confined to the folder).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from transferlab.config import Strategy
from transferlab.errors import DamagedFile, RunNotFound
from transferlab.runs.run import META_FILE, SUMMARY_FILE, WEIGHTS_FILE
from transferlab.utils.storage import read_json, read_json_object, save_json

PLAN_FILE = "compare.json"
CV_FILE = "cv.json"
COMPARE_REMEDY = "rebuild it: `transferlab train --resume` on one of its runs writes the report and summary again"
FolderKind = Literal["compare", "fit"]


@dataclass(kw_only=True)
class ComparePlan:
    """compare.json: what a compare or fit folder set out to run (written when the folder is made, by
    `write_compare_plan`; read by `read_compare_plan`). A `fit` plans as it goes, within `budget_seconds`."""

    kind: FolderKind
    strategies: list[Strategy]
    backbones: list[str]
    seeds: int = 1
    batch_sizes: list[int] = field(default_factory=list)
    skipped_backbones: dict[str, str] = field(default_factory=dict)  # backbone -> why it was left out
    budget_seconds: float | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the TrainConfig the runs share, as saved


def write_compare_plan(folder: Path, plan: ComparePlan) -> None:
    save_json(asdict(plan), Path(folder) / PLAN_FILE)


def read_compare_plan(folder: str | Path) -> ComparePlan | None:
    """compare.json, or None in a folder that has none (not a compare or fit folder)."""
    path = Path(folder) / PLAN_FILE
    if not path.exists():
        return None
    data = read_json_object(path, COMPARE_REMEDY)
    data.setdefault("kind", "fit" if "budget_seconds" in data else "compare")  # written before it said so
    known = {f.name for f in dataclasses.fields(ComparePlan)}
    try:
        return ComparePlan(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        raise DamagedFile(path, "is damaged (a field is missing)", COMPARE_REMEDY) from None


def read_cross_validation(folder: str | Path) -> dict[str, Any]:
    """cv.json of a compare folder (compare --cv): backbone -> its probe's out-of-fold results ({} without)."""
    path = Path(folder) / CV_FILE
    data = read_json(path) if path.exists() else {}
    return data if isinstance(data, dict) else {}


def add_cross_validation(folder: Path, backbone: str, entry: dict[str, Any]) -> None:
    save_json({**read_cross_validation(folder), backbone: entry}, Path(folder) / CV_FILE)


def is_run_folder(path: Path) -> bool:
    """Whether `path` holds a run (its summary.json)."""
    return (Path(path) / SUMMARY_FILE).exists()


@dataclass(kw_only=True)
class CompareSummary:
    """summary.json of a compare folder: every cell's numbers and the recommendation, as data (written with the
    report by `write_compare_summary`, read by `read_compare_summary`; `resolve_run` follows it)."""

    cells: list[dict]  # per cell: label, backbone, strategy, batch_size, runs, accuracy, seconds
    recommendation: dict | None  # recommendation.Recommendation as a dict
    skipped_backbones: dict[str, str]  # backbone -> why it was left out
    cross_validation: list[dict] | None = None  # compare --cv: each backbone's probe over every image
    kind: FolderKind = "compare"

    @property
    def recommended_run(self) -> str | None:
        """The recommended run's folder name (inside the compare folder), None when nothing is recommended."""
        chosen = self.recommendation.get("recommended_run") if isinstance(self.recommendation, dict) else None
        return chosen if isinstance(chosen, str) else None

    @property
    def sentence(self) -> str | None:
        """The answer in one sentence (None when nothing is recommended)."""
        return self._text("sentence") or None

    @property
    def settle(self) -> str:
        """Where the evidence is thin, what would settle it ("" otherwise)."""
        return self._text("settle")

    @property
    def answer(self) -> str | None:
        """The sentence, and what would settle it, as one paragraph."""
        return " ".join(p for p in (self.sentence, self.settle) if p) or None

    def _text(self, key: str) -> str:
        value = self.recommendation.get(key) if isinstance(self.recommendation, dict) else None
        return value if isinstance(value, str) else ""


def write_compare_summary(compare_dir: Path, summary: CompareSummary) -> None:
    save_json(dataclasses.asdict(summary), Path(compare_dir) / SUMMARY_FILE)


def read_compare_summary(compare_dir: str | Path) -> CompareSummary | None:
    path = Path(compare_dir) / SUMMARY_FILE
    remedy = COMPARE_REMEDY
    data = read_json_object(path, remedy) if path.exists() else {}
    if data.get("kind") not in ("compare", "fit"):
        return None
    known = {f.name for f in dataclasses.fields(CompareSummary)}
    try:
        return CompareSummary(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        raise DamagedFile(path, "is damaged (a field is missing)", remedy) from None


def resolve_run(path: str | Path) -> Path:
    """A run folder as given, or for a compare folder, the first-seed run of its recommended cell."""
    path = Path(path)
    if (path / WEIGHTS_FILE).exists() or (path / META_FILE).exists():
        return path
    summary = read_compare_summary(path) if path.is_dir() else None
    if summary is not None and summary.recommendation:
        chosen = summary.recommended_run
        if chosen is None or not _stays_inside(path / chosen, path):
            raise DamagedFile(path / SUMMARY_FILE, "names no run of this folder as recommended", COMPARE_REMEDY)
        return path / chosen
    if summary is not None:
        raise RunNotFound(f"{path}: this comparison recommends no run (none finished?); name a run folder")
    return path  # load_checkpoint says what is missing


def _stays_inside(path: Path, folder: Path) -> bool:
    """Whether `path` is a folder inside `folder` once every symlink is resolved."""
    real = Path(os.path.realpath(path))
    return real.is_relative_to(os.path.realpath(folder)) and real != Path(os.path.realpath(folder))
