"""Demo data for users who are online: the PyTorch transfer-learning tutorial's ants/bees photos.

`demo_dataset()` downloads the archive once into the cache folder, checks it (every member's CRC, the expected
train/val class layout, and on later uses the SHA-256 recorded at first download) and returns the extracted folder.
Offline, pass any photo folder instead (e.g. `make demo DATA=../shared/datasets/animals4`).
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
import zipfile
from pathlib import Path

from transferlab.errors import DownloadError
from transferlab.utils.storage import cache_dir

DEMO_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
EXPECTED_FOLDERS = ("train/ants", "train/bees", "val/ants", "val/bees")


def demo_dataset(url: str = DEMO_URL) -> Path:
    """Path to the extracted demo dataset, downloading and verifying it on first use."""
    root = cache_dir()
    target = root / "hymenoptera_data"
    if all((target / sub).is_dir() for sub in EXPECTED_FOLDERS):
        return target
    archive = root / "hymenoptera_data.zip"
    if not archive.exists():
        root.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".zip.part")
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as handle:
                shutil.copyfileobj(response, handle)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise DownloadError(
                f"could not download the demo photos from {url} ({error}). Offline? Give a folder of your own "
                "photos instead: DATA/<class>/*.jpg, or DATA/train/<class>/* + DATA/val/<class>/*"
            ) from None
        partial.replace(archive)
    verify_archive(archive)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(root)
    return target


def verify_archive(archive: Path) -> str:
    """Check the archive's CRCs and layout, and its SHA-256 against the one recorded at first download."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    recorded = archive.with_suffix(".zip.sha256")
    if recorded.exists() and recorded.read_text().strip() != digest:
        raise DownloadError(f"{archive} changed since it was downloaded (SHA-256 mismatch); delete it and retry")
    with zipfile.ZipFile(archive) as bundle:
        broken = bundle.testzip()
        if broken:
            raise DownloadError(f"{archive} is corrupt (bad CRC in {broken}); delete it and retry")
        names = bundle.namelist()
    for sub in EXPECTED_FOLDERS:
        if not any(n.startswith(f"hymenoptera_data/{sub}/") for n in names):
            raise DownloadError(f"{archive} does not hold hymenoptera_data/{sub}/; delete it and retry")
    recorded.write_text(digest + "\n")
    return digest
