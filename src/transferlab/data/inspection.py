"""Inspect every photo of a folder once: header, decoding, perceptual fingerprint, colours; cached per file.

`inspect_folder(root)` lists the image files (`list_files`: train/ and val/, or class folders), inspects each one
that changed since last time (in parallel; the cache lives in ~/.cache/transferlab/doctor, keyed by path, size and
mtime, and keeps what was inspected before an interruption) and returns one `FileInfo` per file.
`duplicate_groups` joins the same bytes and the confirmed near-duplicates into groups. The doctor reports on these
infos; `split` keeps each group on one side.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from transferlab.data.fingerprints import Fingerprint, fingerprint, groups_from_pairs, near_duplicate_pairs
from transferlab.data.images import VAL_DIR_NAMES, is_hidden_below, is_hidden_name, is_image_file, load_rgb
from transferlab.errors import UnreadableImage
from transferlab.utils.parallel import parallel_imap
from transferlab.utils.storage import cache_dir, write_atomically

CACHE_VERSION = 1
GONE = "gone: moved or deleted while the folder was being inspected"

log = logging.getLogger("transferlab")


@dataclass(kw_only=True)
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
        return Fingerprint(phash=int(self.phash, 16), thumb=bytes.fromhex(self.thumb), aspect=self.aspect)


def inspect_file(path: Path, root: Path, split: str, label: str) -> FileInfo:
    stat = path.stat()
    info = FileInfo(
        path=str(path.relative_to(root)), split=split, label=label, size=stat.st_size, mtime_ns=stat.st_mtime_ns
    )
    data = path.read_bytes()
    info.sha256 = hashlib.sha256(data).hexdigest()
    if not data:
        info.error = "empty file (0 bytes)"
        return info
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # the header only: size known before any pixel is decoded
                info.format, info.mode, (info.width, info.height) = image.format, image.mode, image.size
                info.frames = getattr(image, "n_frames", 1)
                info.orientation = int(image.getexif().get(0x0112, 1) or 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        info.error = f"decompression bomb: {error}"
        return info
    except Image.UnidentifiedImageError:
        info.error = unidentified_reason(data)
        return info
    except Exception as error:  # noqa: BLE001 - any header failure is a finding, not a crash
        info.error = f"cannot read header: {error}"
        return info
    try:
        # decoded from the bytes read above: the file is read once, and a photo moved meanwhile (the studio, another
        # command) is not reported unreadable; JPEG draft mode keeps memory bounded for huge photos
        picture = load_rgb(io.BytesIO(data), min_side=256)
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


def unidentified_reason(data: bytes) -> str:
    head = data[:64]
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        from transferlab.data.images import HEIF_READABLE

        return (
            "damaged HEIC/AVIF file"
            if HEIF_READABLE
            else "unsupported format (HEIC: install pi-heif, or convert to JPEG)"
        )
    if head.lstrip().startswith((b"<svg", b"<?xml")):
        return "unsupported format (SVG vector graphic)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "not an image (an HTML page, probably a failed download)"
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "not an image (a text file)"
    return "not an image Pillow can identify"


def list_files(root: Path) -> tuple[list[tuple[Path, str, str]], list[Path]]:
    """(path, split, class) for every file with an image extension, and the other files found."""
    splits = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    val = next((splits[n] for n in VAL_DIR_NAMES if n in splits), None)
    folders = [(splits["train"], "train"), (val, "val")] if "train" in splits and val else [(root, "")]
    files, others = [], []
    for folder, split in folders:
        inside = root.resolve()
        for class_dir in sorted(
            d for d in folder.iterdir() if d.is_dir() and not is_hidden_name(d.name) and inside in d.resolve().parents
        ):  # a symlink out of the dataset: not followed
            for path in sorted(class_dir.rglob("*")):
                if not path.is_file() or is_hidden_below(path, class_dir):
                    continue
                if is_image_file(path):
                    files.append((path, split, class_dir.name))
                else:
                    others.append(path)
    return files, others


def _cache_path(root: Path) -> Path:
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "doctor" / f"{key}.json"


def _inspect_job(item: tuple[Path, Path, str, str]) -> FileInfo:
    path, root, split, label = item
    try:
        return inspect_file(path, root, split, label)
    except FileNotFoundError:  # moved or deleted since the folder was listed (the studio, another command)
        return FileInfo(path=str(path.relative_to(root)), split=split, label=label, size=0, mtime_ns=0, error=GONE)


def _read_cache(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return data["files"] if data.get("version") == CACHE_VERSION else {}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        log.warning("ignoring the damaged inspection cache %s: inspecting every file again", path)
        return {}


def _write_cache(path: Path, files: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": CACHE_VERSION, "files": files})
    write_atomically(path, lambda tmp: tmp.write_text(text))  # two doctors at once: the last one wins, whole


def inspect_folder(
    root: Path,
    workers: int | None = None,
    quiet: bool = False,
    use_cache: bool = True,
    files: list[tuple[Path, str, str]] | None = None,
) -> tuple[list[FileInfo], int]:
    """One FileInfo per image file of `root` (or per `files`, as (path, split, class)), and how many came from
    the cache. Files inspected before an interruption are cached, so they are not inspected again."""
    files = list_files(root)[0] if files is None else files
    cache_file = _cache_path(root)
    cache = _read_cache(cache_file) if use_cache else {}
    infos: list[FileInfo | None] = [None] * len(files)
    todo = []
    for index, (path, split, label) in enumerate(files):
        try:
            stat = path.stat()
        except FileNotFoundError:
            todo.append(index)  # gone already: `_inspect_job` says so
            continue
        hit = cache.get(str(path.relative_to(root)))
        if hit and hit["size"] == stat.st_size and hit["mtime_ns"] == stat.st_mtime_ns:
            infos[index] = FileInfo(**{**hit, "split": split, "label": label})
        else:
            todo.append(index)
    results = parallel_imap(
        _inspect_job, [(files[i][0], root, files[i][1], files[i][2]) for i in todo], workers, "inspect", quiet
    )
    try:
        for index, info in zip(todo, results):
            infos[index] = info
    finally:  # interrupted too: the files inspected so far are not inspected again
        if use_cache:
            kept = {**cache, **{info.path: asdict(info) for info in infos if info is not None and info.error != GONE}}
            _write_cache(cache_file, kept)
    return cast(list[FileInfo], infos), len(files) - len(todo)  # every slot is filled by now


def exact_groups(infos: list[FileInfo]) -> list[list[int]]:
    """Groups of files with identical bytes (indices into `infos`)."""
    by_sha: dict[str, list[int]] = defaultdict(list)
    for index, info in enumerate(infos):
        if info.size:
            by_sha[info.sha256].append(index)
    return [g for g in by_sha.values() if len(g) > 1]


def duplicate_groups(infos: list[FileInfo]) -> list[list[int]]:
    """Groups (indices into `infos`) of the same picture: identical bytes or confirmed near-duplicates, joined."""
    exact = [(g[0], other) for g in exact_groups(infos) for other in g[1:]]
    return groups_from_pairs(exact + near_duplicate_pairs([i.fingerprint() for i in infos]))
