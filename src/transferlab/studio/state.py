"""What the studio holds while it serves: the workspace and its journal, the checks, the one training, and the
models loaded for trying (`Studio`)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from transferlab.errors import UsageError
from transferlab.inference.serve import UploadPredictor
from transferlab.studio.jobs import Check, Training
from transferlab.studio.journal import JOURNAL, Journal
from transferlab.studio.workspace import Workspace, confined

log = logging.getLogger("transferlab")


class Studio:
    """The state behind the page: the workspace, its journal, the checks, the training and the loaded models."""

    def __init__(self, folder: str | Path, out: str | Path):
        self.out = Path(os.path.abspath(Path(out).expanduser()))
        self.predictors: dict[str, UploadPredictor] = {}
        self.open(folder)

    def open(self, folder: str | Path) -> None:
        """Work on `folder` (its journal recovered first)."""
        self.workspace = Workspace(folder)
        self.journal = Journal(self.workspace.home / JOURNAL, self.workspace.folder.parent)
        settled = self.journal.recover()
        for entry in settled:
            log.warning(
                "studio: a change cut short was settled: %s -> %s (%s)", entry.source, entry.target, entry.state
            )
        self.doctor = Check(self._diagnose)
        self.labels = Check(self._check_labels)
        self.training = Training(self.workspace.folder, self.out)

    def _diagnose(self) -> dict:
        from transferlab.curate.doctor import diagnose

        report = diagnose(self.workspace.folder, quiet=True)
        return json.loads(report.to_json())

    def _check_labels(self) -> dict:
        from transferlab.curate.label_issues import check_labels

        return check_labels(self.workspace.folder, quiet=True).as_dict()

    def findings(self) -> dict:
        """The doctor's report (its possible graphics confirmed or cleared by the label check once that is done),
        each finding with the photos it is about, and the label check's lists."""
        from transferlab.curate.doctor import DoctorReport, Finding

        report = self.doctor.result
        if report is not None and self.labels.result is not None:
            doctor = DoctorReport(**{**report, "findings": [Finding(**f) for f in report["findings"]]})
            doctor.confirm_graphics({i["path"] for i in self.labels.result["issues"] if i["kind"] == "outlier"})
            report = json.loads(doctor.to_json())
        if report is not None:
            for finding in report["findings"]:
                finding["photos"] = [p for line in finding["files"] for p in self._photos_of(line)]
        return {
            "doctor": {"status": self.doctor.status, "error": self.doctor.error, "report": report},
            "labels": {"status": self.labels.status, "error": self.labels.error, "check": self.labels.result},
        }

    def _photos_of(self, line: str) -> list[str]:
        """The photos a finding's line is about: "train/cat/x.jpg: 40x30" -> [train/cat/x.jpg]; a group of copies
        "a.jpg = b.jpg" -> both."""
        found = []
        for part in line.split(" = "):
            pieces = part.split(": ")
            for end in range(len(pieces), 0, -1):
                candidate = ": ".join(pieces[:end])
                if (self.workspace.folder / candidate).is_file():
                    found.append(candidate)
                    break
        return found

    def run_folder(self, name: str) -> Path:
        """A run or compare folder inside the runs folder."""
        path = confined(self.out, name)
        if not path.is_dir():
            raise UsageError(f"{name}: no such run")
        return path

    def predictor(self, name: str) -> UploadPredictor:
        """The model of run `name` (a compare folder: its recommended run), loaded once."""
        if name not in self.predictors:
            from transferlab.inference.predict import Classifier

            self.predictors[name] = UploadPredictor(Classifier.load(self.run_folder(name)))
        return self.predictors[name]
