"""What the studio holds while it serves: the workspace and its journal, the checks, the one training, and the
models loaded for trying (`Studio`)."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from transferlab.errors import UsageError
from transferlab.inference.serve import UploadPredictor
from transferlab.inference.web import Uploads
from transferlab.studio.inbox import Inbox
from transferlab.studio.jobs import Check, Training
from transferlab.studio.journal import JOURNAL, Journal
from transferlab.studio.live import LiveModel
from transferlab.studio.workspace import Workspace, confined

if TYPE_CHECKING:
    from transferlab.curate.doctor import DoctorReport
    from transferlab.curate.label_issues import LabelCheck
    from transferlab.data.findings import Finding

log = logging.getLogger("transferlab")
MODELS_KEPT = 2  # models loaded for Try at once (each holds its weights in memory)


class Studio:
    """The state behind the page: the workspace, its journal, the checks, the training and the loaded models."""

    def __init__(self, folder: str | Path, out: str | Path):
        self.out = Path(os.path.abspath(Path(out).expanduser()))
        self.lock = threading.Lock()
        self.uploads = Uploads()  # one set of bounds for every upload and thumbnail the studio decodes
        self.predictors: OrderedDict[Path, UploadPredictor] = OrderedDict()  # the last MODELS_KEPT, by run
        self.live: LiveModel | None = None  # started when the page first asks for it
        self.open(folder)

    def live_model(self) -> LiveModel:
        """The live model, its first fit started on first use (the page asks for it as it opens)."""
        with self.lock:
            if self.live is None:
                self.live = LiveModel(
                    lambda: self.workspace.folder, lambda: len(self.journal.entries()), self.uploads
                ).start()
            return self.live

    def changed(self) -> None:
        """The page changed the folder: the live model refits (its folder watch would notice, a second later)."""
        if self.live is not None:
            self.live.changed()

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
        self.shortcuts = Check(self._shortcuts)
        self.inbox = Inbox(self.workspace, self.journal)
        self.curves = Check(lambda: self.live_model().curves())
        self.training = Training(self.workspace.folder, self.out, self.workspace.home)

    def close(self, timeout: float = 300) -> None:
        """Stop the live model and let the work under way in threads end (the live fit, the checks, the Inbox's):
        a feature pass restores torch's global random state when it ends, under whatever else this process runs
        (the tests train in the same process next)."""
        if self.live is not None:
            self.live.stop()
            self.live.join(timeout)
        for job in (self.doctor, self.labels, self.shortcuts, self.curves, self.inbox.job, self.inbox.sharpen):
            job.wait(timeout)

    def _diagnose(self) -> DoctorReport:
        from transferlab.curate.doctor import diagnose

        return diagnose(self.workspace.folder, quiet=True)

    def _check_labels(self) -> LabelCheck:
        from transferlab.curate.label_issues import check_labels
        from transferlab.training.live import LIVE_BACKBONE

        # the live model's backbone: the label check reads the features the live model stored (no second pass)
        return check_labels(self.workspace.folder, backbone=LIVE_BACKBONE, quiet=True)

    def _shortcuts(self) -> list[Finding]:
        from transferlab.curate.shortcuts import folder_shortcuts

        return folder_shortcuts(self.workspace.folder)  # put to a model on the live model's stored features

    def findings(self) -> dict:
        """The doctor's report (its possible graphics confirmed or cleared by the label check once that is done),
        the shortcuts found, each finding with the photos it is about, and the label check's lists. The checks'
        results are read, never changed: a check finishing while this runs cannot spoil them."""
        report: DoctorReport | None = self.doctor.result
        check: LabelCheck | None = self.labels.result
        if report is not None and check is not None:
            report = report.with_graphics_judged({i.path for i in check.issues if i.kind == "outlier"})
        findings = None
        if report is not None:
            findings = {**report.as_dict(), "findings": self._listed(report.findings)}
        shortcuts: list[Finding] = self.shortcuts.result or []
        return {
            "doctor": {"status": self.doctor.status, "error": self.doctor.error, "report": findings},
            "shortcuts": {
                "status": self.shortcuts.status,
                "error": self.shortcuts.error,
                "findings": self._listed(shortcuts),
            },
            "labels": {
                "status": self.labels.status,
                "error": self.labels.error,
                "check": check.as_dict() if check is not None else None,
            },
        }

    def _listed(self, findings: list[Finding]) -> list[dict]:
        """Each finding with the photos it is about that are still photos of the folder."""
        return [{**f.as_dict(), "photos": [p for p in f.photos() if self._is_photo(p)]} for f in findings]

    def _is_photo(self, relative: str) -> bool:
        """Whether a finding's photo is still a photo of the folder (it may have moved since the check)."""
        try:
            self.workspace.photo(relative)
        except UsageError:
            return False
        return True

    def run_folder(self, name: str) -> Path:
        """A run or compare folder inside the runs folder."""
        path = confined(self.out, name)
        if not path.is_dir():
            raise UsageError(f"{name}: no such run")
        return path

    def run(self, name: str) -> Path:
        """The run that run or compare folder `name` stands for (a compare folder: its recommended run), resolved
        and confined to the runs folder like the name itself."""
        from transferlab.runs import resolve_run

        chosen = Path(os.path.realpath(resolve_run(self.run_folder(name))))
        if not chosen.is_relative_to(os.path.realpath(self.out)):
            raise UsageError(f"{name}: its recommended run points out of the runs folder: refused")
        return chosen

    def predictor(self, name: str) -> UploadPredictor:
        """The model of run `name` (a compare folder: its recommended run), loaded once; the last MODELS_KEPT kept."""
        run = self.run(name)
        if run in self.predictors:
            self.predictors.move_to_end(run)
            return self.predictors[run]
        from transferlab.inference.predict import Classifier

        predictor = UploadPredictor(Classifier.load(run), self.uploads)
        with self.lock:
            self.predictors[run] = predictor
            while len(self.predictors) > MODELS_KEPT:
                self.predictors.popitem(last=False)
        return predictor
