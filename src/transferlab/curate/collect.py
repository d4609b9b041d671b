"""`transferlab collect URLS --out FOLDER`: download photos from URL lists into FOLDER/<class>/, safely and resumably.

URLS is a folder of `<class>.txt` files (one URL a line, `#` comments) or one CSV file with columns `url,label`.
Each URL is fetched by one of a bounded pool of threads (`fetching.Limits`): a timeout on every network wait and a
deadline for the whole download, retries with exponential back-off on what may pass (timeouts, cut connections, 429
and 5xx), a size cap (from Content-Length, and counted while reading), at most `redirects` redirects and only to
http(s).
What arrives is judged by its bytes, never by its name or Content-Type: it must be a picture Pillow decodes whole
(an HTML error page saved as `.jpg` is rejected and named). A picture already in FOLDER, same bytes or a confirmed
near-duplicate (`fingerprints`), is not saved again. Files are written under a temporary name and renamed, and
`FOLDER/sources.csv` gets a line per URL as it finishes (url, label, file, status, reason), so an interrupted run
keeps everything it finished and a rerun fetches only the URLs not yet saved.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from transferlab.curate.fetching import STOP, FetchFailed, Limits, fetch
from transferlab.data.fingerprints import Fingerprint, candidates, fingerprint, same_picture
from transferlab.errors import DamagedFile, UsageError, first_line

SOURCES = "sources.csv"
FIELDS = ("url", "label", "file", "status", "reason", "bytes")
EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "HEIF": ".heic",
    "AVIF": ".avif",
}


@dataclass(kw_only=True)
class Download:
    url: str
    label: str
    data: bytes = b""
    picture_format: str = ""
    print_: Fingerprint | None = None
    reason: str = ""
    attempts: int = 0


@dataclass(kw_only=True)
class CollectResult:
    out: Path
    saved: dict[str, int] = field(default_factory=dict)  # class -> photos saved this run
    duplicates: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)
    already: int = 0  # URLs saved by an earlier run, not fetched again
    seconds: float = 0.0


def read_url_lists(source: str | Path) -> list[tuple[str, str]]:
    """(url, label) pairs from a folder of <class>.txt files or a url,label CSV; repeated URLs once."""
    source = Path(source).expanduser()
    if source.is_dir():
        pairs = [
            (line.strip(), path.stem)
            for path in sorted(source.glob("*.txt"))
            for line in path.read_text(errors="replace").splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        if not pairs:
            raise UsageError(f"{source}: no URLs (expected <class>.txt files, one URL a line)")
    elif source.is_file():
        with source.open(newline="", encoding="utf-8-sig", errors="replace") as handle:  # a spreadsheet's BOM too
            reader = csv.DictReader(handle)
            if not {"url", "label"} <= set(reader.fieldnames or ()):
                raise UsageError(f"{source}: a CSV needs the columns url,label (found {reader.fieldnames})")
            pairs = [(row["url"].strip(), (row["label"] or "").strip()) for row in reader if (row["url"] or "").strip()]
        if not pairs:
            raise UsageError(f"{source}: no URLs (expected rows url,label under the header)")
    else:
        raise UsageError(f"{source}: no such file or folder")
    for _, label in pairs:
        if not label or label.startswith(".") or "/" in label or "\\" in label or label.lower() == "unknown":
            raise UsageError(
                f"{source}: '{label}' cannot be a class name (empty, hidden, a path, or the word "
                "'unknown', which predict answers for photos of no class)"
            )
    return list(dict.fromkeys(pairs))


def judge(data: bytes) -> tuple[str, Fingerprint]:
    """The picture format and fingerprint of downloaded bytes, or FetchFailed naming what they are instead."""
    from PIL import Image

    from transferlab.data.images import load_rgb
    from transferlab.data.inspection import unidentified_reason
    from transferlab.errors import UnreadableImage

    if not data:
        raise FetchFailed("empty response")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
    except Exception:  # noqa: BLE001 - whatever Pillow cannot open is judged by its first bytes
        raise FetchFailed(unidentified_reason(data)) from None
    if kind not in EXTENSIONS:
        raise FetchFailed(f"unsupported picture format {kind}")
    try:
        picture = load_rgb(io.BytesIO(data), min_side=256)
    except UnreadableImage as error:
        raise FetchFailed(f"{error}".replace("cannot decode", "truncated or damaged")) from None
    return kind, fingerprint(picture)


def download(url: str, label: str, limits: Limits) -> Download:
    """Fetch and judge one URL, retrying with back-off what may pass."""
    result = Download(url=url, label=label)
    for attempt in range(limits.retries + 1):
        result.attempts = attempt + 1
        try:
            result.data = fetch(url, limits)
            result.picture_format, result.print_ = judge(result.data)
            result.reason = ""
            return result
        except FetchFailed as failure:
            result.reason, result.data = str(failure), b""
            if not failure.retry or attempt == limits.retries or STOP.is_set():
                break
            time.sleep(limits.backoff * 2**attempt)
    if result.attempts > 1:
        result.reason += f" (after {result.attempts} tries)"
    return result


class Library:
    """The pictures FOLDER already holds (exact bytes and fingerprints), to skip copies of them."""

    def __init__(self, out: Path, quiet: bool):
        from transferlab.data.inspection import inspect_folder, list_files

        self.digests: set[str] = set()
        self.prints: list[Fingerprint] = []
        if out.is_dir() and any(d.is_dir() and not d.name.startswith(".") for d in out.iterdir()):
            infos, _ = inspect_folder(out, None, quiet, files=list_files(out)[0])
            self.digests = {i.sha256 for i in infos}
            self.prints = [p for p in (i.fingerprint() for i in infos) if p is not None]
        self.hashes = np.array([p.phash for p in self.prints], dtype=np.uint64)

    def holds(self, digest: str, print_: Fingerprint) -> bool:
        """Same bytes (sha256 `digest`), or a confirmed near-duplicate of a picture already held."""
        if digest in self.digests:
            return True
        return any(same_picture(self.prints[int(k)], print_) for k in candidates(self.hashes, print_.phash))

    def add(self, digest: str, print_: Fingerprint) -> None:
        self.digests.add(digest)
        self.prints.append(print_)
        self.hashes = np.append(self.hashes, np.uint64(print_.phash))


def collect(source: str | Path, out: str | Path, limits: Limits = Limits(), quiet: bool = False) -> CollectResult:
    """Download every URL of `source` not yet saved into `out` (see the module docstring)."""
    from tqdm.auto import tqdm

    start = time.monotonic()
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file: give a folder to collect into")
    pairs = read_url_lists(source)
    if out.is_dir() and {d.name.lower() for d in out.iterdir() if d.is_dir()} & {"train", "val", "valid"}:
        raise UsageError(f"{out} is split into train/ and val/: collect into a class-folder folder, then split it")
    done = _finished_urls(out / SOURCES)
    result = CollectResult(out=out, already=sum(1 for url, _ in pairs if url in done))
    todo = [(url, label) for url, label in pairs if url not in done]
    library = Library(out, quiet)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc="collect", unit="url", disable=quiet or not todo)
    pool = ThreadPoolExecutor(max(1, limits.concurrency), thread_name_prefix="collect")
    STOP.clear()
    pending: set[Future] = set()
    queue = iter(todo)
    try:
        with (out / SOURCES).open("a", newline="") as log_file:
            writer = csv.writer(log_file)
            if log_file.tell() == 0:
                writer.writerow(FIELDS)
            while True:
                while len(pending) < 2 * max(1, limits.concurrency):  # a bounded queue, not every URL at once
                    item = next(queue, None)
                    if item is None:
                        break
                    pending.add(pool.submit(download, *item, limits))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    writer.writerow(_keep(future.result(), out, library, result))
                    log_file.flush()
                    bar.update(1)
                    bar.set_postfix(saved=sum(result.saved.values()), failed=len(result.failed), refresh=False)
    except BaseException:  # interrupted: downloads in flight stop; everything finished is on disk and in sources.csv
        STOP.set()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
        result.seconds = time.monotonic() - start
    return result


def _keep(download_: Download, out: Path, library: Library, result: CollectResult) -> list:
    """Save one finished download (unless it failed or is a copy) and return its sources.csv row."""
    url, label = download_.url, download_.label
    if download_.reason:
        result.failed.append((url, download_.reason))
        return [url, label, "", "failed", download_.reason, 0]
    digest = hashlib.sha256(download_.data).hexdigest()
    print_ = cast(Fingerprint, download_.print_)  # a download without a reason was judged a picture: it has one
    if library.holds(digest, print_):
        result.duplicates += 1
        return [url, label, "", "duplicate", "the folder already holds this picture", len(download_.data)]
    name = file_name(url, EXTENSIONS[download_.picture_format])
    path = out / label / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.{os.getpid()}.part")
    tmp.write_bytes(download_.data)
    tmp.replace(path)
    library.add(digest, print_)
    result.saved[label] = result.saved.get(label, 0) + 1
    return [url, label, f"{label}/{name}", "saved", "", len(download_.data)]


def file_name(url: str, extension: str) -> str:
    """A readable, safe and unique name: the URL's own file name (letters, digits, '-', '_' kept; at most 40
    characters) and 8 hex digits of the URL's hash, with the extension of the format the bytes are in."""
    stem = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).stem
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in stem).strip("_.")[:40]
    return f"{stem or 'photo'}-{hashlib.sha1(url.encode()).hexdigest()[:8]}{extension}"


def _finished_urls(sources: Path) -> set[str]:
    """URLs an earlier run saved (file still there) or found to be copies: a rerun does not fetch them again."""
    if not sources.exists():
        return set()
    remedy = (
        "it records each download; move it aside and run collect again (photos already in the folder are found "
        "by their bytes and kept)"
    )
    try:
        with sources.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DamagedFile(sources, f"is damaged ({first_line(error)})", remedy) from None
    if rows and "url" not in rows[0]:
        raise DamagedFile(sources, "is damaged (no url column)", remedy)
    return {
        row["url"]
        for row in rows
        if row.get("status") == "duplicate"
        or (row.get("status") == "saved" and (sources.parent / (row.get("file") or "")).is_file())
    }
