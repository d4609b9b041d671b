"""Turn a folder of photos into labelled samples: discovery, checks and the train/validation split.

Two layouts are understood:
- `DATA/train/<class>/*` and `DATA/val/<class>/*` (`valid/` and `validation/` also name the validation split);
- `DATA/<class>/*`, split into train and validation by a seeded, stratified split that keeps every group of
  copies of one picture (same bytes, or the doctor's confirmed near-duplicates) on one side, and leaves out a group
  filed under two classes (a conflicting label): a split made here never leaks a picture into validation.
Problems a user can fix raise `DatasetError` with one line that says what is wrong and where.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from transferlab.config import DataConfig
from transferlab.data.images import IMAGE_EXTENSIONS, VAL_DIR_NAMES, is_hidden_name, is_image_file
from transferlab.errors import DatasetError, UsageError


@dataclass(kw_only=True, frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(kw_only=True)
class Dataset:
    """Class names plus the train and validation samples, with where they came from."""

    root: Path
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    layout: str  # "train/val folders" or "split <fraction>"
    ignored_files: list[Path] = field(default_factory=list)
    excluded: list[list[Path]] = field(default_factory=list)  # copies of one picture under two classes: left out

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split, e.g. {"train": {"cat": 120, ...}, "val": {...}}."""
        result = {}
        for split, samples in (("train", self.train), ("val", self.val)):
            counter = Counter(s.label for s in samples)
            result[split] = {name: counter.get(i, 0) for i, name in enumerate(self.classes)}
        return result


def dataset_for(data: DataConfig, root: str | Path | None = None, *, capped: bool = True) -> Dataset:
    """The dataset `data` describes, split as it says (at `root` when given: the absolute folder a run recorded;
    with `capped`, at most its `max_per_class` photos a class). The one way a run's photos are found again."""
    return load_dataset(root or data.root, data.val_fraction, data.split_seed, data.max_per_class if capped else None)


