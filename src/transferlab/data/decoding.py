"""Every photo decoded once, ever: the pictures training and evaluation read, kept in the per-photo store.

The reference project decoded and resized every photo again in every epoch. Here `decode_split` names each file by
a hash of its bytes (`store.photo_keys`) and decodes, in parallel worker processes, only the files the store has
not seen: each worker writes the picture (training pictures with a short side of at most twice the input size,
`presets.train_view`; validation pictures already resized and centre-cropped) and its perceptual fingerprint (for
the leakage check) into the store, and sends back only the fingerprint. The split's pictures are then read back
one at a time, when something asks for them (`Pictures`): a run whose features are all stored reads
no picture at all, and none of them is held in memory (unless `keep="memory"`). Unreadable files are skipped with a
warning naming them, and listed in the result.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import numpy as np
import torch

from transferlab.data.fingerprints import Fingerprint, fingerprint
from transferlab.data.images import load_rgb
from transferlab.data.layout import Sample
from transferlab.data.presets import decoded_view, eval_view, train_view
from transferlab.data.spaces import fingerprint_space, picture_space
from transferlab.errors import UnreadableImage
from transferlab.store import PhotoStore, open_store
from transferlab.utils.parallel import parallel_imap
from transferlab.utils.progress import report

log = logging.getLogger("transferlab")

THUMB = 32 * 32


def pack_fingerprint(print_: Fingerprint) -> np.ndarray:
    """A fingerprint as 8 + 8 + 1024 bytes (pHash, aspect, thumbnail), as the store keeps it."""
    head = struct.pack(">Qd", print_.phash, print_.aspect)
    return np.frombuffer(head + print_.thumb, dtype=np.uint8)


def unpack_fingerprint(array: np.ndarray | None) -> Fingerprint | None:
    """The fingerprint packed by `pack_fingerprint`, or None (missing or not of that shape)."""
    if array is None or array.dtype != np.uint8 or array.shape != (16 + THUMB,):
        return None
    phash, aspect = struct.unpack(">Qd", array[:16].tobytes())
    return Fingerprint(phash=phash, thumb=array[16:].tobytes(), aspect=aspect)


class Pictures(Sequence[torch.Tensor]):
    """A split's decoded pictures, read from the store when asked for, decoded again where the
    store lost one (trimmed, damaged). Nothing is held: a picture lives as long as the tensor the caller keeps."""

    def __init__(self, *, store: PhotoStore, decode: Decode, keys: list[str], paths: list[Path]):
        self.store, self.decode, self.keys, self.paths = store, decode, keys, paths
        self.space = picture_space(decode.size, decode.crop, decode.background)

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> torch.Tensor: ...
    @overload
    def __getitem__(self, index: slice) -> list[torch.Tensor]: ...
    def __getitem__(self, index: int | slice) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        key = self.keys[index]
        # read, not memory-mapped: mapped pictures stayed resident until the end of a pass (0.3 MB a photo: 3 GB
        # more at 8,000 photos, measured); a read one is freed as soon as its tensor is
        array = self.store.get(self.space, key)
        if array is None or array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] != 3:
            picture = self.decode.picture(self.paths[index])  # raises UnreadableImage if it cannot be read now
            self.store.put(self.space, key, picture)
            array = picture
        # a small picture the store keeps in memory is shared, read-only: the tensor gets its own copy
        return torch.from_numpy(array if array.flags.writeable else array.copy())

    def subset(self, indices: list[int]) -> Pictures:
        return Pictures(
            store=self.store, decode=self.decode, keys=[self.keys[i] for i in indices],
            paths=[self.paths[i] for i in indices],
        )  # fmt: skip


@dataclass(kw_only=True)
class DecodedSplit:
    """One split's pictures decoded once: uint8 (3, H, W) tensors (`Pictures` from the store, or a list) with their
    labels, paths, photo keys (hashes of the files' bytes) and fingerprints."""

    images: Sequence[torch.Tensor]
    labels: torch.Tensor
    paths: list[Path]
    keys: list[str] = field(default_factory=list)  # empty: pictures made in memory (tests), hashed by pixels
    space: str = ""  # how the pictures were decoded (`picture_space`), with `keys`
    fingerprints: list[Fingerprint | None] = field(default_factory=list)  # None: not fingerprinted
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    decoded: int = 0  # photos decoded by this process (the rest came from the store)
    _digest: tuple[tuple[int, ...], str] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.images)

    def digest(self) -> str:
        """A hash of the split's photos, in order: their keys (bytes) and the decoding, or without keys every
        picture's pixels."""
        if self.keys:
            return hashlib.sha256("\n".join([self.space, *self.keys]).encode()).hexdigest()
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
        images = self.images
        return DecodedSplit(
            images=images.subset(indices) if isinstance(images, Pictures) else [images[i] for i in indices],
            labels=self.labels[indices],
            paths=[self.paths[i] for i in indices],
            keys=[self.keys[i] for i in indices] if self.keys else [],
            space=self.space,
            fingerprints=[self.fingerprints[i] for i in indices] if self.fingerprints else [],
        )

    def in_memory(self) -> DecodedSplit:
        """The same split with every picture read into memory (faster epochs when they fit)."""
        images = [torch.from_numpy(np.array(picture.numpy())) for picture in self.images]
        return DecodedSplit(
            images=images, labels=self.labels, paths=self.paths, keys=self.keys, space=self.space,
            fingerprints=self.fingerprints, skipped=self.skipped, seconds=self.seconds, decoded=self.decoded,
        )  # fmt: skip

    @staticmethod
    def merge(parts: list[DecodedSplit], order: list[Path]) -> DecodedSplit:
        """Put shards decoded by different processes back together in `order` (the original sample order); the
        pictures are read from this process's store (decoded here where another machine decoded them)."""
        by_path = {path: (part, i) for part in parts for i, path in enumerate(part.paths)}
        kept = [path for path in order if path in by_path]
        pick = [by_path[path] for path in kept]
        keys = [part.keys[i] for part, i in pick]
        first = next((p.images for p in parts if isinstance(p.images, Pictures)), None)
        images: Sequence[torch.Tensor] = (
            Pictures(store=first.store, decode=first.decode, keys=keys, paths=kept)
            if first is not None
            else [part.images[i] for part, i in pick]
        )
        return DecodedSplit(
            images=images,
            labels=torch.stack([part.labels[i] for part, i in pick]) if pick else torch.zeros(0, dtype=torch.long),
            paths=kept,
            keys=keys,
            space=parts[0].space if parts else "",
            fingerprints=[part.fingerprints[i] for part, i in pick],
            skipped=[s for part in parts for s in part.skipped],
            seconds=max(p.seconds for p in parts),
            decoded=sum(p.decoded for p in parts),
        )


