"""Shortcuts: cues that let a class be told apart by something other than its subject (`doctor --shortcuts`).

Photos gathered per class from different sources carry the sources' marks: one site's watermark, a frame, black and
white scans, one camera, PNG files where the rest are JPEG. A model learns whatever separates the classes, and a cue
shared by a class's training and validation photos scores well and fails in use. Each photo is described by what is
not its subject: its file (format, pixel size, bytes per pixel, the camera named in EXIF), its colour treatment
(black and white), its border (a uniform frame) and its picture at 16x16 cells (a mark in one place: cells nearly
the same across the class, unlike the rest). A cue is reported for a class when it marks most of the class's photos
and few of the others' (or, for bytes per pixel, a threshold tells the class from the rest), with the photos that
show it and what to do. Nothing here trains a model: a cue found is there in the files, whatever a model makes of it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from transferlab.curate.cue_test import Hider, check_without_cues, cover, crop_frame, greyed, resave
from transferlab.data.findings import Finding, Item
from transferlab.data.images import load_rgb
from transferlab.errors import UnreadableImage
from transferlab.utils.progress import report

SIDE = 64  # pixels: each photo is looked at this small
CELLS = 16  # the mark detector's grid (cells of SIDE / CELLS pixels)
INSIDE = 0.6  # a cue marks at least this share of a class's photos ...
OUTSIDE = 0.15  # ... and at most this share of the other classes'
SEPARATES = 0.9  # bytes per pixel: a threshold's balanced accuracy, class against the rest
STILL = 0.3  # a mark: cells whose spread across the class is below this share of their spread across the rest
MIN_PHOTOS = 8  # a class needs this many photos to be judged
SHOWN = 12  # photos named per finding
PLACES = ("top-left", "top", "top-right", "left", "centre", "right", "bottom-left", "bottom", "bottom-right")


@dataclass(frozen=True, kw_only=True)
class Look:
    """What one photo shows besides its subject."""

    format: str
    size: str  # "WxH"
    camera: str  # EXIF make and model, or "none"
    bytes_per_pixel: float
    black_and_white: bool
    framed: bool
    cells: np.ndarray  # (CELLS, CELLS, 3) mean colour of each cell, 0..1


def look(path: Path) -> Look:
    """Describe one photo (raises UnreadableImage)."""
    with Image.open(path) as opened:
        fmt, (width, height) = opened.format or "?", opened.size
        exif = opened.getexif()
        camera = " ".join(str(exif.get(tag, "")).strip() for tag in (271, 272)).strip() or "none"
    picture = (
        np.asarray(load_rgb(path, min_side=SIDE).resize((SIDE, SIDE), Image.Resampling.BILINEAR), dtype=np.float32)
        / 255
    )
    chroma = float(np.abs(picture - picture.mean(2, keepdims=True)).mean())
    ring = np.concatenate([picture[:2].reshape(-1, 3), picture[-2:].reshape(-1, 3),
                           picture[2:-2, :2].reshape(-1, 3), picture[2:-2, -2:].reshape(-1, 3)])  # fmt: skip
    inner = picture[6:-6, 6:-6].reshape(-1, 3)
    framed = float(ring.std(0).max()) < 0.04 and float(np.abs(ring.mean(0) - inner.mean(0)).max()) > 0.05
    step = SIDE // CELLS
    cells = picture.reshape(CELLS, step, CELLS, step, 3).mean((1, 3))
    return Look(format=fmt, size=f"{width}x{height}", camera=camera,
                bytes_per_pixel=path.stat().st_size / max(1, width * height), black_and_white=chroma < 0.01,
                framed=framed, cells=cells)  # fmt: skip


def folder_shortcuts(root: str | Path, quiet: bool = True, *, model: bool = True) -> list[Finding]:
    """`find_shortcuts` over every photo of a folder, train and val (what `doctor --shortcuts` and the studio's
    check run); raises DatasetError when the folder has no classes to tell apart."""
    from transferlab.data.layout import load_dataset

    dataset = load_dataset(root, quiet=quiet)
    photos = [(s.path, s.label) for s in dataset.train + dataset.val]
    return find_shortcuts(photos, dataset.classes, Path(root), quiet, model=model)


def find_shortcuts(
    photos: list[tuple[Path, int]], classes: list[str], root: Path, quiet: bool = True, *, model: bool = False
) -> list[Finding]:
    """Findings of kind "shortcut" for `photos` (path, class index), each naming its class and cue; with `model`,
    each cue is also put to a model (`cue_test`): the class's validation photos answered with the cue hidden."""
    looks: list[Look | None] = []
    for n, (path, _) in enumerate(photos):
        try:
            looks.append(look(path))
        except (UnreadableImage, OSError):
            looks.append(None)
        if not quiet and (n % 50 == 0 or n + 1 == len(photos)):
            report("decoding", f"looking for shortcuts: {n + 1}/{len(photos)} photos", n + 1, len(photos))
    seen = [(path, label, found) for (path, label), found in zip(photos, looks) if found is not None]
    labels = np.asarray([label for _, label, _ in seen])
    from transferlab.data.layout import shown_path

    paths = [shown_path(path, root) for path, _, _ in seen]
    found: list[tuple[Finding, Hider | None]] = []
    for k, name in enumerate(classes):
        mine = labels == k
        if mine.sum() < MIN_PHOTOS or (~mine).sum() < MIN_PHOTOS:
            continue
        for cue, marked, advice, hider in _cues([found for _, _, found in seen], mine):
            shown = [paths[i] for i in np.flatnonzero(mine & marked)[:SHOWN]]
            message = (
                f"class '{name}': {cue}: a model can tell '{name}' by it rather than by what the photos show; {advice}"
            )
            found.append((Finding(kind="shortcut", severity="warning", message=message, class_name=name,
                                  items=[Item(paths=(p,)) for p in shown]), hider))  # fmt: skip
    if not model:
        return [finding for finding, _ in found]
    tested = iter(check_without_cues(root, [(f, h) for f, h in found if h is not None], quiet))
    return [next(tested) if hider is not None else finding for finding, hider in found]


