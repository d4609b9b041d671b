"""`PhotoStore`: arrays computed from photos, one file per (space, photo key), under the cache folder.

A space names what an array is (`picture/...` at one decoded size, `fingerprint/...`, `features/<backbone>/<view>`);
the layers above build the names, the store only hashes them into a folder. Each entry is a `.npy` file: written
to a temporary file of its own and renamed into place (two processes filling one entry: the last rename wins, whole),
read back memory-mapped where it is large (decoded pictures), touched when read so the least recently used go
first when the store outgrows its limit (`trim`). An entry that cannot be read is deleted and reported missing, so
the caller computes it again. `transferlab cache` shows the usage and clears it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferlab.store.hashes import photo_keys
from transferlab.utils.storage import cache_dir, temporary_beside

log = logging.getLogger("transferlab")

DEFAULT_LIMIT = 20 * 10**9  # bytes; `transferlab cache --limit` or $TRANSFERLAB_CACHE_LIMIT changes it
MEMO_BYTES = 512 * 10**6  # small entries (features, fingerprints) kept in memory once read, per process
MEMO_ENTRY = 64 * 1024  # ... those up to this size (a feature vector is 5 KB; a decoded picture is never kept)


@dataclass(frozen=True, kw_only=True)
class SpaceUsage:
    """One space's entries and their bytes on disk."""

    name: str
    entries: int
    bytes: int


@dataclass(frozen=True, kw_only=True)
class StoreUsage:
    """The whole store: where it is, its entries and bytes, its limit, and each space's share."""

    root: Path
    entries: int
    bytes: int
    limit: int
    spaces: list[SpaceUsage]


def parse_size(text: str) -> int:
    """'20GB', '500 MB', '1.5G', '1000000' -> bytes (decimal units)."""
    value = text.strip().upper().replace(" ", "").removesuffix("B")
    scale = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}.get(value[-1:], 1)
    number = value[:-1] if scale > 1 else value
    try:
        size = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (write it like 20GB or 500MB)") from None
    if not size > 0 or size != size or size == float("inf"):
        raise ValueError(f"a size must be more than 0: {text!r}")
    return int(size * scale)


