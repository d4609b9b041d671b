"""Dataset doctor: find what is wrong with a photo folder before it costs a training run.

`diagnose(root)` inspects every file once (in parallel, cached per file by path, size and mtime) and reports:
images per class and split and the class imbalance; unreadable files with the reason; modes, formats, sizes,
tiny images, EXIF-rotated and animated images; exact duplicates (same bytes) and near-duplicates (same
perceptual hash neighbourhood, *confirmed* by comparing small thumbnails, so merely similar scenes are not
called duplicates) within a class, across classes (conflicting labels) and across train/val (leakage); and
pictures that are probably not photos (placeholder graphics: very few colours, one large flat area).

Each file is inspected by `inspection` (near-duplicates come from `fingerprints`); moving problem files out is
`quarantine_folder`; wrong labels and strangers are `label_issues` (`doctor --labels`).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from transferlab.data.findings import COPY_PROBLEMS, Finding, FindingKind, Item, Severity, item
from transferlab.data.fingerprints import groups_from_pairs, near_duplicate_pairs
from transferlab.data.inspection import GONE, FileInfo, exact_groups, inspect_folder, list_files
from transferlab.data.layout import layout_problem
from transferlab.errors import DatasetError

TINY_SIDE = 64
SMALL_SIDE = 112  # below this, a 224-pixel input is an upscale of 2x or more
IMBALANCE_RATIO = 3.0
GRAPHICS: FindingKind = "not-a-photo"


@dataclass(kw_only=True)
class DoctorReport:
    """What the doctor found in a folder: counts per split and class, modes and formats, and the findings."""

    root: str
    counts: dict[str, dict[str, int]]
    modes: dict[str, int]
    formats: dict[str, int]
    findings: list[Finding]
    files_scanned: int
    seconds: float
    cached: int

    def as_dict(self) -> dict:
        return {
            "root": self.root,
            "counts": self.counts,
            "modes": self.modes,
            "formats": self.formats,
            "findings": [f.as_dict() for f in self.findings],
            "files_scanned": self.files_scanned,
            "seconds": self.seconds,
            "cached": self.cached,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def with_graphics_judged(self, outliers: set[str]) -> DoctorReport:
        """This report with the label check's verdict on the possible graphics (itself unchanged): those also far
        from every photo in feature space (`outliers`, relative paths) are confirmed (a warning; `quarantine` moves
        them), the others stay a note."""
        finding = next((f for f in self.findings if f.kind == GRAPHICS), None)
        if finding is None:
            return self
        confirmed = [i for i in finding.items if i.paths[0] in outliers]
        rest = [i for i in finding.items if i.paths[0] not in outliers]
        replaced = []
        if confirmed:
            replaced.append(Finding(
                kind=GRAPHICS, severity="warning",
                message=f"{len(confirmed)} picture(s) are probably not photos (placeholder graphics: very few "
                "colours, one large flat area, and far from every photo in feature space)",
                items=confirmed, quarantine=[i.paths[0] for i in confirmed],
            ))  # fmt: skip
        if rest:
            replaced.append(Finding(
                kind="few-colours", severity="info",
                message=f"{len(rest)} picture(s) have very few colours and a large flat area but look like the other "
                "photos to the model: probably fine",
                items=rest,
            ))  # fmt: skip
        index = self.findings.index(finding)
        return replace(self, findings=[*self.findings[:index], *replaced, *self.findings[index + 1 :]])

    def problem_files(self) -> dict[str, list[str]]:
        """File -> reasons, for every file a finding would quarantine."""
        moved: dict[str, list[str]] = defaultdict(list)
        for finding in self.findings:
            for path in finding.quarantine:
                moved[path].append(finding.kind)
        return dict(moved)


def diagnose(root: str | Path, workers: int | None = None, quiet: bool = False, use_cache: bool = True) -> DoctorReport:
    """Inspect every file under `root` and return the findings."""
    start = time.perf_counter()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    files, others = list_files(root)
    infos, cached = inspect_folder(root, workers, quiet, use_cache, files)
    findings = _findings(infos, others, root)
    problem = layout_problem(root)
    if problem:
        message = f"train, compare and split refuse this folder: {problem}"
        findings.insert(0, Finding(kind="layout", severity="error", message=message))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for info in infos:
        counts[info.split or "all"][info.label] += 1
    return DoctorReport(
        root=str(root),
        counts={k: dict(v) for k, v in counts.items()},
        modes=dict(Counter(i.mode for i in infos if i.mode)),
        formats=dict(Counter(i.format for i in infos if i.format)),
        findings=findings,
        files_scanned=len(infos),
        seconds=time.perf_counter() - start,
        cached=cached,
    )


def _findings(infos: list[FileInfo], others: list[Path], root: Path) -> list[Finding]:
    findings: list[Finding] = []
    unreadable = [i for i in infos if i.error and i.error != GONE]  # a photo moved meanwhile is not unreadable
    if unreadable:
        findings.append(
            Finding(
                kind="unreadable",
                severity="error",
                message=f"{len(unreadable)} file(s) cannot be decoded",
                items=[item(i.path, i.error or "") for i in unreadable],
                quarantine=[i.path for i in unreadable],
            )
        )
    findings += _duplicate_findings(infos)
    findings += _imbalance_findings(infos)
    findings += _twin_class_findings(infos)
    findings += _picture_findings(infos)
    if others:
        findings.append(
            Finding(
                kind="ignored",
                severity="info",
                message=f"{len(others)} file(s) without an image extension are ignored",
                items=[item(str(p.relative_to(root))) for p in others],
            )
        )
    return findings


def _picture_findings(infos: list[FileInfo]) -> list[Finding]:
    """What the pictures themselves show: graphics, flat colour, small sizes, rotation, animation, odd modes."""
    readable = [i for i in infos if not i.error]
    graphics = [i for i in readable if i.colours < 64 and i.flat_share >= 0.5]
    flat = [i for i in readable if i.flat_share >= 0.8 and i not in graphics]
    tiny = [i for i in readable if min(i.width, i.height) < TINY_SIDE]
    small = [i for i in readable if TINY_SIDE <= min(i.width, i.height) < SMALL_SIDE]
    rotated = [i for i in readable if i.orientation not in (0, 1)]
    animated = [i for i in readable if i.frames > 1]
    unusual = [i for i in readable if i.mode not in ("RGB", "L")]
    found: list[tuple[FindingKind, Severity, list[FileInfo], str, Callable[[FileInfo], str]]] = [
        # colours alone also catch real photos on a dark background: nothing moves until features agree
        (GRAPHICS, "info", graphics, "picture(s) may be graphics rather than photos (very few colours, one large "
         "flat area); `doctor --labels` checks them against the photos",
         lambda i: f"{i.colours} colours, {i.flat_share:.0%} one colour"),
        ("mostly-flat", "info", flat, "picture(s) are mostly one flat colour (cut-outs or illustrations?): worth a "
         "look", lambda i: f"{i.flat_share:.0%} one colour"),
        ("tiny", "warning", tiny, f"picture(s) under {TINY_SIDE} px on the short side: tiny",
         lambda i: f"{i.width}x{i.height}"),
        ("small", "info", small, f"picture(s) under {SMALL_SIDE} px on the short side: small (upscaled 2x or more "
         "for a 224-pixel input)", lambda i: f"{i.width}x{i.height}"),
        ("exif-rotated", "info", rotated, "photo(s) carry an EXIF rotation (applied when loading)",
         lambda i: f"orientation {i.orientation}"),
        ("animated", "warning", animated, "animated image(s): only the first frame is used",
         lambda i: f"{i.frames} frames"),
        ("modes", "info", unusual, "picture(s) in modes other than RGB/L (converted to RGB, transparency composited "
         "on white)", lambda i: i.mode or ""),
    ]  # fmt: skip
    return [
        Finding(
            kind=kind,
            severity=severity,
            message=f"{len(chosen)} {message}",
            items=[item(i.path, detail(i)) for i in chosen],
        )
        for kind, severity, chosen, message, detail in found
        if chosen
    ]


def _duplicate_findings(infos: list[FileInfo]) -> list[Finding]:
    exact = exact_groups(infos)
    exact_pairs = {(a, b) for g in exact for a in g for b in g if a < b}
    near_pairs = [p for p in near_duplicate_pairs([i.fingerprint() for i in infos]) if p not in exact_pairs]
    findings = []
    for groups, how in (
        (exact, "identical bytes"),
        (groups_from_pairs(near_pairs), "same picture, resized or re-encoded"),
    ):
        copies: tuple[tuple[FindingKind, Severity], ...] = (
            ("leakage", "error"),
            ("conflicting-labels", "error"),
            ("duplicate", "warning"),
        )
        for kind, severity in copies:
            chosen = [g for g in groups if _duplicate_kind(g, infos) == kind]
            if not chosen:
                continue
            items, moved = [], []
            for group in chosen:
                members = sorted(group, key=lambda i: (infos[i].split != "train", infos[i].path))
                items.append(Item(paths=tuple(infos[i].path for i in members)))
                moved += [infos[i].path for i in (members if kind == "conflicting-labels" else members[1:])]
            message = f"{len(chosen)} group(s) of {how}: {COPY_PROBLEMS[kind]}"
            findings.append(Finding(kind=kind, severity=severity, message=message, items=items, quarantine=moved))
    return findings


def _duplicate_kind(group: list[int], infos: list[FileInfo]) -> FindingKind:
    if len({infos[i].label for i in group}) > 1:
        return "conflicting-labels"
    if len({infos[i].split for i in group}) > 1:
        return "leakage"
    return "duplicate"


def _imbalance_findings(infos: list[FileInfo]) -> list[Finding]:
    findings = []
    per_split: dict[str, Counter] = defaultdict(Counter)
    for info in infos:
        per_split[info.split or "all"][info.label] += 1
    for split, counter in per_split.items():
        most, least = counter.most_common()[0], counter.most_common()[-1]
        if least[1] and most[1] / least[1] >= IMBALANCE_RATIO:
            findings.append(
                Finding(
                    kind="imbalance",
                    severity="warning",
                    message=f"{split}: class '{most[0]}' has {most[1] / least[1]:.1f}x "
                    f"the images of '{least[0]}' ({most[1]} vs {least[1]})",
                )
            )
    return findings


def _twin_class_findings(infos: list[FileInfo]) -> list[Finding]:
    """Class folders whose names differ only in case, spaces, '-' or '_' ('Cat', 'cat ', 'golden_retriever' and
    'Golden Retriever'): most likely one class filed twice, which would split its photos between two labels."""
    key = lambda name: "".join(ch for ch in name.casefold() if ch.isalnum())  # noqa: E731
    twins: dict[str, set[str]] = defaultdict(set)
    for info in infos:
        twins[key(info.label)].add(info.label)
    return [
        Finding(
            kind="twin-classes",
            severity="warning",
            message=f"class folders {' and '.join(repr(n) for n in sorted(names))} "
            "differ only in case, spaces or punctuation: the same class twice? (merge them if so)",
        )
        for names in twins.values()
        if len(names) > 1
    ]


def format_report(report: DoctorReport) -> str:
    """The report as text for the terminal."""
    lines = [
        f"dataset: {report.root} ({report.files_scanned} image files, inspected in {report.seconds:.1f}s, "
        f"{report.cached} from cache)"
    ]
    for split, per_class in report.counts.items():
        lines.append(
            f"  {split}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(per_class.items()))
            + f" ({sum(per_class.values())})"
        )
    lines.append(
        "  formats: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.formats.items()))
        + "; modes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.modes.items()))
    )
    if not report.findings:
        lines.append("no problems found")
    for finding in sorted(report.findings, key=lambda f: ("error", "warning", "info").index(f.severity)):
        lines.append(f"{finding.severity.upper()}: {finding.message}")
        lines += [f"    {line}" for line in finding.lines()[:20]]
        if len(finding.items) > 20:
            lines.append(f"    ... and {len(finding.items) - 20} more (use --json for all)")
    problems = report.problem_files()
    if problems:
        lines.append(
            f"{len(problems)} file(s) would move with --quarantine DIR (never deleted; --restore DIR puts them back)"
        )
    return "\n".join(lines)
