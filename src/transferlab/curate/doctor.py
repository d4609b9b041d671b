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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transferlab.data.fingerprints import groups_from_pairs, near_duplicate_pairs
from transferlab.data.inspection import GONE, FileInfo, exact_groups, inspect_folder, list_files
from transferlab.data.layout import layout_problem
from transferlab.errors import DatasetError

TINY_SIDE = 64
SMALL_SIDE = 112  # below this, a 224-pixel input is an upscale of 2x or more
IMBALANCE_RATIO = 3.0
GRAPHICS = "not-a-photo"


@dataclass
class Finding:
    kind: str
    severity: str  # "error", "warning" or "info"
    message: str
    files: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)  # the files `quarantine` would move for this finding


@dataclass
class DoctorReport:
    root: str
    counts: dict[str, dict[str, int]]
    modes: dict[str, int]
    formats: dict[str, int]
    findings: list[Finding]
    files_scanned: int
    seconds: float
    cached: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def confirm_graphics(self, outliers: set[str]) -> None:
        """The label check's verdict on the possible graphics: those also far from every photo in feature space
        (`outliers`, relative paths) are confirmed (a warning; `quarantine` moves them), the others stay a note."""
        finding = next((f for f in self.findings if f.kind == GRAPHICS), None)
        if finding is None:
            return
        confirmed = [line for line in finding.files if line.split(": ")[0] in outliers]
        rest = [line for line in finding.files if line not in confirmed]
        index = self.findings.index(finding)
        replaced = []
        if confirmed:
            replaced.append(Finding(
                GRAPHICS, "warning",
                f"{len(confirmed)} picture(s) are probably not photos (placeholder graphics: very few colours, one "
                "large flat area, and far from every photo in feature space)",
                confirmed, [line.split(": ")[0] for line in confirmed],
            ))  # fmt: skip
        if rest:
            replaced.append(Finding(
                "few-colours", "info",
                f"{len(rest)} picture(s) have very few colours and a large flat area but look like the other photos "
                "to the model: probably fine",
                rest,
            ))  # fmt: skip
        self.findings[index : index + 1] = replaced

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
        findings.insert(0, Finding("layout", "error", f"train, compare and split refuse this folder: {problem}"))
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
                "unreadable",
                "error",
                f"{len(unreadable)} file(s) cannot be decoded",
                [f"{i.path}: {i.error}" for i in unreadable],
                [i.path for i in unreadable],
            )
        )
    findings += _duplicate_findings(infos)
    findings += _imbalance_findings(infos)
    findings += _twin_class_findings(infos)
    findings += _picture_findings(infos)
    if others:
        findings.append(
            Finding(
                "ignored",
                "info",
                f"{len(others)} file(s) without an image extension are ignored",
                [str(p.relative_to(root)) for p in others],
            )
        )
    return findings


def _picture_findings(infos: list[FileInfo]) -> list[Finding]:
    """What the pictures themselves show: graphics, flat colour, small sizes, rotation, animation, odd modes."""
    findings: list[Finding] = []
    graphics = [i for i in infos if not i.error and i.colours < 64 and i.flat_share >= 0.5]
    if graphics:  # colours alone also catch real photos on a dark background: nothing moves until features agree
        findings.append(
            Finding(
                GRAPHICS,
                "info",
                f"{len(graphics)} picture(s) may be graphics rather than photos (very few colours, one large flat "
                "area); `doctor --labels` checks them against the photos",
                [f"{i.path}: {i.colours} colours, {i.flat_share:.0%} one colour" for i in graphics],
            )
        )
    flat = [i for i in infos if not i.error and i.flat_share >= 0.8 and i not in graphics]
    if flat:
        findings.append(
            Finding(
                "mostly-flat",
                "info",
                f"{len(flat)} picture(s) are mostly one flat colour (cut-outs or illustrations?): worth a look",
                [f"{i.path}: {i.flat_share:.0%} one colour" for i in flat],
            )
        )
    return findings + _size_and_format_findings(infos)


