"""Dataset doctor: find what is wrong with a photo folder before it costs a training run.

`diagnose(root)` inspects every file once (in parallel, cached per file by path, size and mtime) and reports:
images per class and split and the class imbalance; unreadable files with the reason; modes, formats, sizes,
tiny images, EXIF-rotated and animated images; exact duplicates (same bytes) and near-duplicates (same
perceptual hash neighbourhood, *confirmed* by comparing small thumbnails, so merely similar scenes are not
called duplicates) within a class, across classes (conflicting labels) and across train/val (leakage); and
pictures that are probably not photos (placeholder graphics: very few colours, one large flat area).

Near-duplicates come from `fingerprints`; moving problem files out is `quarantine`.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .data import VAL_DIR_NAMES
from .errors import DatasetError, UnreadableImage
from .fingerprints import Fingerprint, fingerprint, groups_from_pairs, near_duplicate_pairs
from .images import is_image_file, load_rgb
from .parallel import parallel_imap
from .storage import cache_dir

CACHE_VERSION = 1
TINY_SIDE = 64
SMALL_SIDE = 112  # below this, a 224-pixel input is an upscale of 2x or more
IMBALANCE_RATIO = 3.0


# --- inspecting one file ------------------------------------------------------------------------------------

@dataclass
class FileInfo:
    path: str  # relative to the dataset root
    split: str  # "train", "val" or "" for a single folder
    label: str
    size: int
    mtime_ns: int
    sha256: str = ""
    error: str | None = None
    format: str | None = None
    mode: str | None = None
    width: int = 0
    height: int = 0
    frames: int = 1
    orientation: int = 1
    colours: int = 0  # distinct colours of a 64x64 thumbnail quantized to 4 bits per channel
    flat_share: float = 0.0  # share of that thumbnail taken by its most common colour
    phash: str = ""
    thumb: str = ""
    aspect: float = 1.0

    def fingerprint(self) -> Fingerprint | None:
        if self.error or not self.phash:
            return None
        return Fingerprint(int(self.phash, 16), bytes.fromhex(self.thumb), self.aspect)


def inspect_file(path: Path, root: Path, split: str, label: str) -> FileInfo:
    stat = path.stat()
    info = FileInfo(str(path.relative_to(root)), split, label, stat.st_size, stat.st_mtime_ns)
    data = path.read_bytes()
    info.sha256 = hashlib.sha256(data).hexdigest()
    if not data:
        info.error = "empty file (0 bytes)"
        return info
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only: size known before any pixel is decoded
                info.format, info.mode, (info.width, info.height) = image.format, image.mode, image.size
                info.frames = getattr(image, "n_frames", 1)
                info.orientation = int(image.getexif().get(0x0112, 1) or 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        info.error = f"decompression bomb: {error}"
        return info
    except Image.UnidentifiedImageError:
        info.error = _unidentified_reason(data)
        return info
    except Exception as error:  # noqa: BLE001 - any header failure is a finding, not a crash
        info.error = f"cannot read header: {error}"
        return info
    try:
        picture = load_rgb(path, min_side=256)  # JPEG draft mode keeps memory bounded for huge photos
    except UnreadableImage as error:
        info.error = str(error)
        return info
    print_ = fingerprint(picture)
    info.phash, info.thumb, info.aspect = f"{print_.phash:016x}", print_.thumb.hex(), print_.aspect
    quantized = (np.asarray(picture.resize((64, 64))) // 16).reshape(-1, 3).astype(np.int32)
    codes = quantized[:, 0] * 256 + quantized[:, 1] * 16 + quantized[:, 2]
    _, counts = np.unique(codes, return_counts=True)
    info.colours, info.flat_share = len(counts), float(counts.max() / codes.size)
    return info


def _unidentified_reason(data: bytes) -> str:
    head = data[:64]
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        from .images import HEIF_READABLE

        return ("damaged HEIC/AVIF file" if HEIF_READABLE
                else "unsupported format (HEIC: install pi-heif, or convert to JPEG)")
    if head.lstrip().startswith((b"<svg", b"<?xml")):
        return "unsupported format (SVG vector graphic)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "not an image (an HTML page, probably a failed download)"
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "not an image (a text file)"
    return "not an image Pillow can identify"


# --- the whole folder ---------------------------------------------------------------------------------------

def list_files(root: Path) -> tuple[list[tuple[Path, str, str]], list[Path]]:
    """(path, split, class) for every file with an image extension, and the other files found."""
    splits = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    val = next((splits[n] for n in VAL_DIR_NAMES if n in splits), None)
    folders = [(splits["train"], "train"), (val, "val")] if "train" in splits and val else [(root, "")]
    files, others = [], []
    for folder, split in folders:
        inside = root.resolve()
        for class_dir in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
                                and inside in d.resolve().parents):  # a symlink out of the dataset: not followed
            for path in sorted(class_dir.rglob("*")):
                if not path.is_file() or any(p.startswith(".") for p in path.relative_to(class_dir).parts):
                    continue
                if is_image_file(path):
                    files.append((path, split, class_dir.name))
                else:
                    others.append(path)
    return files, others


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

    def problem_files(self) -> dict[str, list[str]]:
        """File -> reasons, for every file a finding would quarantine."""
        moved: dict[str, list[str]] = defaultdict(list)
        for finding in self.findings:
            for path in finding.quarantine:
                moved[path].append(finding.kind)
        return dict(moved)


def _cache_path(root: Path) -> Path:
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "doctor" / f"{key}.json"


def _inspect_job(item: tuple[Path, Path, str, str]) -> FileInfo:
    return inspect_file(*item)


def diagnose(root: str | Path, workers: int | None = None, quiet: bool = False, use_cache: bool = True) -> DoctorReport:
    """Inspect every file under `root` and return the findings."""
    start = time.perf_counter()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    files, others = list_files(root)
    cache_file = _cache_path(root)
    cache = _read_cache(cache_file) if use_cache else {}
    infos: list[FileInfo | None] = [None] * len(files)
    todo = []
    for index, (path, split, label) in enumerate(files):
        stat = path.stat()
        hit = cache.get(str(path.relative_to(root)))
        if hit and hit["size"] == stat.st_size and hit["mtime_ns"] == stat.st_mtime_ns:
            infos[index] = FileInfo(**{**hit, "split": split, "label": label})
        else:
            todo.append(index)
    results = parallel_imap(_inspect_job, [(files[i][0], root, files[i][1], files[i][2]) for i in todo],
                            workers, "inspect", quiet)
    try:
        for index, info in zip(todo, results):
            infos[index] = info
    finally:  # interrupted too: the files inspected so far are not inspected again
        if use_cache:
            _write_cache(cache_file, [info for info in infos if info is not None])
    findings = _findings(infos, others, root)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for info in infos:
        counts[info.split or "all"][info.label] += 1
    return DoctorReport(
        root=str(root), counts={k: dict(v) for k, v in counts.items()},
        modes=dict(Counter(i.mode for i in infos if i.mode)), formats=dict(Counter(i.format for i in infos if i.format)),
        findings=findings, files_scanned=len(infos), seconds=time.perf_counter() - start,
        cached=len(infos) - len(todo))


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data["files"] if data.get("version") == CACHE_VERSION else {}
    except (OSError, ValueError, KeyError):
        return {}


def _write_cache(path: Path, infos: list[FileInfo]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": {i.path: asdict(i) for i in infos}}))
    tmp.replace(path)


def _findings(infos: list[FileInfo], others: list[Path], root: Path) -> list[Finding]:
    findings: list[Finding] = []
    unreadable = [i for i in infos if i.error]
    if unreadable:
        findings.append(Finding("unreadable", "error", f"{len(unreadable)} file(s) cannot be decoded",
                                [f"{i.path}: {i.error}" for i in unreadable], [i.path for i in unreadable]))
    findings += _duplicate_findings(infos)
    findings += _imbalance_findings(infos)
    graphics = [i for i in infos if not i.error and i.colours < 64 and i.flat_share >= 0.5]
    if graphics:
        findings.append(Finding(
            "not-a-photo", "warning", f"{len(graphics)} picture(s) are probably not photos (placeholder graphics: "
            "very few colours, one large flat area)",
            [f"{i.path}: {i.colours} colours, {i.flat_share:.0%} one colour" for i in graphics], [i.path for i in graphics]))
    flat = [i for i in infos if not i.error and i.flat_share >= 0.8 and i not in graphics]
    if flat:
        findings.append(Finding("mostly-flat", "info", f"{len(flat)} picture(s) are mostly one flat colour "
                                "(cut-outs or illustrations?): worth a look",
                                [f"{i.path}: {i.flat_share:.0%} one colour" for i in flat]))
    for kind, severity, side, text in (("tiny", "warning", TINY_SIDE, "tiny"),
                                       ("small", "info", SMALL_SIDE, "small (upscaled 2x or more for a 224-pixel input)")):
        small = [i for i in infos if not i.error and min(i.width, i.height) < side
                 and (kind == "tiny" or min(i.width, i.height) >= TINY_SIDE)]
        if small:
            findings.append(Finding(kind, severity, f"{len(small)} picture(s) under {side} px on the short side: {text}",
                                    [f"{i.path}: {i.width}x{i.height}" for i in small]))
    rotated = [i for i in infos if not i.error and i.orientation not in (0, 1)]
    if rotated:
        findings.append(Finding("exif-rotated", "info", f"{len(rotated)} photo(s) carry an EXIF rotation "
                                "(applied when loading)", [f"{i.path}: orientation {i.orientation}" for i in rotated]))
    animated = [i for i in infos if not i.error and i.frames > 1]
    if animated:
        findings.append(Finding("animated", "warning", f"{len(animated)} animated image(s): only the first frame is used",
                                [f"{i.path}: {i.frames} frames" for i in animated]))
    unusual = [i for i in infos if not i.error and i.mode not in ("RGB", "L")]
    if unusual:
        findings.append(Finding("modes", "info", f"{len(unusual)} picture(s) in modes other than RGB/L (converted "
                                "to RGB, transparency composited on white)", [f"{i.path}: {i.mode}" for i in unusual]))
    if others:
        findings.append(Finding("ignored", "info", f"{len(others)} file(s) without an image extension are ignored",
                                [str(p.relative_to(root)) for p in others]))
    return findings


def _duplicate_findings(infos: list[FileInfo]) -> list[Finding]:
    by_sha: dict[str, list[int]] = defaultdict(list)
    for index, info in enumerate(infos):
        if info.size:
            by_sha[info.sha256].append(index)
    exact = [g for g in by_sha.values() if len(g) > 1]
    exact_pairs = {(a, b) for g in exact for a in g for b in g if a < b}
    near_pairs = [p for p in near_duplicate_pairs([i.fingerprint() for i in infos]) if p not in exact_pairs]
    findings = []
    for groups, how in ((exact, "identical bytes"), (groups_from_pairs(near_pairs), "same picture, resized or re-encoded")):
        for kind, severity, title in (("leakage", "error", "in both train and val (inflates validation accuracy)"),
                                      ("conflicting-labels", "error", "filed under different classes"),
                                      ("duplicate", "warning", "repeated within one class")):
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
            findings.append(Finding("imbalance", "warning", f"{split}: class '{most[0]}' has {most[1] / least[1]:.1f}x "
                                    f"the images of '{least[0]}' ({most[1]} vs {least[1]})"))
    return findings


def format_report(report: DoctorReport) -> str:
    """The report as text for the terminal."""
    lines = [f"dataset: {report.root} ({report.files_scanned} image files, inspected in {report.seconds:.1f}s, "
             f"{report.cached} from cache)"]
    for split, per_class in report.counts.items():
        lines.append(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in sorted(per_class.items()))
                     + f" ({sum(per_class.values())})")
    lines.append("  formats: " + ", ".join(f"{k} {v}" for k, v in sorted(report.formats.items())) +
                 "; modes: " + ", ".join(f"{k} {v}" for k, v in sorted(report.modes.items())))
    if not report.findings:
        lines.append("no problems found")
    for finding in sorted(report.findings, key=lambda f: ("error", "warning", "info").index(f.severity)):
        lines.append(f"{finding.severity.upper()}: {finding.message}")
        lines += [f"    {f}" for f in finding.files[:20]]
        if len(finding.files) > 20:
            lines.append(f"    ... and {len(finding.files) - 20} more (use --json for all)")
    problems = report.problem_files()
    if problems:
        lines.append(f"{len(problems)} file(s) would move with --quarantine DIR (never deleted; --restore DIR puts them back)")
    return "\n".join(lines)

