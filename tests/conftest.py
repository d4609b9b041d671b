"""Shared helpers: synthetic photo folders (never the shared real photos, except in the e2e test)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ANIMALS4 = (REPO / ".." / "shared" / "datasets" / "animals4").resolve()

LOCAL = "http://127.0.0.1:8000"  # the address a page made by `create_app` answers by default (Host checked)

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def synthetic_picture(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A noisy picture dominated by one colour, so that classes are learnable."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float32)
    pixels = base + rng.normal(0, 25, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def photo_like(seed: int, size=(320, 240)) -> Image.Image:
    """A smooth random scene with texture: structured like a photo, different for every seed."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB").resize(size, Image.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.float32) + rng.normal(0, 12, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def ctrl_c_on_call(real, n: int):
    """`real`, except that its n-th call raises KeyboardInterrupt instead (Ctrl-C at that moment)."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapper


def make_folder(root: Path, per_class: dict[str, int], split: bool = True, ext: str = ".jpg") -> Path:
    """DATA/train|val/<class>/*.jpg (split=True) or DATA/<class>/*.jpg with synthetic pictures."""
    seed = 0
    for name, count in per_class.items():
        splits = {"train": count, "val": max(2, count // 2)} if split else {"": count}
        for sub, n in splits.items():
            folder = root / sub / name if sub else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                synthetic_picture(COLOURS.get(name, (120, 120, 120)), seed).save(folder / f"{name}_{i}{ext}")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Each test's caches (features, doctor results, decoded-picture files) start empty in a temporary folder,
    never ~/.cache."""
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    # frozen features by torch: exporting each backbone to ONNX in every test's empty cache would cost far more than
    # it saves on these tiny folders; tests/test_onnx_features.py checks the ONNX Runtime path against this one
    monkeypatch.setenv("TRANSFERLAB_FEATURES", "torch")


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data", {"red": 8, "green": 8, "blue": 8})


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A small extract run on synthetic red/green/blue pictures (efficientnet_lite0, offline weights)."""
    from transferlab import DataConfig, Recipe, TrainConfig, train

    root = make_folder(tmp_path_factory.mktemp("data"), {"red": 6, "green": 6, "blue": 6})
    config = TrainConfig(
        data=DataConfig(root=str(root)),
        strategy="extract",
        backbone="efficientnet_lite0",
        recipe=Recipe(epochs=2, batch_size=8),
        out=str(tmp_path_factory.mktemp("runs")),
        quiet=True,
        workers=0,
    )
    return train(config).run_dir


@contextmanager
def studio_client(photos: Path, runs: Path, port: int = 8123):
    """The studio app on `photos` driven in-process (FastAPI's test client), its live model stopped at the end."""
    from fastapi.testclient import TestClient

    from transferlab.studio.app import create_studio

    client = TestClient(create_studio(photos, runs, port=port), base_url=f"http://127.0.0.1:{port}")
    try:
        yield client
    finally:
        client.app.state.studio.close()  # its threads' work ended: none left running under the next test
