"""`transferlab split SRC --out DST`: a folder of class folders becomes DST/train + DST/val without a leak.

The split is the one training makes of a single folder (`data.split_samples`: seeded, stratified, every group of
copies of one picture on one side, a group under two classes left out), on the files the doctor's inspection can
decode (the others are left out and listed). Files are copied, or hard-linked with `link`. Nothing is written into
a DST that holds anything; the folder is built beside DST and renamed into place at the end, so an interrupted split
leaves no half-made DST. `DST/split.json` records what was done.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from transferlab.data.layout import VAL_DIR_NAMES, Sample, scan_classes, split_samples, to_samples
from transferlab.errors import DatasetError, UsageError
from transferlab.utils.storage import save_json


@dataclass(kw_only=True)
class SplitResult:
    out: Path
    classes: list[str]
    counts: dict[str, dict[str, int]]  # {"train": {class: n}, "val": {...}}
    kept_together: dict[str, int]  # class -> groups of copies placed on one side
    excluded: list[list[str]] = field(default_factory=list)  # copies under two classes: left out
    unreadable: list[str] = field(default_factory=list)  # "path: reason", left out

    def lines(self) -> list[str]:
        """What was done, a line per class, then what was left out."""
        lines = [
            f"{name}: {self.counts['train'][name]} train / {self.counts['val'][name]} val"
            + (
                f" ({self.kept_together[name]} group(s) of copies kept on one side)"
                if self.kept_together.get(name)
                else ""
            )
            for name in self.classes
        ]
        lines += [f"left out, one picture under two classes: {' = '.join(g)}" for g in self.excluded]
        lines += [f"left out, unreadable: {u}" for u in self.unreadable]
        return lines


def split_folder(
    src: str | Path,
    out: str | Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    link: bool = False,
    workers: int | None = None,
    *,
    quiet: bool = False,
) -> SplitResult:
    """Split SRC/<class>/* into OUT/train/<class> and OUT/val/<class> (see the module docstring)."""
    from transferlab.data.inspection import duplicate_groups, inspect_folder

    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.is_dir():
        raise DatasetError(f"{src}: no such folder")
    if any(d.is_dir() and d.name.lower() in ("train", *VAL_DIR_NAMES) for d in src.iterdir()):
        raise DatasetError(f"{src} is already split into train/ and val/; split takes SRC/<class>/<images>")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} is {'not empty' if out.is_dir() else 'a file'}: give a new folder for the split")
    if out.resolve().is_relative_to(src.resolve()):
        raise UsageError(f"{out} is inside {src}: give a folder outside it")
    files, _ = scan_classes(src)
    classes = sorted(files)
    samples = to_samples(files, classes)
    infos, _ = inspect_folder(src, workers, quiet, files=[(s.path, "", classes[s.label]) for s in samples])
    readable = [i for i, info in enumerate(infos) if not info.error]
    unreadable = [f"{infos[i].path}: {infos[i].error}" for i in range(len(infos)) if infos[i].error]
    samples, infos = [samples[i] for i in readable], [infos[i] for i in readable]
    groups = duplicate_groups(infos)
    train, val, excluded = split_samples(samples, classes, val_fraction, seed, groups)
    result = SplitResult(
        out=out,
        classes=classes,
        counts={},
        kept_together=_kept_together(groups, samples, classes, excluded),
        excluded=[[str(p.relative_to(src)) for p in g] for g in excluded],
        unreadable=unreadable,
    )
    for name, part in (("train", train), ("val", val)):
        count = Counter(s.label for s in part)
        result.counts[name] = {c: count.get(i, 0) for i, c in enumerate(classes)}
    _write(
        src,
        out,
        {"train": train, "val": val},
        classes,
        link,
        {
            "source": str(src.resolve()),
            "val_fraction": val_fraction,
            "seed": seed,
            "link": link,
            "counts": result.counts,
            "kept_together": result.kept_together,
            "excluded": result.excluded,
            "unreadable": unreadable,
        },
    )
    return result


def _kept_together(
    groups: list[list[int]], samples: list[Sample], classes: list[str], excluded: list[list[Path]]
) -> dict[str, int]:
    left_out = {p for g in excluded for p in g}
    kept = Counter(classes[samples[g[0]].label] for g in groups if samples[g[0]].path not in left_out)
    return dict(kept)


def _write(
    src: Path, out: Path, splits: dict[str, list[Sample]], classes: list[str], link: bool, manifest: dict
) -> None:
    """Copy or link every file into a folder beside OUT, then rename it into place (nothing half-made is left)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        for name, samples in splits.items():
            for sample in samples:
                label = classes[sample.label]
                dest = partial / name / label / sample.path.relative_to(src / label)
                dest.parent.mkdir(parents=True, exist_ok=True)
                _place(sample.path, dest, link)
        save_json(manifest, partial / "split.json")
        if out.exists():
            out.rmdir()  # empty (checked above): the rename below needs the name free
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _place(source: Path, dest: Path, link: bool) -> None:
    if not link:
        shutil.copy2(source, dest)
        return
    try:
        os.link(source, dest)
    except OSError as error:
        raise UsageError(
            f"--link: cannot hard-link {source} into {dest.parent} ({error.strerror}); hard links need "
            "both folders on one file system: drop --link to copy"
        ) from None