def load_dataset(
    root: str | Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_per_class: int | None = None,
    quiet: bool = True,
) -> Dataset:
    """Find the classes and images under `root` and return the train/validation samples.

    `max_per_class` keeps a seeded random subset of at most that many images per class in each split,
    for quick trials and tests. Splitting one folder first looks for copies of the same picture (`inspection`,
    cached per file; `quiet` hides its progress bar).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    files, val_files, ignored, layout = class_files(root)
    classes = sorted(files)
    excluded: list[list[Path]] = []  # only a split made here leaves pictures out
    if val_files is not None:
        train = to_samples(files, classes)
        val = to_samples(val_files, classes)
    else:
        samples = to_samples(files, classes)
        groups = picture_groups(root, samples, classes, quiet)
        train, val, excluded = split_samples(samples, classes, val_fraction, seed, groups)
        layout = f"one folder split {1 - val_fraction:.0%}/{val_fraction:.0%} (seed {seed}, copies kept together)"
    if max_per_class:
        train = _subset(train, max_per_class, seed)
        val = _subset(val, max_per_class, seed)
    return Dataset(
        root=root, classes=classes, train=train, val=val, layout=layout, ignored_files=ignored, excluded=excluded
    )


def class_files(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]] | None, list[Path], str]:
    """Each class's image files, from names alone (nothing decoded): (train, val, other files, layout) for
    train/ + val/ folders; (all, None, other files, "") for one folder to split. A layout training refuses (one
    split without its partner, an empty class folder, a single class, ...) raises DatasetError."""
    train_dir, val_dir = split_dirs(root)
    if train_dir and val_dir:
        train_files, ignored = scan_classes(train_dir)
        val_files, ignored_val = scan_classes(val_dir)
        _check_same_classes(train_files, val_files, train_dir, val_dir)
        return train_files, val_files, ignored + ignored_val, f"{train_dir.name}/ and {val_dir.name}/ folders"
    test_dir = _child(root, ("test",))
    if train_dir and test_dir:
        raise DatasetError(
            f"{root}: found {train_dir.name}/ and {test_dir.name}/ but no val/, and training picks its "
            f"best epoch on val/: split one off with `transferlab split {train_dir} --out NEW`, train "
            f"on NEW and keep {test_dir.name}/ for `transferlab evaluate RUN {test_dir}` at the end; "
            f"or rename {test_dir.name}/ to val/"
        )
    if train_dir or val_dir:
        present = (train_dir or val_dir or root).name
        raise DatasetError(
            f"{root}: found {present}/ but not its partner; give both train/ and val/, "
            "or put class folders directly in the folder to split automatically"
        )
    files, ignored = scan_classes(root)
    return files, None, ignored, ""


def check_out_folder(out: str | Path, root: str | Path) -> None:
    """Refuse an output folder where the photo folder's classes are read (`transferlab train .` inside a folder of
    class folders would make runs/ a class of plots next time)."""
    root, out = Path(root).expanduser().resolve(), Path(out).expanduser().resolve()
    if not root.is_dir():
        return  # load_dataset says so
    splits = split_dirs(root)
    read = [d.resolve() for d in splits if d is not None] if all(splits) else [root]
    if any(out == d or out.is_relative_to(d) for d in read):
        raise UsageError(
            f"--out {out} is inside the photo folder {root}, where every folder is read as a class: "
            "give an --out outside it"
        )


def layout_problem(root: Path, val_fraction: float = 0.2) -> str | None:
    """What training would refuse in a folder's layout (the message of its DatasetError), or None. One folder to
    split is also checked for classes too small for `val_fraction` (copies not counted: a file-level check)."""
    try:
        files, val_files, _, _ = class_files(root)
        if val_files is None:
            for name, images in files.items():
                check_splittable(name, len(images), val_fraction)
    except DatasetError as error:
        return str(error)
    return None


def picture_groups(
    root: Path, samples: list[Sample], classes: list[str], quiet: bool = True, workers: int | None = None
) -> list[list[int]]:
    """Groups (indices into `samples`) of copies of one picture: same bytes or confirmed near-duplicates."""
    from transferlab.data.inspection import duplicate_groups, inspect_folder

    files = [(s.path, "", classes[s.label]) for s in samples]
    infos, _ = inspect_folder(root, workers, quiet, files=files)
    return duplicate_groups(infos)


def split_samples(
    samples: list[Sample],
    classes: list[str],
    val_fraction: float,
    seed: int,
    groups: list[list[int]] | None = None,
) -> tuple[list[Sample], list[Sample], list[list[Path]]]:
    """Seeded, stratified, stable split: each class keeps about `val_fraction` of its images for validation.

    `groups` (indices into `samples`) are copies of one picture: a group within one class goes wholly to one side;
    a group spanning classes is left out and returned (its paths) as the third value. Each photo's place in its
    class's order comes from a seeded hash of its file name (`_rank`), not from a shuffle of the whole list: a photo
    moved to another class, or one added or removed, moves at most a photo or two of those classes across the
    split, so everything stored for the rest (pictures, features) still serves.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    groups = [g for g in (groups or []) if len(g) > 1]
    excluded = [g for g in groups if len({samples[i].label for i in g}) > 1]
    left_out = {i for g in excluded for i in g}
    units = [g for g in groups if g not in excluded]
    grouped = {i for g in units for i in g}
    units += [[i] for i in range(len(samples)) if i not in grouped and i not in left_out]
    counts = Counter(samples[u[0]].label for u in units for _ in u)
    for label in range(len(classes)):
        if counts.get(label, 0) == 0:
            raise DatasetError(f"every image of class '{classes[label]}' is also filed under another class")
        check_splittable(classes[label], counts[label], val_fraction)
    train, val = _split_units(samples, units, classes, val_fraction, seed)
    key = lambda s: (s.label, str(s.path))  # noqa: E731 - stable order for reproducible runs
    return sorted(train, key=key), sorted(val, key=key), [sorted(samples[i].path for i in g) for g in excluded]


def check_splittable(name: str, count: int, val_fraction: float) -> None:
    """A class of `count` images can give round(count x fraction) to validation and keep at least one to train."""
    if round(count * val_fraction) < 1 or count - round(count * val_fraction) < 1:
        raise DatasetError(
            f"class '{name}' has {count} image(s): too few to split {val_fraction:.0%} off for "
            "validation; add images or give train/ and val/ folders"
        )


