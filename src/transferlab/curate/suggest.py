"""Sorting a pile: the class each unsorted photo most likely belongs to, learned from the photos already sorted.

`suggest` reads every photo's frozen features (the evaluation view, as the live model and `predict` see a photo)
of each backbone from the per-photo store: only photos with new bytes are decoded and passed through a network, and
a round whose photos all have their vectors never imports torch (`training.stored_features`). The pile is scored by
`pile_model`: a ridge classifier on the labelled photos and the labels spread along the pile's own neighbours, on
the three EfficientNet-Lites' features side by side by default (each photo passes through three networks once; the
studio's Inbox starts from the live model's one, whose features it already has). A class the person rejected for a photo
is never suggested for it again (its probability becomes 0, the rest renormalised: what the person said, taken as
evidence). Each photo also says whether it looks like none of the classes: farther from its nearest labelled
photos than 95% of the labelled photos are from theirs.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from transferlab.config import DataConfig
from transferlab.curate.pile_model import looks_unknown, pile_probabilities, unit_rows
from transferlab.data.images import is_image_file
from transferlab.errors import DatasetError, UsageError

PAGE = 30  # photos a page of suggestions shows
FIRST = 12  # photos "label these first" names
SUGGEST_BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")  # ImageNet weights offline
MOST_LABELLED = 1000  # labelled photos a round learns from at most (evenly per class): the ridge 0.4 s, at 2,000 1.6 s


@dataclass(frozen=True, kw_only=True)
class Suggestion:
    """One pile photo: the class suggested for it and how sure."""

    path: Path
    suggested: str  # the most probable class not rejected for this photo
    probability: float
    probabilities: list[float]  # per class (`PileSuggestions.classes`); 0 for a class rejected for it
    unknown: bool  # looks like none of the classes


@dataclass(frozen=True, kw_only=True)
class PileSuggestions:
    """Suggestions for a pile, most probable first within each suggested class."""

    classes: list[str]
    photos: list[Suggestion]
    labelled: int  # labelled photos the suggestions learned from
    skipped: list[tuple[Path, str]]  # pile photos that could not be read, and why
    decoded: int  # photos decoded for this call (new bytes)
    seconds: float
    backbones: list[str]  # whose features, side by side

    def page(self, cls: str, size: int = PAGE) -> list[Suggestion]:
        """The first page of photos suggested as `cls`: the most probable first, photos that look like none of the
        classes after the rest."""
        chosen = [s for s in self.photos if s.suggested == cls]
        return sorted(chosen, key=lambda s: (s.unknown, -s.probability))[:size]

    def first_to_label(self, count: int = FIRST) -> list[Suggestion]:
        """The photos whose labels would teach the model most (margin sampling): the least sure suggestions, those
        with the smallest gap between their two most probable classes."""

        def gap(s: Suggestion) -> float:
            top = sorted(s.probabilities, reverse=True)
            return top[0] - (top[1] if len(top) > 1 else 0.0)

        return sorted(self.photos, key=gap)[:count]


def pile_files(pile: str | Path) -> list[Path]:
    """Every image file under `pile` (searched recursively; hidden files and folders skipped)."""
    from transferlab.data.layout import files_below

    root = Path(pile).expanduser()
    if not root.is_dir():
        raise UsageError(f"{root}: {'not a folder' if root.exists() else 'no such folder'} (the photos to sort)")
    return [path for path in files_below(root) if is_image_file(path)]


def suggest(
    photos: str | Path,
    pile: str | Path,
    *,
    rejected: Mapping[Path, Collection[str]] | None = None,
    backbones: Sequence[str] = SUGGEST_BACKBONES,
    if_stored: Sequence[str] = (),
    workers: int | None = None,
    quiet: bool = False,
) -> PileSuggestions:
    """Suggest a class for every photo of `pile` from the labelled photos of `photos` (class folders, or train/ and
    val/), on the features of `backbones` side by side, and of each of `if_stored` whose vectors every photo has
    in the store already (never computed here: the studio's Inbox). `rejected` maps a pile photo to the classes the
    person said it is not."""
    start = time.perf_counter()
    classes, labelled, files = _listing(photos, pile, [*backbones, *if_stored])
    background = DataConfig(root=str(photos)).background
    found = _features([path for path, _ in labelled] + files, backbones, background, workers=workers, quiet=quiet,
                      if_stored=if_stored)  # fmt: skip
    lab = [i for i in range(len(labelled)) if i in found.rows]
    y_all = np.array([labelled[i][1] for i in lab], dtype=np.int64)
    lab = [lab[i] for i in _evenly(y_all, MOST_LABELLED)]
    pile_rows = [i for i in range(len(labelled), len(labelled) + len(files)) if i in found.rows]
    if not lab or not pile_rows:
        raise DatasetError(
            f"{photos}: no labelled photo could be read" if not lab else f"{pile}: no photo could be read"
        )
    y_lab = np.array([labelled[i][1] for i in lab], dtype=np.int64)
    x_lab = [block[[found.rows[i] for i in lab]] for block in found.blocks]
    x_pile = [block[[found.rows[i] for i in pile_rows]] for block in found.blocks]
    probabilities = pile_probabilities(x_lab, y_lab, x_pile, len(classes))
    unit = [np.concatenate([unit_rows(b) for b in blocks], 1) for blocks in (x_lab, x_pile)]
    strangers = looks_unknown(unit[0], unit[1])
    paths = [files[i - len(labelled)] for i in pile_rows]
    photos_out = _suggestions(classes, paths, probabilities, strangers, rejected or {})
    skipped = [(files[i - len(labelled)], why) for i, why in sorted(found.skipped.items()) if i >= len(labelled)]
    return PileSuggestions(
        classes=classes, photos=photos_out, labelled=len(lab), skipped=skipped, decoded=found.decoded,
        seconds=time.perf_counter() - start, backbones=found.backbones,
    )  # fmt: skip


def store_pile_features(
    photos: str | Path, pile: str | Path, backbones: Sequence[str], *, workers: int | None = None, quiet: bool = True
) -> None:
    """Compute and store the vectors of `backbones` that the photos of `photos` and `pile` lack (the studio's Inbox
    does it in the background while the person reads a page)."""
    _, labelled, files = _listing(photos, pile, backbones)
    background = DataConfig(root=str(photos)).background
    _features([p for p, _ in labelled] + files, backbones, background, workers=workers, quiet=quiet)


def _listing(
    photos: str | Path, pile: str | Path, backbones: Sequence[str]
) -> tuple[list[str], list[tuple[Path, int]], list[Path]]:
    """The classes, the labelled photos with their labels, and the pile's photos (those of `photos` left out);
    the backbones' names checked."""
    from transferlab.data.layout import class_files
    from transferlab.models.backbones import AUTO, get_spec

    if not backbones or AUTO in backbones:
        raise UsageError("suggest needs backbones named, e.g. efficientnet_lite0 (see `transferlab backbones`)")
    for name in backbones:
        get_spec(name)  # an unknown name: one line naming the known ones
    root = Path(photos).expanduser()
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise DatasetError(f"{root}: {what} (the labelled photos: class folders, or train/ and val/)")
    train, val, _, _ = class_files(root)
    classes = sorted(train)
    labelled = [(path, label) for label, name in enumerate(classes) for folder in (train, val or {})
                for path in folder.get(name, [])]  # fmt: skip
    known = {path.resolve() for path, _ in labelled}
    files = [p for p in pile_files(pile) if p.resolve() not in known]  # a pile inside the folder: its sorted photos
    if not files:
        raise DatasetError(f"{pile}: no photos to sort (looked for image files in it and below)")
    return classes, labelled, files


def _evenly(labels: np.ndarray, most: int) -> list[int]:
    """At most `most` of the rows, each class's share as in `labels`, the first of each class (all when fewer)."""
    if len(labels) <= most:
        return list(range(len(labels)))
    chosen = []
    for cls in np.unique(labels):
        mine = np.flatnonzero(labels == cls)
        chosen += mine[: max(1, round(most * len(mine) / len(labels)))].tolist()
    return sorted(chosen)


@dataclass(frozen=True, kw_only=True)
class _Found:
    """Each backbone's vectors of the photos that could be read: `blocks[b][rows[i]]` is photo i's."""

    blocks: list[np.ndarray]
    rows: dict[int, int]
    skipped: dict[int, str]  # photo index -> why it could not be read
    decoded: int
    backbones: list[str]  # whose vectors the blocks are


def _features(
    paths: list[Path],
    backbones: Sequence[str],
    background: tuple[int, int, int],
    *,
    workers: int | None,
    quiet: bool,
    if_stored: Sequence[str] = (),
) -> _Found:
    """Every photo's evaluation-view vector for each of `backbones`: read from the store, the missing ones computed
    (then the network is loaded) and stored; and for each of `if_stored` whose vectors are all stored."""
    from transferlab.models.backbones import get_spec
    from transferlab.store import open_store
    from transferlab.training.stored_features import (
        eval_space,
        remembered_identity,
        stored_vectors,
        unreadable_reasons,
    )

    store = open_store()
    keys = store.keys(paths)
    skipped = {i: "cannot be read" for i, key in enumerate(keys) if key is None}
    vectors: list[list[np.ndarray | None]] = []
    used: list[str] = []
    decoded = 0
    for name in [*backbones, *if_stored]:
        spec = get_spec(name)
        identity = remembered_identity(store, spec)
        rows: list[np.ndarray | None] = [None] * len(paths)
        if identity:
            rows = stored_vectors(store, eval_space(identity, spec, background), keys, spec.feature_dim)
        reasons = unreadable_reasons(store, spec, background, keys)
        missing = [i for i, row in enumerate(rows) if row is None and reasons[i] is None and i not in skipped]
        if missing and name in if_stored:
            continue  # not all stored: left out this round
        for i, reason in enumerate(reasons):
            if reason is not None and rows[i] is None:
                skipped.setdefault(i, reason)
        if missing:
            from transferlab.training.features import store_eval_features

            found = store_eval_features([paths[i] for i in missing], name, background, workers=workers, quiet=quiet)
            decoded += found.decoded
            where = {path: row for row, path in enumerate(found.paths)}
            why = dict(found.skipped)
            for i in missing:
                if paths[i] in where:
                    rows[i] = found.features[where[paths[i]]].numpy()
                else:
                    skipped[i] = why.get(paths[i], "cannot be read")
        vectors.append(rows)
        used.append(name)
    kept = [i for i in range(len(paths)) if i not in skipped]
    blocks = [np.stack([cast(np.ndarray, rows[i]) for i in kept]) if kept else np.zeros((0, 1)) for rows in vectors]
    return _Found(
        blocks=blocks, rows={i: r for r, i in enumerate(kept)}, skipped=skipped, decoded=decoded, backbones=used
    )


def _suggestions(classes, pile_paths, probabilities, strangers, rejected) -> list[Suggestion]:
    """Each pile photo's suggestion, rejected classes at 0 and the rest renormalised, grouped by class."""
    said = {Path(p).resolve(): set(c) for p, c in rejected.items()}
    photos_out = []
    for path, p, stranger in zip(pile_paths, probabilities, strangers):
        refused = said.get(path.resolve(), set())
        p = np.where([c in refused for c in classes], 0.0, p)
        p = p / p.sum() if p.sum() > 0 else np.full(len(classes), 1.0 / len(classes))
        best = int(np.argmax(p))
        photos_out.append(
            Suggestion(
                path=path,
                suggested=classes[best],
                probability=float(p[best]),
                probabilities=[float(v) for v in p],
                unknown=bool(stranger),
            )  # fmt: skip
        )
    photos_out.sort(key=lambda s: (classes.index(s.suggested), s.unknown, -s.probability))
    return photos_out
