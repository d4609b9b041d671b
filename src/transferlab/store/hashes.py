"""Each photo's key: a hash of its file's bytes, so a renamed, moved or copied photo is the same entry and a photo
changed by one byte is a new one. Reading every file again on every run would cost what a small folder's whole run
costs, so the key is remembered per file identity (device, inode, size, modification time) in a small SQLite table
beside the store; a file whose identity changed is read and hashed again. A damaged table is started afresh."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("transferlab")

CHUNK = 1 << 20


def bytes_key(path: Path) -> str:
    """The hash of a file's bytes (BLAKE2b, 128 bits, hex)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def photo_keys(paths: Sequence[Path], memo: Path | None) -> list[str | None]:
    """The bytes key of each file (None: it cannot be read), remembered in the SQLite file `memo` (None: none)."""
    identities: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            identities.append(_identity(os.stat(path)))
        except OSError:
            identities.append(None)
    known = _read_memo(memo) if memo else {}
    keys: list[str | None] = []
    learned: list[tuple[int, int, int, int, str]] = []
    for path, identity in zip(paths, identities):
        key = known.get(identity) if identity else None
        if key is None and identity is not None:
            try:
                key = bytes_key(path)
            except OSError:
                key = None
            if key is not None:
                learned.append((*identity, key))
        keys.append(key)
    if memo and learned:
        _write_memo(memo, learned)
    return keys


def _connect(memo: Path) -> sqlite3.Connection:
    memo.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(memo, timeout=30)
    connection.execute(
        "CREATE TABLE IF NOT EXISTS files (dev INTEGER, ino INTEGER, size INTEGER, mtime INTEGER, key TEXT,"
        " PRIMARY KEY (dev, ino))"
    )
    return connection


def _read_memo(memo: Path) -> dict[tuple[int, int, int, int], str]:
    if not memo.exists():
        return {}
    try:
        with _connect(memo) as connection:
            rows = connection.execute("SELECT dev, ino, size, mtime, key FROM files").fetchall()
    except sqlite3.DatabaseError as error:  # damaged: the keys are computed again and the table started afresh
        log.warning("starting the photo keys' table %s afresh (%s)", memo, error)
        memo.unlink(missing_ok=True)
        return {}
    return {(d, i, s, m): key for d, i, s, m, key in rows if isinstance(key, str) and len(key) == 32}


def _write_memo(memo: Path, rows: list[tuple[int, int, int, int, str]]) -> None:
    try:
        connection = _connect(memo)
        with connection:
            connection.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", rows)
        connection.close()
    except sqlite3.Error as error:  # a memo that cannot be written costs time on the next run, nothing else
        log.warning("could not remember photo keys in %s: %s", memo, error)