Cue = tuple[str, np.ndarray, str, Hider | None]  # what the cue is, which photos show it, what to do, how to hide it


def _cues(looks: list[Look], mine: np.ndarray) -> list[Cue]:
    """Each cue marking the class `mine`."""
    sizes = Counter(x.size for x, theirs in zip(looks, ~mine) if theirs).most_common(1)
    usual = tuple(int(v) for v in sizes[0][0].split("x")) if sizes else None  # the other classes' usual size
    cues: list[Cue] = []
    found = []
    for what, values, advice, hider in (
        ("file format", [x.format for x in looks], "convert every photo to one format, or gather others", resave()),
        ("pixel size", [x.size for x in looks], "gather photos of other sizes, or resize every photo alike",
         resave((usual[0], usual[1])) if usual else None),
        ("camera", [x.camera for x in looks], "gather photos from other cameras", None),  # EXIF: no pixel to hide
        ("black and white", [str(x.black_and_white) for x in looks], "gather colour photos, or convert all to grey",
         greyed()),
        ("a uniform frame", [str(x.framed) for x in looks], "crop the frames, or gather photos without one",
         crop_frame()),
    ):  # fmt: skip
        array = np.asarray(values)
        for value, count in Counter(array[mine]).most_common(1):
            inside, outside = count / mine.sum(), float((array[~mine] == value).mean())
            if value != "False" and inside >= INSIDE and outside <= OUTSIDE:
                shown = "" if value == "True" else f" {value}"
                verb = "are" if what == "black and white" else "have"
                cues.append((f"{inside:.0%} of its photos {verb} {what}{shown}, {outside:.0%} of the others'",
                             array == value, advice, hider))  # fmt: skip
                found.append(what)
    if "a uniform frame" not in found:  # a frame is also the same cells all round
        cues += _mark(looks, mine)
    return cues or _compression(looks, mine)  # a black and white or PNG class also compresses otherwise: one cue


def _compression(looks: list[Look], mine: np.ndarray) -> list[Cue]:
    """Bytes per pixel (the compression): a threshold telling the class from the rest."""
    rate = np.log(np.asarray([x.bytes_per_pixel for x in looks]) + 1e-6)
    for cut in np.unique(rate):
        for below in (True, False):
            side = rate <= cut if below else rate > cut
            balanced = (side[mine].mean() + (~side[~mine]).mean()) / 2
            if balanced >= SEPARATES:
                word = "at most" if below else "more than"
                text = (f"{side[mine].mean():.0%} of its files have {word} {np.exp(cut):.2f} bytes a pixel, "
                        f"{side[~mine].mean():.0%} of the others'")  # fmt: skip
                return [(text, side, "save every photo at one compression (quality), or gather others", resave())]
    return []


def _mark(looks: list[Look], mine: np.ndarray) -> list[Cue]:
    """A mark in one place: cells nearly the same across the class's photos, varied across the rest's."""
    cells = np.stack([x.cells for x in looks])  # (N, CELLS, CELLS, 3)
    spread_in, spread_out = cells[mine].std(0).mean(-1), cells[~mine].std(0).mean(-1)
    differs = np.abs(cells[mine].mean(0) - cells[~mine].mean(0)).max(-1) > 2 * spread_in
    still = (spread_in < STILL * spread_out) & differs
    if not still.any():
        return []
    rows, cols = np.nonzero(still)
    place = PLACES[3 * min(2, int(rows.mean() * 3 // CELLS)) + min(2, int(cols.mean() * 3 // CELLS))]
    typical = cells[mine].mean(0)[still]
    near = np.abs(cells[:, still] - typical).max((1, 2)) < 0.1  # photos showing the mark
    return [(f"the same mark at the {place} of {near[mine].mean():.0%} of its photos ({int(still.sum())} of "
             f"{CELLS * CELLS} cells), {near[~mine].mean():.0%} of the others'", near,
             "crop or cover the mark, or gather photos without it", cover(still))]  # fmt: skip