def _size_and_format_findings(infos: list[FileInfo]) -> list[Finding]:
    """Small pictures, EXIF rotation, animation and modes other than RGB/L."""
    findings: list[Finding] = []
    for kind, severity, side, text in (
        ("tiny", "warning", TINY_SIDE, "tiny"),
        ("small", "info", SMALL_SIDE, "small (upscaled 2x or more for a 224-pixel input)"),
    ):
        small = [
            i
            for i in infos
            if not i.error and min(i.width, i.height) < side and (kind == "tiny" or min(i.width, i.height) >= TINY_SIDE)
        ]
        if small:
            findings.append(
                Finding(
                    kind,
                    severity,
                    f"{len(small)} picture(s) under {side} px on the short side: {text}",
                    [f"{i.path}: {i.width}x{i.height}" for i in small],
                )
            )
    rotated = [i for i in infos if not i.error and i.orientation not in (0, 1)]
    if rotated:
        findings.append(
            Finding(
                "exif-rotated",
                "info",
                f"{len(rotated)} photo(s) carry an EXIF rotation (applied when loading)",
                [f"{i.path}: orientation {i.orientation}" for i in rotated],
            )
        )
    animated = [i for i in infos if not i.error and i.frames > 1]
    if animated:
        findings.append(
            Finding(
                "animated",
                "warning",
                f"{len(animated)} animated image(s): only the first frame is used",
                [f"{i.path}: {i.frames} frames" for i in animated],
            )
        )
    unusual = [i for i in infos if not i.error and i.mode not in ("RGB", "L")]
    if unusual:
        findings.append(
            Finding(
                "modes",
                "info",
                f"{len(unusual)} picture(s) in modes other than RGB/L (converted "
                "to RGB, transparency composited on white)",
                [f"{i.path}: {i.mode}" for i in unusual],
            )
        )
    return findings


def _duplicate_findings(infos: list[FileInfo]) -> list[Finding]:
    exact = exact_groups(infos)
    exact_pairs = {(a, b) for g in exact for a in g for b in g if a < b}
    near_pairs = [p for p in near_duplicate_pairs([i.fingerprint() for i in infos]) if p not in exact_pairs]
    findings = []
    for groups, how in (
        (exact, "identical bytes"),
        (groups_from_pairs(near_pairs), "same picture, resized or re-encoded"),
    ):
        for kind, severity, title in (
            ("leakage", "error", "in both train and val (inflates validation accuracy)"),
            ("conflicting-labels", "error", "filed under different classes"),
            ("duplicate", "warning", "repeated within one class"),
        ):
            chosen = [g for g in groups if _duplicate_kind(g, infos) == kind]
            if not chosen:
                continue
            files, moved = [], []
            for group in chosen:
                members = sorted(group, key=lambda i: (infos[i].split != "train", infos[i].path))
                files.append(" = ".join(infos[i].path for i in members))
                moved += [infos[i].path for i in (members if kind == "conflicting-labels" else members[1:])]
            findings.append(Finding(kind, severity, f"{len(chosen)} group(s) of {how} {title}", files, moved))
    return findings


def _duplicate_kind(group: list[int], infos: list[FileInfo]) -> str:
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
                    "imbalance",
                    "warning",
                    f"{split}: class '{most[0]}' has {most[1] / least[1]:.1f}x "
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
            "twin-classes",
            "warning",
            f"class folders {' and '.join(repr(n) for n in sorted(names))} "
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
        lines += [f"    {f}" for f in finding.files[:20]]
        if len(finding.files) > 20:
            lines.append(f"    ... and {len(finding.files) - 20} more (use --json for all)")
    problems = report.problem_files()
    if problems:
        lines.append(
            f"{len(problems)} file(s) would move with --quarantine DIR (never deleted; --restore DIR puts them back)"
        )
    return "\n".join(lines)
