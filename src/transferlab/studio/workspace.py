"""The photo folder the studio works on: its classes and photos (listed without decoding anything, page by page),
thumbnails (cached), new classes and new photos, and every path a request names, confined to the folder.

Confinement holds after symlinks: a class folder (or train/, val/) that is a link pointing out of the folder is
neither listed nor written into, and a photo that is a link pointing out is neither listed nor read.

Both layouts are understood: `FOLDER/<class>/*` and `FOLDER/train/<class>/*` + `FOLDER/val/<class>/*`. Unlike
training, an empty folder or an empty class is fine here: the studio is where a folder is built.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from transferlab.data.images import VAL_DIR_NAMES, is_hidden_name, is_image_file
from transferlab.errors import UsageError
from transferlab.inference.web import MAX_PIXELS
from transferlab.utils.storage import cache_dir, write_atomically

THUMB_SIDE = 160
SPLITS = ("train", "val")


@dataclass(kw_only=True)
class PhotoClass:
    name: str
    counts: dict[str, int]  # split ("all", or "train" and "val") -> photos


class Workspace:
    """A photo folder, and the folder beside it where the studio keeps its journal and the photos set aside."""

    def __init__(self, folder: str | Path):
        self.folder = Path(os.path.abspath(Path(folder).expanduser()))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.home = self.folder.parent / f"{self.folder.name}.studio"  # journal.jsonl and set-aside/
        self.aside = self.home / "set-aside"

    # --- what is in the folder ---------------------------------------------------------------------------------

    def split_dirs(self) -> dict[str, Path] | None:
        """{"train": ..., "val": ...} when the folder is split, else None."""
        children = {p.name.lower(): p for p in self._dirs(self.folder)}  # a train/ pointing out is no split
        val = next((children[n] for n in VAL_DIR_NAMES if n in children), None)
        return {"train": children["train"], "val": val} if "train" in children and val is not None else None

    def classes(self) -> list[PhotoClass]:
        splits = self.split_dirs()
        if splits is None:
            return [PhotoClass(name=d.name, counts={"all": self._count(d)}) for d in self._dirs(self.folder)]
        names = sorted({d.name for split in splits.values() for d in self._dirs(split)})
        return [PhotoClass(name=n, counts={s: self._count(splits[s] / n) for s in SPLITS}) for n in names]

    def photos(self, name: str, split: str = "all", offset: int = 0, limit: int = 60) -> tuple[list[str], int]:
        """A page of class `name`'s photos (paths relative to the folder, sorted), and how many there are."""
        folders = [self.class_dir(name, s) for s in (SPLITS if split == "all" and self.split_dirs() else [split])]
        files = sorted(p for d in folders if d.is_dir() for p in _images(d, self.real))
        return [str(p.relative_to(self.folder)) for p in files[offset : offset + limit]], len(files)

    def class_dir(self, name: str, split: str = "all") -> Path:
        """Class `name`'s folder (in `split` when the folder is split); one that resolves out of the folder (a
        symlink pointing out) is refused."""
        check_class_name(name)
        splits = self.split_dirs()
        if splits is None:
            folder = self.folder / name
        elif split not in SPLITS:
            raise UsageError(f"the folder is split into train/ and val/: say which ('{split}' is neither)")
        else:
            folder = splits[split] / name
        if not self._inside(folder):
            raise UsageError(f"{name}: the class folder points out of the photo folder (a link): refused")
        return folder

    def create_class(self, name: str) -> list[Path]:
        folders = [self.class_dir(name, s) for s in (SPLITS if self.split_dirs() else ["all"])]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        return folders

    # --- paths a request names ---------------------------------------------------------------------------------

    def photo(self, relative: str) -> Path:
        """The photo at `relative` (to the folder), resolved: `..`, absolute paths and symlinks out are refused."""
        return confined(self.folder, relative, must_exist=True)

    def relative(self, path: str | Path) -> str | None:
        """`path` relative to the folder, or None when it is not inside it."""
        resolved = Path(os.path.realpath(path))
        root = Path(os.path.realpath(self.folder))
        return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else None

    def _count(self, folder: Path) -> int:
        return len(_images(folder, self.real)) if folder.is_dir() and self._inside(folder) else 0

    @property
    def real(self) -> Path:
        """The folder with every symlink resolved: what confinement is checked against."""
        return Path(os.path.realpath(self.folder))

    def _inside(self, path: Path) -> bool:
        resolved = Path(os.path.realpath(path))
        return resolved.is_relative_to(self.real) and resolved != self.real

    def _dirs(self, folder: Path) -> list[Path]:
        """The visible sub-folders of `folder` that stay inside the photo folder after symlinks."""
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if not is_hidden_name(p.name) and p.is_dir() and self._inside(p))


def confined(root: Path, relative: str, must_exist: bool = False) -> Path:
    """`root / relative` resolved, refused with a UsageError unless it stays inside `root` (after symlinks)."""
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        raise UsageError("a path relative to the folder is needed")
    real_root = Path(os.path.realpath(root))
    path = Path(os.path.realpath(real_root / relative))
    if not path.is_relative_to(real_root) or path == real_root:
        raise UsageError(f"{relative}: outside the folder")
    if must_exist and not path.is_file():
        raise UsageError(f"{relative}: no such photo")
    return path


def check_class_name(name: str) -> None:
    """A class name must be a plain folder name, not hidden, and not 'unknown' (predict's answer)."""
    if (
        not name
        or name != name.strip()
        or is_hidden_name(name)
        or re.search(r"[/\\\x00-\x1f]", name)
        or name in (".", "..")
        or name.lower() == "unknown"
        or name.lower() in ("train", *VAL_DIR_NAMES)
        or len(name.encode()) > 200
    ):
        raise UsageError(
            f"'{name}' cannot be a class name: use a plain folder name (not hidden, no slashes, not 'unknown', "
            "'train' or 'val')"
        )


def thumbnail(path: Path, side: int = THUMB_SIDE, max_pixels: int = MAX_PIXELS) -> bytes:
    """A JPEG thumbnail of the photo at `path`, cached by path, size and modification time. A picture of more than
    `max_pixels` pixels (read from its header) is refused with a UsageError before a pixel is decoded."""
    stat = path.stat()
    key = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{side}".encode()).hexdigest()
    cached = cache_dir() / "thumbs" / f"{key}.jpg"
    if cached.exists():
        return cached.read_bytes()
    from PIL import Image, ImageOps

    from transferlab.data.images import to_rgb

    with Image.open(path) as image:
        if image.size[0] * image.size[1] > max_pixels:
            raise UsageError(f"{path.name}: too many pixels to show ({image.size[0]}x{image.size[1]})")
        image.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a fraction of the size
        picture = to_rgb(ImageOps.exif_transpose(image))
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    data = buffer.getvalue()
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(cached, lambda tmp: tmp.write_bytes(data))  # two requests for one thumbnail at once: each its own
    return data


def _images(folder: Path, root: Path) -> list[Path]:
    """The photos under `folder` (not in hidden folders; sub-folder links not followed), each resolving inside
    `root`."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not is_hidden_name(d)]
        for name in filenames:
            path = Path(dirpath) / name
            if is_hidden_name(name) or not is_image_file(path):
                continue
            if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root):
                continue  # a link pointing out of the folder
            found.append(path)
    return found
