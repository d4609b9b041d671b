"""Where transferlab keeps things on disk: the user cache folder, files written atomically (a temporary file
renamed into place, removed again if the write fails: a full disk leaves the previous file, never half of one),
and JSON read back with a one-line error naming a damaged file."""

from __future__ import annotations

import errno
import itertools
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferlab.errors import DamagedFile

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

_CALLS = itertools.count()
REWRITE = "run the command that wrote it again, or restore the folder from a copy"


def cache_dir() -> Path:
    """The cache folder: `$TRANSFERLAB_CACHE`, else `~/.cache/transferlab` (features, doctor results, demo data)."""
    return Path(os.environ.get("TRANSFERLAB_CACHE", Path.home() / ".cache" / "transferlab"))


def temporary_beside(path: Path) -> Path:
    """A temporary name beside `path`, unique to this call: two threads of one process writing the same file at once
    (the studio's checks, its Inbox and its page share caches) never rename each other's file away."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{next(_CALLS)}.tmp")


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to a temporary file beside `path` (`temporary_beside`), then rename it into place. If the
    write fails (a full disk, Ctrl-C), the temporary file is removed and `path` is left as it was."""
    tmp = temporary_beside(path)
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException as error:
        full = isinstance(error, Exception) and not isinstance(error, OSError) and _disk_full(error, path.parent)
        tmp.unlink(missing_ok=True)
        if full:  # safetensors and torch report a full disk in their own words: say it as the machine does
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise


def _disk_full(error: BaseException, folder: Path) -> bool:
    text = str(error)
    if "os error 28" in text or "No space left" in text:
        return True
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 1 << 20  # less than 1 MB left: the write ran out of room


def save_figure(figure: Figure | Image.Image, path: Path, dpi: int = 100) -> None:
    """A matplotlib Figure or a Pillow image as a PNG, written atomically, with zlib's fastest level: a gallery of
    photos took 0.74 s at the default level, 0.43 s at level 1, for a file 13% larger (measured; every run writes
    several figures)."""
    from PIL import Image

    if isinstance(figure, Image.Image):
        picture = figure
        write_atomically(path, lambda tmp: picture.save(tmp, format="PNG", compress_level=1))
    else:
        plot = figure
        write_atomically(path, lambda tmp: plot.savefig(tmp, dpi=dpi, format="png", pil_kwargs={"compress_level": 1}))


def save_json(data: Any, path: Path) -> None:
    """Write JSON atomically."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    write_atomically(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: str | Path, remedy: str = REWRITE) -> Any:
    """JSON written by transferlab; a file that is empty, cut short or not JSON is a `DamagedFile` saying so."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DamagedFile(path, "is damaged (not text)", remedy) from None
    if not text.strip():
        raise DamagedFile(path, "is empty (a full disk, or a copy cut short?)", remedy)
    try:
        return json.loads(text)
    except ValueError as error:
        raise DamagedFile(path, f"is damaged (not JSON: {error})", remedy) from None


def read_json_if_readable(path: str | Path) -> Any:
    """JSON, or None when the file is missing, half-written by a running command or damaged: for views (the
    studio) that show what is there and look again later."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_json_object(path: str | Path, remedy: str = REWRITE) -> dict:
    """As `read_json`, for files holding one JSON object."""
    data = read_json(path, remedy)
    if not isinstance(data, dict):
        raise DamagedFile(Path(path), f"is damaged (a JSON {type(data).__name__} where an object belongs)", remedy)
    return data
