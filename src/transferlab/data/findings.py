"""What is wrong with a photo folder, as data: one vocabulary of finding kinds shared by the doctor
(`curate.doctor`) and training's own check while decoding (`data.prepare`), and findings whose photos are paths.

A finding's items each name the photos they are about (paths relative to the folder, several for a group of copies)
and a detail ("40x30", "3 frames"); they become text only at the edges (the command line, the report), never to be
parsed back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

FindingKind = Literal[
    "layout",
    "unreadable",
    "leakage",
    "conflicting-labels",
    "duplicate",
    "imbalance",
    "twin-classes",
    "not-a-photo",
    "few-colours",
    "mostly-flat",
    "tiny",
    "small",
    "exif-rotated",
    "animated",
    "modes",
    "ignored",
    "shortcut",
]
FINDING_KINDS: tuple[FindingKind, ...] = get_args(FindingKind)
Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)

# What each kind of copy means, in the words the doctor and training's warning share.
COPY_PROBLEMS: dict[FindingKind, str] = {
    "leakage": "the same picture in train and val (inflates validation accuracy)",
    "conflicting-labels": "the same picture filed under different classes",
    "duplicate": "the same picture repeated within one class",
}


@dataclass(kw_only=True, frozen=True)
class Item:
    """What one line of a finding is about: its photos (relative to the folder) and a detail."""

    paths: tuple[str, ...]
    detail: str = ""

    def text(self) -> str:
        """The item as a line of text: "a.jpg = b.jpg", "x.jpg: 40x30"."""
        return " = ".join(self.paths) + (f": {self.detail}" if self.detail else "")


@dataclass(kw_only=True, frozen=True)
class CueTest:
    """A shortcut put to a model (`curate.cue_test`): its validation photos answered as they are, and with the cue
    hidden. `others`: the cue could only be added (black and white), so it was added to the other classes' photos
    and `before`/`after` are the shares of them answered as the class, without and with it."""

    how: str  # "the mark covered", "the frame cropped", "re-saved as JPEG (quality 90)", "turned black and white"
    photos: int
    before: float
    after: float
    others: bool = False

    def sentence(self, name: str) -> str:
        if self.others:
            return (f"the other classes' {self.photos} validation photos {self.how}: {self.after:.0%} answered "
                    f"'{name}' ({self.before:.0%} as they are)")  # fmt: skip
        return (f"its {self.photos} validation photos: {self.before:.0%} right as they are, {self.after:.0%} with "
                f"{self.how}")  # fmt: skip


@dataclass(kw_only=True)
class Finding:
    """One problem of the folder: its kind, how serious, a message, the photos it is about, and the files the
    quarantine would move for it."""

    kind: FindingKind
    severity: Severity
    message: str
    items: list[Item] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    class_name: str = ""  # the class a finding is about (a shortcut's), where it is about one
    cue_test: CueTest | None = None  # a shortcut's: does a model still answer without the cue?

    def photos(self) -> list[str]:
        """Every photo the finding is about, in order, each once."""
        return list(dict.fromkeys(p for item in self.items for p in item.paths))

    def lines(self) -> list[str]:
        return [item.text() for item in self.items]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items": [{"paths": list(i.paths), "detail": i.detail} for i in self.items]}


def item(path: str, detail: str = "") -> Item:
    """An item about one photo."""
    return Item(paths=(path,), detail=detail)
