"""The studio's live model: always the model for the photos as they are (`training.live`), refitted in the
background after every change, whether made on the page (move, add, set aside, undo, new class, split) or in the
folder by another program (its folders' modification times are watched).

`LiveModel.state()` is what `GET /api/model` answers: "none" (no model: the folder cannot be trained on yet, and
why), "fitting" (a change is being taken in; the last fit's figures stay shown) or "ready", with how many journal
entries the fit reflects, its photos, cross-validated accuracy, per-class recall and age.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from transferlab.errors import TransferlabError, UsageError
from transferlab.inference.serve import UploadPredictor
from transferlab.inference.web import Uploads

if TYPE_CHECKING:
    from transferlab.training.curves import ClassCurve
    from transferlab.training.live import LiveFit, LiveFitter

log = logging.getLogger("transferlab")

Status = Literal["none", "fitting", "ready"]
POLL_SECONDS = 1.0  # how often the folder is looked at for changes made outside the page


def folder_signature(folder: Path) -> tuple:
    """The modification times of the folder and its class (and train/val) folders: a file added, removed or
    renamed in any of them changes one."""
    marks = []
    try:
        marks.append((folder.name, os.stat(folder).st_mtime_ns))
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith("."):
                marks.append((entry.name, entry.stat().st_mtime_ns))
                for inner in os.scandir(entry.path):
                    if inner.is_dir() and not inner.name.startswith("."):
                        marks.append((f"{entry.name}/{inner.name}", inner.stat().st_mtime_ns))
    except OSError:
        pass
    return tuple(sorted(marks))


NICENESS = 10  # the live model's thread, and the decoding processes and ONNX threads it starts


def lower_priority() -> None:
    """Run this thread (and what it starts) behind the page's requests: on Linux a nice value is per thread, so the
    thumbnails of a first page stay as quick while the first pass computes features for 20,000 photos."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
    except (AttributeError, OSError):  # not on this system: the same thread at the same priority
        pass


class LiveModel:
    """A background thread that refits the live model whenever the folder changes."""

    def __init__(self, folder: Callable[[], Path], journal: Callable[[], int], uploads: Uploads):
        self.folder, self.journal, self.uploads = folder, journal, uploads
        self.fit: LiveFit | None = None
        self.predictor: UploadPredictor | None = None
        self.error: str | None = None
        self.reflects = 0  # journal entries the current fit reflects
        self.fitted_at: float | None = None
        self._wanted, self._done = 1, 0  # change counter: asked for, taken in
        self._changed = threading.Condition()
        self._stop = False
        self._fitter: LiveFitter | None = None
        self._thread = threading.Thread(target=self._loop, name="live-model", daemon=True)

    def start(self) -> LiveModel:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify()

    def join(self, timeout: float | None = None) -> None:
        """Until the thread ends (after `stop`: at most the fit under way), at most `timeout` seconds."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def changed(self) -> None:
        """Something in the folder changed: refit (at once if idle, else right after the fit under way)."""
        with self._changed:
            self._wanted += 1
            self._changed.notify()

    @property
    def status(self) -> Status:
        if self._wanted != self._done:
            return "fitting"
        return "ready" if self.fit is not None else "none"

    def state(self) -> dict:
        fit = self.fit
        about = {"status": self.status, "journal": self.reflects, "error": self.error}
        if fit is None:
            return {**about, "photos": 0, "accuracy": None, "classes": []}
        return {
            **about,
            "photos": fit.photos,
            "accuracy": fit.accuracy,
            "folds": fit.folds,
            "seconds": round(fit.seconds, 3),
            "probe_seconds": round(fit.probe_seconds, 3),
            "searched": fit.searched,
            "age_seconds": round(time.time() - (self.fitted_at or time.time()), 1),
            "backbone": fit.classifier.meta.backbone,
            "classes": [
                {"name": name, "photos": count, "recall": recall}
                for name, count, recall in zip(fit.classes, fit.counts, fit.recall)
            ],
        }

    def curves(self) -> list[ClassCurve]:
        """The live model's learning curves, class by class (UsageError before its first fit)."""
        if self._fitter is None:
            raise UsageError("no live model yet: its learning curves come after its first fit")
        return self._fitter.curves()

    def _loop(self) -> None:
        lower_priority()
        seen = None
        while True:
            with self._changed:
                if self._stop:
                    return
                if self._wanted == self._done:
                    self._changed.wait(POLL_SECONDS)
                if self._stop:
                    return
            signature = folder_signature(self.folder())
            if signature != seen:
                if seen is not None:
                    self.changed()  # changed outside the page (or by it: a second fit finds nothing new)
                seen = signature
            with self._changed:
                wanted = self._wanted
            if wanted == self._done:
                continue
            self._refit(wanted)
            seen = folder_signature(self.folder())

    def _refit(self, wanted: int) -> None:
        reflects = self.journal()
        try:
            if self._fitter is None:
                from transferlab.training.live import LiveFitter

                self._fitter = LiveFitter()
            fit = self._fitter.fit(self.folder())
            self.predictor = UploadPredictor(fit.classifier, self.uploads)
            self.fit, self.error, self.fitted_at, self.reflects = fit, None, time.time(), reflects
            log.info("live model: %d photos, %.1f%% held out, %.2f s", fit.photos, 100 * fit.accuracy, fit.seconds)
        except TransferlabError as error:  # the folder cannot be trained on yet (one class, too few photos, ...)
            self.fit, self.predictor, self.error, self.reflects = None, None, str(error), reflects
        except Exception as error:  # noqa: BLE001 - the page says so; the studio goes on
            log.exception("live model: the fit failed")
            self.error = f"the live model could not be fitted: {error}"
        finally:
            with self._changed:
                self._done = wanted
