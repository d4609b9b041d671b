"""Turn a folder of photos into labelled samples: discovery, checks and the train/validation split.

Two layouts are understood:
- `DATA/train/<class>/*` and `DATA/val/<class>/*` (`valid/` and `validation/` also name the validation split);
- `DATA/<class>/*`, split into train and validation by a seeded, stratified split.
Problems a user can fix raise `DatasetError` with one line that says what is wrong and where.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DatasetError
from .images import IMAGE_EXTENSIONS, is_image_file

VAL_DIR_NAMES = ("val", "valid", "validation")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class Dataset:
    """Class names plus the train and validation samples, with where they came from."""

    root: Path
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    layout: str  # "train/val folders" or "split <fraction>"
    ignored_files: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split, e.g. {"train": {"cat": 120, ...}, "val": {...}}."""
        result = {}
        for split, samples in (("train", self.train), ("val", self.val)):
            counter = Counter(s.label for s in samples)
            result[split] = {name: counter.get(i, 0) for i, name in enumerate(self.classes)}
        return result


def load_dataset(
    root: str | Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_per_class: int | None = None,
) -> Dataset:
    """Find the classes and images under `root` and return the train/validation samples.

    `max_per_class` keeps a seeded random subset of at most that many images per class in each split,
    for quick trials and tests.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    train_dir = _child(root, ("train",))
    val_dir = _child(root, VAL_DIR_NAMES)
    if train_dir and val_dir:
        train_files, ignored = _scan_classes(train_dir)
        val_files, ignored_val = _scan_classes(val_dir)
        _check_same_classes(train_files, val_files, train_dir, val_dir)
        classes = sorted(train_files)
        train = _samples(train_files, classes)
        val = _samples(val_files, classes)
        layout = f"{train_dir.name}/ and {val_dir.name}/ folders"
        ignored += ignored_val
    elif train_dir or val_dir:
        present = (train_dir or val_dir).name
        raise DatasetError(f"{root}: found {present}/ but not its partner; give both train/ and val/, "
                           "or put class folders directly in the folder to split automatically")
    else:
        files, ignored = _scan_classes(root)
        classes = sorted(files)
        train, val = split_samples(_samples(files, classes), classes, val_fraction, seed)
        layout = f"one folder split {1 - val_fraction:.0%}/{val_fraction:.0%} (seed {seed})"
    if max_per_class:
        train = _subset(train, max_per_class, seed)
        val = _subset(val, max_per_class, seed)
    return Dataset(root, classes, train, val, layout, ignored)


def split_samples(
    samples: list[Sample], classes: list[str], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Seeded, stratified split: each class keeps about `val_fraction` of its images for validation."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    counts = Counter(s.label for s in samples)
    for label, count in counts.items():
        if round(count * val_fraction) < 1 or count - round(count * val_fraction) < 1:
            raise DatasetError(
                f"class '{classes[label]}' has {count} image(s): too few to split {val_fraction:.0%} off for "
                "validation; add images or give train/ and val/ folders")
    from sklearn.model_selection import train_test_split

    labels = [s.label for s in samples]
    train, val = train_test_split(samples, test_size=val_fraction, stratify=labels, random_state=seed)
    key = lambda s: (s.label, str(s.path))  # noqa: E731 - stable order for reproducible runs
    return sorted(train, key=key), sorted(val, key=key)


def _child(root: Path, names: tuple[str, ...]) -> Path | None:
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and entry.name.lower() in names:
            return entry
    return None


def _scan_classes(folder: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """Map each class sub-folder of `folder` to its image files (searched recursively)."""
    class_dirs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    loose = [f for f in folder.iterdir() if f.is_file() and is_image_file(f)]
    if not class_dirs:
        hint = f" ({len(loose)} images lie loose in it)" if loose else ""
        raise DatasetError(f"{folder}: no class sub-folders{hint}; expected {folder}/<class name>/<images>")
    files: dict[str, list[Path]] = {}
    ignored: list[Path] = list(loose)
    for class_dir in class_dirs:
        found = [p for p in sorted(class_dir.rglob("*")) if p.is_file() and not _hidden(p, class_dir)]
        images = [p for p in found if is_image_file(p)]
        ignored += [p for p in found if not is_image_file(p)]
        files[class_dir.name] = images
    total = sum(len(v) for v in files.values())
    if total == 0:
        raise DatasetError(f"{folder}: no images in any class folder (looked for {' '.join(IMAGE_EXTENSIONS)})")
    empty = [name for name, images in files.items() if not images]
    if empty:
        raise DatasetError(f"{folder}: class folder(s) with no images: {', '.join(empty)}")
    if len(files) < 2:
        raise DatasetError(f"{folder}: only one class ('{next(iter(files))}'); a classifier needs at least 2")
    return files, ignored


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def _check_same_classes(train: dict, val: dict, train_dir: Path, val_dir: Path) -> None:
    only_train = sorted(set(train) - set(val))
    only_val = sorted(set(val) - set(train))
    if only_train:
        raise DatasetError(f"class(es) {', '.join(only_train)} in {train_dir} have no folder in {val_dir}")
    if only_val:
        raise DatasetError(f"class(es) {', '.join(only_val)} in {val_dir} have no folder in {train_dir}")


def _samples(files: dict[str, list[Path]], classes: list[str]) -> list[Sample]:
    return [Sample(path, classes.index(name)) for name in classes for path in files[name]]


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
