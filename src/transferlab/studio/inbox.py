"""The studio's Inbox: the unsorted photos of `FOLDER/_unsorted/` (searched recursively), suggested a class each
from the photos already sorted (`curate.suggest`: first on the live model's stored features, then, once the other
networks' features are computed in the background, on the three of the command), shown a page per class,
most probable first. The person unticks the wrong ones and accepts the rest of the page in one click: each accepted
photo is a journaled move (undoable as any move), and each unticked one records that class as rejected for it, so
it is never offered for it again (`rejected.csv` beside the journal: `path,class` rows, paths relative to the
folder). Suggestions are computed again after every accepted page, as the live model refits.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferlab.curate.suggest import pile_files
from transferlab.data.images import PILE_DIR
from transferlab.errors import UsageError
from transferlab.studio.jobs import Check

if TYPE_CHECKING:
    from transferlab.curate.suggest import PileSuggestions
    from transferlab.studio.journal import Entry, Journal
    from transferlab.studio.workspace import Workspace

REJECTED = "rejected.csv"


class Inbox:
    """The pile's suggestions (a job in a thread), the person's rejections, and accepting a page."""

    def __init__(self, workspace: Workspace, journal: Journal):
        self.workspace, self.journal = workspace, journal
        self.path = workspace.home / REJECTED
        self.lock = threading.Lock()
        self.rejected = self._read()
        self.job = Check(self._suggest)
        self.sharpen = Check(self._sharpen)  # the other networks' features, while the person reads a page
        self.again = False  # the folder changed while suggestions were being made: make them again

    def refresh(self) -> None:
        """Suggest again (after the job under way, if one is)."""
        self.again = True
        self.job.start()

    @property
    def pile(self) -> Path:
        return self.workspace.folder / PILE_DIR

    def _read(self) -> dict[str, set[str]]:
        """rejected.csv as {path relative to the folder: classes}; a line of another shape is skipped."""
        rejected: dict[str, set[str]] = {}
        try:
            with open(self.path, newline="", encoding="utf-8") as handle:
                for row in csv.reader(handle):
                    if len(row) == 2 and row[0] and row[1]:
                        rejected.setdefault(row[0], set()).add(row[1])
        except (OSError, UnicodeDecodeError, csv.Error):
            pass  # none yet, or unreadable: nothing rejected is remembered
        return rejected

    def _write(self, rows: list[tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows(rows)

    def _suggest(self) -> PileSuggestions | None:
        """The pile's suggestions from the live model's network (its features are the studio's already) and each of
        the command's other networks whose features every photo has; the ones missing are computed in the
        background (`sharpen`) for the rounds after this one: the page never changes under the person's hands."""
        from transferlab.curate.suggest import SUGGEST_BACKBONES, suggest
        from transferlab.training.live import LIVE_BACKBONE

        others = [name for name in SUGGEST_BACKBONES if name != LIVE_BACKBONE]
        while True:
            self.again = False
            if not self.pile.is_dir() or not pile_files(self.pile):
                return None
            with self.lock:
                said = {self.workspace.folder / p: set(c) for p, c in self.rejected.items()}
            found = suggest(
                self.workspace.folder, self.pile, rejected=said, backbones=[LIVE_BACKBONE], if_stored=others,
                quiet=True,
            )  # fmt: skip
            if not self.again:
                if len(found.backbones) < len(SUGGEST_BACKBONES):
                    self.sharpen.start()
                return found

    def _sharpen(self) -> None:
        from transferlab.curate.suggest import SUGGEST_BACKBONES, store_pile_features
        from transferlab.studio.live import lower_priority

        lower_priority()  # behind the page's requests, as the live model's thread
        store_pile_features(self.workspace.folder, self.pile, SUGGEST_BACKBONES)

    def _how(self, found: PileSuggestions | None) -> str:
        from transferlab.curate.suggest import SUGGEST_BACKBONES

        if found is None:
            return ""
        networks = f"{len(found.backbones)} network{'s' if len(found.backbones) > 1 else ''}"
        if self.sharpen.status == "running":
            return (
                f"from {networks}; sharper ones ({len(SUGGEST_BACKBONES)} networks) from the next page on: "
                "computing their features"
            )
        return f"from {networks}"

    def state(self, size: int) -> dict[str, Any]:
        """The job's status and, once it finished, each class's page of up to `size` photos, and the photos to
        label first (the least sure: sorted by hand, each teaches the model most)."""
        found: PileSuggestions | None = self.job.result if self.job.status == "finished" else None
        pages = []
        if found is not None:
            for name in found.classes:
                page = [s for s in found.page(name, size) if s.path.is_file()]  # accepted meanwhile: gone
                pages.append({"name": name, "photos": [
                    {"path": self.workspace.relative(s.path), "probability": s.probability, "unknown": s.unknown}
                    for s in page
                ]})  # fmt: skip
        first = [s for s in found.first_to_label() if s.path.is_file()] if found is not None else []
        return {
            "status": self.job.status,
            "error": self.job.error,
            "how": self._how(found),
            "sharpening": self.sharpen.status == "running",
            "unsorted": len(pile_files(self.pile)) if self.pile.is_dir() else 0,
            "pages": pages,
            "first": [{"path": self.workspace.relative(s.path), "suggested": s.suggested} for s in first],
        }

    def accept(self, cls: str, accepted: list[str], rejected: list[str], new: bool = False) -> list[Entry]:
        """Move the `accepted` pile photos into class `cls` (journaled; with `new`, a class made for them) and
        remember `cls` as rejected for the `rejected` ones. Every path is checked before anything moves or is made:
        each must be a photo of the pile."""
        target = self.workspace.class_dir(cls, "train" if self.workspace.split_dirs() else "all")
        if new and target.exists():
            raise UsageError(f"class '{cls}' exists already: accept the photos into it")
        if not new and not target.is_dir():
            raise UsageError(f"no class '{cls}'")
        photos = [self._pile_photo(p) for p in accepted]
        if new and not photos:
            raise UsageError("a new class needs at least one ticked photo")
        unticked = [self._pile_photo(p) for p in rejected]
        if set(photos) & set(unticked):
            raise UsageError("a photo cannot be both accepted and rejected")
        refused = [str(self.workspace.relative(p)) for p in unticked]
        with self.lock:
            fresh = [(p, cls) for p in refused if cls not in self.rejected.get(p, set())]
            for path, name in fresh:
                self.rejected.setdefault(path, set()).add(name)
            self._write(fresh)
        if new:
            self.workspace.create_class(cls)
        return [self.journal.move(p, target / p.name, "move", f"inbox: accepted as {cls}") for p in photos]

    def _pile_photo(self, relative: str) -> Path:
        photo = self.workspace.photo(relative)
        if not photo.is_relative_to(self.pile.resolve()):
            raise UsageError(f"{relative}: not a photo of {PILE_DIR}/")
        return photo
