"""Perceptual fingerprints of pictures, and the near-duplicate search built on them (doctor and training both use it).

A fingerprint is a 64-bit DCT perceptual hash plus a 32x32 grey thumbnail. Candidate pairs are pictures whose
hashes differ in at most `HASH_DISTANCE` bits; each candidate is *confirmed* by comparing the thumbnails, so merely
similar scenes are not called duplicates. `groups_from_pairs` joins pairs into groups (union-find).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

HASH_DISTANCE = 10  # pHash bits that may differ for a candidate near-duplicate pair
THUMB_DIFFERENCE = 8.0  # mean absolute difference (0-255) of 32x32 grey thumbnails that confirms a pair


@dataclass(kw_only=True, frozen=True)
class Fingerprint:
    phash: int  # 64-bit DCT perceptual hash
    thumb: bytes  # 32x32 8-bit grey thumbnail, for confirming candidate pairs
    aspect: float  # width / height


def fingerprint(picture: Image.Image) -> Fingerprint:
    """Perceptual fingerprint of an RGB picture (robust to resizing and re-encoding)."""
    import imagehash  # numpy + PIL; only where fingerprints are computed

    small = picture.copy()
    small.thumbnail((256, 256))
    grey = small.convert("L")
    phash = int(str(imagehash.phash(grey)), 16)
    thumb = grey.resize((32, 32), Image.Resampling.BILINEAR).tobytes()
    return Fingerprint(phash=phash, thumb=thumb, aspect=picture.width / picture.height)


def same_picture(a: Fingerprint, b: Fingerprint) -> bool:
    """Confirm a candidate pair: same shape and nearly identical thumbnails."""
    if abs(a.aspect - b.aspect) > 0.1 * max(a.aspect, b.aspect):
        return False
    diff = np.abs(np.frombuffer(a.thumb, np.uint8).astype(np.int16) - np.frombuffer(b.thumb, np.uint8))
    return float(diff.mean()) <= THUMB_DIFFERENCE


def candidates(hashes: np.ndarray, phash: int) -> np.ndarray:
    """Positions in `hashes` (uint64 pHashes) within HASH_DISTANCE bits of `phash`: pairs still to be confirmed."""
    return np.nonzero(np.bitwise_count(hashes ^ np.uint64(phash)) <= HASH_DISTANCE)[0]


def near_duplicate_pairs(prints: Sequence[Fingerprint | None]) -> list[tuple[int, int]]:
    """Index pairs of confirmed near-duplicates (pHash within HASH_DISTANCE bits, then thumbnails compared)."""
    present = {i: p for i, p in enumerate(prints) if p is not None}
    valid = list(present)
    hashes = np.array([present[i].phash for i in valid], dtype=np.uint64)
    pairs = []
    for position, i in enumerate(valid[:-1]):
        for offset in candidates(hashes[position + 1 :], hashes[position]):
            j = valid[position + 1 + int(offset)]
            if same_picture(present[i], present[j]):
                pairs.append((i, j))
    return pairs


def groups_from_pairs(pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected groups (union-find) from pairs of indices."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for x in parent:
        groups[find(x)].append(x)
    return sorted(sorted(g) for g in groups.values())