class Decode:
    """Decode one file. Without `crop`, the training picture: short side at most `size` (`presets.train_view`).
    With `crop`, the evaluation input: resized to short side `size`, then centre-cropped to `crop`.

    Called in a worker process with a store root (`StoreDecode`), it writes the picture and its fingerprint into
    the store and returns only the fingerprint (or the reason the file could not be read)."""

    def __init__(self, size: int, crop: int | None, background: tuple[int, int, int], fingerprints: bool = True):
        self.size, self.crop, self.background, self.fingerprints = size, crop, background, fingerprints

    def both(self, path: Path) -> tuple[np.ndarray, Fingerprint | None]:
        """The picture as a uint8 (3, H, W) array, and its fingerprint (when asked for). Raises UnreadableImage."""
        picture = load_rgb(path, self.background, min_side=self.size)
        if self.crop:
            tensor = eval_view(decoded_view(picture, self.size), self.crop)
        else:
            tensor = train_view(picture, self.size)
        return np.ascontiguousarray(tensor.numpy()), fingerprint(picture) if self.fingerprints else None

    def picture(self, path: Path) -> np.ndarray:
        return Decode(self.size, self.crop, self.background, fingerprints=False).both(path)[0]

    def __call__(self, path: Path) -> tuple[np.ndarray | str, Fingerprint | None]:
        try:
            return self.both(path)
        except UnreadableImage as error:
            return str(error), None


