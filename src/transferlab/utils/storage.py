"""Where transferlab keeps things on disk: the user cache folder, and JSON files written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder: `$TRANSFERLAB_CACHE`, else `~/.cache/transferlab` (features, doctor results, demo data)."""
    return Path(os.environ.get("TRANSFERLAB_CACHE", Path.home() / ".cache" / "transferlab"))


def save_json(data: dict, path: Path) -> None:
    """Write JSON atomically (temporary file, then rename), so an interruption never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
