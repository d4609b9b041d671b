"""Every photo decoded once: the pictures training and evaluation read, in memory or memory-mapped.

The reference project decoded and resized every photo again in every epoch. Here `decode_split` decodes each file
once, in parallel worker processes, to a uint8 tensor: training pictures keep a short side of at most twice the
input size (`presets.train_view`), validation pictures are stored already resized and centre-cropped. Unreadable
files are skipped with a warning naming them, and listed in the result. The tensors live in memory, or in a
memory-mapped file when they would not fit comfortably (`choose_store` decides from an estimate of their size,
`estimate_decoded_bytes`, and the free memory). A perceptual fingerprint of each picture is taken on the way, for
the leakage check.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transferlab.data.fingerprints import Fingerprint, fingerprint
from transferlab.data.images import load_rgb
from transferlab.data.layout import Sample
from transferlab.data.presets import decoded_view, eval_view, train_view
from transferlab.errors import UnreadableImage
from transferlab.utils.parallel import parallel_imap
from transferlab.utils.progress import report
from transferlab.utils.storage import cache_dir

log = logging.getLogger("transferlab")


@dataclass(kw_only=True)
class DecodedSplit:
    """One split's pictures decoded once: uint8 (3, H, W) tensors with their labels, paths and fingerprints."""

    images: list[torch.Tensor]
    labels: torch.Tensor
    paths: list[Path]
    fingerprints: list[Fingerprint | None] = field(default_factory=list)  # None: not fingerprinted
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    _digest: tuple[tuple[int, ...], str] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.images)

    def digest(self) -> str:
        """A hash of every picture's pixels, in order (what cached features of this split depend on). Kept while the
        split holds the same pictures: a run asks twice (its features, then the unknown test's), ~0.5 s each."""
        pictures = tuple(map(id, self.images))
        if self._digest is None or self._digest[0] != pictures:
            total = hashlib.sha256()
            for image in self.images:
                total.update(str(tuple(image.shape)).encode())
                total.update(hashlib.blake2b(image.numpy().tobytes(), digest_size=16).digest())
            self._digest = (pictures, total.hexdigest())
        return self._digest[1]

    def subset(self, indices: list[int]) -> DecodedSplit:
        """The pictures at `indices` (timings and skipped files stay with the whole split)."""
        return DecodedSplit(
            images=[self.images[i] for i in indices],
            labels=self.labels[indices],
            paths=[self.paths[i] for i in indices],
            fingerprints=[self.fingerprints[i] for i in indices] if self.fingerprints else [],
        )

    @staticmethod
    def merge(parts: list[DecodedSplit], order: list[Path]) -> DecodedSplit:
        """Put shards decoded by different processes back together in `order` (the original sample order)."""
        by_path = {path: (part, i) for part in parts for i, path in enumerate(part.paths)}
        kept = [path for path in order if path in by_path]
        pick = [by_path[path] for path in kept]
        return DecodedSplit(
            images=[part.images[i] for part, i in pick],
            labels=torch.stack([part.labels[i] for part, i in pick]) if pick else torch.zeros(0, dtype=torch.long),
            paths=kept,
            fingerprints=[part.fingerprints[i] for part, i in pick],
            skipped=[s for part in parts for s in part.skipped],
            seconds=max(p.seconds for p in parts),
        )