class PhotoStore:
    """Arrays keyed by (space, photo key) under `root`, at most `limit` bytes after each `trim`."""

    def __init__(self, root: Path, *, limit: int | None = None):
        self.root = Path(root)
        self.limit = limit if limit is not None else self._saved_limit()
        self._known_spaces: set[str] = set()
        self._lock = threading.Lock()
        self._dirs: dict[str, Path] = {}
        # entries are named by what they hold, so one read stays true: a long-lived process (the studio's live
        # model) reads each small entry from disk once, with `remember_small_entries`
        self.memo_limit = 0
        self._memo: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._memo_bytes = 0

    def __reduce__(self):  # sent to another process (torchrun's exchange): the same store there, by its folder
        return (open_store, (self.root,))

    # --- keys and places --------------------------------------------------------------------------------------

    def keys(self, paths: Sequence[Path]) -> list[str | None]:
        """Each file's key (the hash of its bytes; None: unreadable), remembered per file identity."""
        return photo_keys(paths, self.root / "keys.sqlite")

    def _space_dir(self, space: str) -> Path:
        folder = self._dirs.get(space)
        if folder is None:
            folder = self._dirs[space] = self.root / "spaces" / hashlib.sha1(space.encode()).hexdigest()[:16]
        return folder

    def _path(self, space: str, key: str) -> Path:
        return self._space_dir(space) / key[:2] / f"{key}.npy"

    def _name_space(self, space: str) -> None:
        """Write the space's readable name beside its entries (once per process), for `transferlab cache`."""
        if space in self._known_spaces:
            return
        folder = self._space_dir(space)
        folder.mkdir(parents=True, exist_ok=True)
        name = folder / "space.txt"
        if not name.exists():
            self._write(name, lambda tmp: tmp.write_text(space + "\n", encoding="utf-8"))
        self._known_spaces.add(space)

    # --- entries ------------------------------------------------------------------------------------------------

    def get(self, space: str, key: str, *, mmap: bool = False) -> np.ndarray | None:
        """The array stored for `key` in `space`, or None (missing, or damaged: then it is deleted). With `mmap`,
        mapped copy-on-write from the file rather than read (large pictures: only the pages used are loaded)."""
        if not mmap:
            with self._lock:
                memo = self._memo.get((space, key))
                if memo is not None:
                    self._memo.move_to_end((space, key))
                    return memo
        path = self._path(space, key)
        try:
            array = np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as error:
            log.warning("recomputing a damaged store entry %s (%s)", path, error)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # read now: the least recently used entries are trimmed first
        except OSError:
            pass
        if not mmap and self.memo_limit and array.nbytes <= MEMO_ENTRY:
            self._remember(space, key, array)
        return array

    def remember_small_entries(self, limit: int = MEMO_BYTES) -> None:
        """Keep small entries (features, fingerprints) in memory once read, up to `limit` bytes, least recently
        used dropped first: for a process that reads the same entries again and again (the studio)."""
        self.memo_limit = limit

    def _remember(self, space: str, key: str, array: np.ndarray) -> None:
        array.flags.writeable = False  # shared by every later reader in this process
        with self._lock:
            if (space, key) not in self._memo:
                self._memo_bytes += array.nbytes
            self._memo[(space, key)] = array
            while self._memo_bytes > self.memo_limit:
                _, dropped = self._memo.popitem(last=False)
                self._memo_bytes -= dropped.nbytes

    def _forget(self, space: str, key: str) -> None:
        with self._lock:
            dropped = self._memo.pop((space, key), None)
            if dropped is not None:
                self._memo_bytes -= dropped.nbytes

    def get_many(self, space: str, keys: Sequence[str | None]) -> list[np.ndarray | None]:
        """`get` for each key (None keys stay None)."""
        return [None if key is None else self.get(space, key) for key in keys]

    def put(self, space: str, key: str, array: np.ndarray) -> None:
        """Store `array` (atomically: a reader sees the previous entry or this one, never half of one)."""
        self._name_space(space)
        path = self._path(space, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(path, lambda tmp: _save(tmp, array))
        self._forget(space, key)

    def discard(self, space: str, key: str) -> None:
        """Forget one entry (a caller found it unusable: wrong shape, not finite)."""
        self._forget(space, key)
        self._path(space, key).unlink(missing_ok=True)

    @staticmethod
    def _write(path: Path, write) -> None:
        tmp = temporary_beside(path)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # --- size ---------------------------------------------------------------------------------------------------

    def _entries(self) -> list[tuple[float, int, Path, str]]:
        """(last used, bytes, path, space folder) of every entry."""
        found: list[tuple[float, int, Path, str]] = []
        spaces = self.root / "spaces"
        if not spaces.is_dir():
            return found
        for space in os.scandir(spaces):
            if not space.is_dir(follow_symlinks=False):
                continue
            for shard in os.scandir(space.path):
                if not shard.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(shard.path):
                    if entry.name.endswith(".npy") and entry.is_file(follow_symlinks=False):
                        try:
                            stat = entry.stat(follow_symlinks=False)
                        except OSError:  # removed meanwhile (another process trimming)
                            continue
                        found.append((stat.st_mtime, stat.st_blocks * 512, Path(entry.path), space.name))
        return found

    def usage(self) -> StoreUsage:
        """Entries and bytes on disk, by space."""
        by_space: dict[str, list[int]] = {}
        for _, size, _, space in self._entries():
            counts = by_space.setdefault(space, [0, 0])
            counts[0] += 1
            counts[1] += size
        spaces = []
        for folder, (entries, size) in sorted(by_space.items(), key=lambda item: -item[1][1]):
            name_file = self.root / "spaces" / folder / "space.txt"
            try:
                name = name_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                name = folder
            spaces.append(SpaceUsage(name=name, entries=entries, bytes=size))
        return StoreUsage(
            root=self.root,
            entries=sum(s.entries for s in spaces),
            bytes=sum(s.bytes for s in spaces),
            limit=self.limit,
            spaces=spaces,
        )

    def trim(self, limit: int | None = None) -> int:
        """Delete the least recently used entries until the store holds at most `limit` (default: its limit) bytes;
        the bytes freed."""
        limit = self.limit if limit is None else limit
        entries = self._entries()
        total = sum(size for _, size, _, _ in entries)
        freed = 0
        with self._lock:
            for _, size, path, _ in sorted(entries, key=lambda e: e[0]):
                if total - freed <= limit:
                    break
                path.unlink(missing_ok=True)
                freed += size
        if freed:
            log.info("store: %.0f MB of the least recently used entries removed (limit %.1f GB)", freed / 1e6,
                     limit / 1e9)  # fmt: skip
        return freed

    def clear(self) -> int:
        """Delete every entry and the remembered keys; the bytes freed."""
        freed = self.usage().bytes
        with self._lock:
            self._memo.clear()
            self._memo_bytes = 0
        shutil.rmtree(self.root / "spaces", ignore_errors=True)
        (self.root / "keys.sqlite").unlink(missing_ok=True)
        return freed

    # --- the limit ----------------------------------------------------------------------------------------------

    def _saved_limit(self) -> int:
        text = os.environ.get("TRANSFERLAB_CACHE_LIMIT")
        source = "$TRANSFERLAB_CACHE_LIMIT"
        if text is None:
            try:
                text, source = (self.root / "limit").read_text(encoding="utf-8"), str(self.root / "limit")
            except (OSError, UnicodeDecodeError):
                return DEFAULT_LIMIT
        try:
            return parse_size(text)
        except ValueError as error:
            log.warning("ignoring the store limit in %s (%s): %.0f GB", source, error, DEFAULT_LIMIT / 1e9)
            return DEFAULT_LIMIT

    def save_limit(self, limit: int) -> None:
        """Keep `limit` for every later process (`transferlab cache --limit`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._write(self.root / "limit", lambda tmp: tmp.write_text(f"{limit}\n", encoding="utf-8"))
        self.limit = limit


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


_stores: dict[Path, PhotoStore] = {}


def open_store(root: Path | None = None) -> PhotoStore:
    """The store under the cache folder (`$TRANSFERLAB_CACHE/store`), one object per folder and process."""
    root = Path(root) if root is not None else cache_dir() / "store"
    if root not in _stores:
        _stores[root] = PhotoStore(root)
    return _stores[root]