def _split_units(
    samples: list[Sample], units: list[list[int]], classes: list[str], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Per class, units (groups of copies, or single pictures) in a seeded order (`_rank`) fill validation up to
    round(count x fraction) images; a unit that would overshoot goes to training."""
    train: list[Sample] = []
    val: list[Sample] = []
    for label in range(len(classes)):
        mine = [u for u in units if samples[u[0]].label == label]
        mine.sort(key=lambda unit: min(_rank(seed, samples[i].path) for i in unit))
        count = sum(len(u) for u in mine)
        target, taken = round(count * val_fraction), 0
        if len(mine) < 2:
            raise DatasetError(
                f"class '{classes[label]}' holds copies of a single picture only: nothing to "
                "validate on that training has not seen"
            )
        for unit in mine:
            side = val if taken + len(unit) <= target else train
            side += [samples[i] for i in unit]
            taken += len(unit) if side is val else 0
        if taken == 0:  # every unit was bigger than the target: the smallest one validates
            moved = {samples[i] for i in min(mine, key=len)}
            train[:] = [s for s in train if s not in moved]
            val += sorted(moved, key=lambda s: str(s.path))
    return train, val


def _rank(seed: int, path: Path) -> bytes:
    """A photo's place in the split order: a seeded hash of its file name (not its class folder)."""
    return hashlib.blake2b(f"{seed}/{path.name}".encode(), digest_size=8).digest()


def split_dirs(root: Path) -> tuple[Path | None, Path | None]:
    """The folder's train/ and val/ (or valid/, validation/) sub-folders, each None where missing."""
    return _child(root, ("train",)), _child(root, VAL_DIR_NAMES)


def _child(root: Path, names: tuple[str, ...]) -> Path | None:
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and entry.name.lower() in names:
            return entry
    return None


def evaluation_files(root: str | Path) -> tuple[dict[str, list[Path]], Path]:
    """The labelled photos to evaluate a model on, and the folder they came from: a folder's test/ (else val/) when
    it has one, else every photo of its class folders (a test set of its own). One class is enough."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    folder = _child(root, ("test",)) or _child(root, VAL_DIR_NAMES) or root
    if folder == root and _child(root, ("train",)):
        raise DatasetError(f"{root}: found train/ but no test/ or val/ to evaluate on")
    return scan_classes(folder, min_classes=1)[0], folder


def scan_classes(folder: Path, min_classes: int = 2) -> tuple[dict[str, list[Path]], list[Path]]:
    """Map each class sub-folder of `folder` to its image files (searched recursively)."""
    class_dirs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not is_hidden_name(d.name)]
    loose = [f for f in folder.iterdir() if f.is_file() and is_image_file(f)]
    if not class_dirs:
        hint = f" ({len(loose)} images lie loose in it)" if loose else ""
        raise DatasetError(f"{folder}: no class sub-folders{hint}; expected {folder}/<class name>/<images>")
    taken = [d.name for d in class_dirs if d.name.lower() == "unknown"]
    if taken:
        raise DatasetError(
            f"{folder / taken[0]}: a class cannot be named '{taken[0]}': predict answers 'unknown' for "
            "photos of none of the classes; rename the folder (e.g. 'other')"
        )
    files: dict[str, list[Path]] = {}
    ignored: list[Path] = list(loose)
    for class_dir in class_dirs:
        found = files_below(class_dir)
        images = [p for p in found if is_image_file(p)]
        ignored += [p for p in found if not is_image_file(p)]
        files[class_dir.name] = images
    total = sum(len(v) for v in files.values())
    if total == 0:
        raise DatasetError(f"{folder}: no images in any class folder (looked for {' '.join(IMAGE_EXTENSIONS)})")
    empty = [name for name, images in files.items() if not images]
    if empty:
        raise DatasetError(f"{folder}: class folder(s) with no images: {', '.join(empty)}")
    if len(files) < min_classes:
        raise DatasetError(f"{folder}: only one class ('{next(iter(files))}'); a classifier needs at least 2")
    return files, ignored


def files_below(folder: Path) -> list[Path]:
    """The files under `folder`, in sorted order, none hidden or inside a hidden or left-behind folder
    (`is_hidden_name`): symbolic links to files count, links to folders are not followed (as `Path.rglob`, whose
    Path objects cost 2 s of every listing of a 20,000-photo folder; this walks it in a quarter of that)."""
    found: list[tuple[str, ...]] = []
    pending: list[tuple[tuple[str, ...], str]] = [((), str(folder))]
    while pending:
        parts, directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if is_hidden_name(entry.name):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(((*parts, entry.name), entry.path))
                    elif entry.is_file():
                        found.append((*parts, entry.name))
        except (PermissionError, FileNotFoundError, NotADirectoryError):  # as rglob: what cannot be read is skipped
            continue
    found.sort()  # Path order is the order of the parts
    return [folder.joinpath(*parts) for parts in found]


def shown_path(path: str | Path, root: str | Path) -> str:
    """`path` as a finding or a check names it: relative to the photo folder `root` where it lies inside it, else as
    given."""
    path, root = Path(path), Path(root).expanduser()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _check_same_classes(train: dict, val: dict, train_dir: Path, val_dir: Path) -> None:
    only_train = sorted(set(train) - set(val))
    only_val = sorted(set(val) - set(train))
    if only_train:
        raise DatasetError(f"class(es) {', '.join(only_train)} in {train_dir} have no folder in {val_dir}")
    if only_val:
        raise DatasetError(f"class(es) {', '.join(only_val)} in {val_dir} have no folder in {train_dir}")


def to_samples(files: dict[str, list[Path]], classes: list[str]) -> list[Sample]:
    return [Sample(path=path, label=classes.index(name)) for name in classes for path in files[name]]


def _subset(samples: list[Sample], per_class: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    by_label: dict[int, list[Sample]] = {}
    for sample in samples:
        by_label.setdefault(sample.label, []).append(sample)
    kept = []
    for label in sorted(by_label):
        group = by_label[label]
        kept += sorted(rng.sample(group, min(per_class, len(group))), key=lambda s: str(s.path))
    return kept