class Decode:
    """Decode one file for a worker process: (uint8 array or the reason it failed, perceptual fingerprint or None).

    Without `crop`, the training picture: short side at most `size` (`presets.train_view`). With `crop`, the
    evaluation input: resized to short side `size`, then centre-cropped to `crop`.
    """

    def __init__(self, size: int, crop: int | None, background: tuple[int, int, int], fingerprints: bool = True):
        self.size, self.crop, self.background, self.fingerprints = size, crop, background, fingerprints

    def __call__(self, path: Path) -> tuple[np.ndarray | str, Fingerprint | None]:
        try:
            picture = load_rgb(path, self.background, min_side=self.size)
        except UnreadableImage as error:
            return str(error), None
        if self.crop:
            tensor = eval_view(decoded_view(picture, self.size), self.crop)
        else:
            tensor = train_view(picture, self.size)
        return tensor.numpy(), fingerprint(picture) if self.fingerprints else None


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (MemAvailable), or total physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimate_decoded_bytes(samples: list[Sample], size: int, crop: int | None, probe: int = 64) -> int:
    """Bytes the decoded split will take: exact for centre crops; for training pictures (short side at most
    `size`), from the sizes in up to `probe` files' headers (reading a header does not decode the picture)."""
    if crop:
        return len(samples) * 3 * crop * crop
    sizes = []
    for sample in samples[:: max(1, len(samples) // probe)][:probe]:
        try:
            with Image.open(sample.path) as image:
                short, long = sorted(image.size)
            kept = min(short, size)
            sizes.append(3 * kept * long * kept / max(1, short))
        except Exception:  # unreadable files are reported by the decoder
            continue
    return int(len(samples) * (np.mean(sizes) if sizes else 3 * size * size * 4 / 3))


def choose_store(estimated_bytes: int, share: float = 0.5) -> str:
    """ "memory" when the decoded pictures take at most `share` of the available memory, else "disk"."""
    return "memory" if estimated_bytes <= share * available_memory() else "disk"


def decode_split(
    samples: list[Sample],
    size: int,
    crop: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    workers: int | None = None,
    desc: str = "decode",
    *,
    quiet: bool = False,
    store: str = "memory",
) -> DecodedSplit:
    """Decode every sample once (in parallel): training pictures with short side at most `size`, or with `crop`,
    evaluation centre crops of the picture resized to `size` (see `Decode`).

    `store="disk"` writes the pictures to a memory-mapped file as they arrive instead of holding them in memory
    (the file is unlinked at once: the mapping lives as long as the process, and nothing is left behind).
    """
    start = time.perf_counter()
    # fingerprints need imagehash (and scipy's FFT): imported once here, where the workers are forked from, not
    # again in each of them (~0.4 s a worker)
    import imagehash  # noqa: F401

    results = parallel_imap(Decode(size, crop, background), [s.path for s in samples], workers, desc, quiet)
    sink = _DiskSink() if store == "disk" else None
    kept, skipped, images, fingerprints = [], [], [], []
    report("decoding", desc, 0, len(samples))
    for done, (sample, (result, fp)) in enumerate(zip(samples, results), 1):
        report("decoding", desc, done, len(samples))
        if isinstance(result, str):
            log.warning("skipped %s: %s", sample.path, result)
            skipped.append((sample.path, result))
            continue
        kept.append(sample)
        if sink:
            sink.write(result)
        else:
            images.append(torch.from_numpy(result))
        fingerprints.append(fp)
    if sink:
        images = sink.close()
    return DecodedSplit(
        images=images,
        labels=torch.tensor([s.label for s in kept], dtype=torch.long),
        paths=[s.path for s in kept],
        fingerprints=fingerprints,
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )


class _DiskSink:
    """Appends uint8 arrays to a temporary file, then maps it back as tensors (copy-on-write, so never written)."""

    def __init__(self):
        folder = cache_dir() / "decoded"
        folder.mkdir(parents=True, exist_ok=True)
        self.file = tempfile.NamedTemporaryFile(dir=folder, suffix=".u8", delete=False)
        self.entries: list[tuple[int, tuple[int, ...]]] = []

    def write(self, array: np.ndarray) -> None:
        self.entries.append((self.file.tell(), array.shape))
        self.file.write(np.ascontiguousarray(array).tobytes())

    def close(self) -> list[torch.Tensor]:
        self.file.close()
        path = Path(self.file.name)
        try:
            if not self.entries:
                return []
            mapped = np.memmap(path, dtype=np.uint8, mode="c")
            return [
                torch.from_numpy(mapped[offset : offset + int(np.prod(shape))].reshape(shape))
                for offset, shape in self.entries
            ]
        finally:
            path.unlink()