def _decode_into(
    store: PhotoStore, decode: Decode, items: list[tuple[Path, str]], workers: int | None, desc: str, quiet: bool
) -> list[Fingerprint | str]:
    """Decode (path, key) items into the store in worker processes: each one's fingerprint, or why it failed."""
    # fingerprints need imagehash (and scipy's FFT): imported once here, where the workers are forked from, not
    # again in each of them (~0.4 s a worker)
    import imagehash  # noqa: F401

    results: list[Fingerprint | str] = []
    report("decoding", desc, 0, len(items))
    for done, result in enumerate(parallel_imap(StoreDecode(decode, store.root), items, workers, desc, quiet), 1):
        report("decoding", desc, done, len(items))
        results.append(result)
    return results


class StoreDecode:
    """A worker's job: decode one (path, key) into the store; return the fingerprint, or why it is unreadable."""

    def __init__(self, decode: Decode, root: Path):
        self.decode, self.root = decode, root
        self.space = picture_space(decode.size, decode.crop, decode.background)
        self.prints = fingerprint_space(decode.background)

    def __call__(self, item: tuple[Path, str]) -> Fingerprint | str:
        path, key = item
        try:
            picture, print_ = self.decode.both(path)
        except UnreadableImage as error:
            return str(error)
        store = open_store(self.root)
        store.put(self.space, key, picture)
        if print_ is not None:
            store.put(self.prints, key, pack_fingerprint(print_))
        return print_ if print_ is not None else "no fingerprint"


def decode_split(
    samples: list[Sample],
    size: int,
    crop: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    workers: int | None = None,
    desc: str = "decode",
    *,
    quiet: bool = False,
    keep: str = "store",
    store: PhotoStore | None = None,
) -> DecodedSplit:
    """The split's pictures (see `Decode`): photos the store already holds (by the hash of their bytes) are not
    decoded again; the rest are decoded in parallel into the store. `keep="memory"` reads every picture into
    memory afterwards (faster epochs when they fit); by default they stay in the store, read when used."""
    start = time.perf_counter()
    store = store or open_store()
    decode = Decode(size, crop, background)
    space, prints = picture_space(size, crop, background), fingerprint_space(background)
    keys = store.keys([s.path for s in samples])
    found: list[Fingerprint | None] = []
    todo: list[int] = []
    for i, key in enumerate(keys):
        print_ = unpack_fingerprint(store.get(prints, key)) if key else None
        found.append(print_)
        if key is not None and print_ is None:
            todo.append(i)
    reasons: dict[int, str] = {i: "cannot be read (missing, or not allowed)" for i, k in enumerate(keys) if k is None}
    if todo:
        items = [(samples[i].path, str(keys[i])) for i in todo]
        for i, result in zip(todo, _decode_into(store, decode, items, workers, desc, quiet)):
            if isinstance(result, str):
                reasons[i] = result
            else:
                found[i] = result
    kept = [i for i in range(len(samples)) if i not in reasons]
    for i in sorted(reasons):
        log.warning("skipped %s: %s", samples[i].path, reasons[i])
    paths = [samples[i].path for i in kept]
    kept_keys = [str(keys[i]) for i in kept]
    split = DecodedSplit(
        images=Pictures(store=store, decode=decode, keys=kept_keys, paths=paths),
        labels=torch.tensor([samples[i].label for i in kept], dtype=torch.long),
        paths=paths,
        keys=kept_keys,
        space=space,
        fingerprints=[found[i] for i in kept],
        skipped=[(samples[i].path, reasons[i]) for i in sorted(reasons)],
        seconds=time.perf_counter() - start,
        decoded=len(todo),
    )
    if todo:
        store.trim()
    return split.in_memory() if keep == "memory" else split
