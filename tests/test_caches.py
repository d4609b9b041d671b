"""Cached tensors: frozen features are reused from disk only when everything they depend on is the same, and do
not depend on how the pictures were shared out; decoded pictures memory-mapped on disk equal those in memory."""

from __future__ import annotations

import dataclasses
import logging
import os

import pytest
import torch
from PIL import Image

from transferlab import DataConfig, Recipe, TrainConfig, train
from transferlab.data import decoding
from transferlab.data.layout import Sample, load_dataset
from transferlab.data.prepare import prepare_data
from transferlab.data.presets import train_side
from transferlab.models.model import create_backbone
from transferlab.training import features
from transferlab.training.feature_cache import FeatureRequest
from transferlab.utils import storage


def _extract(root, out, **kwargs) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(root=str(root)),
        strategy="extract",
        backbone="efficientnet_lite0",
        recipe=Recipe(epochs=2, batch_size=8),
        out=str(out),
        quiet=True,
        workers=0,
        **kwargs,
    )


def _strip(result) -> list[dict]:
    return [{k: v for k, v in vars(r).items() if "seconds" not in k} for r in result.epochs]


def _feature_files() -> set[str]:
    folder = storage.cache_dir() / "features"
    return set(os.listdir(folder)) if folder.exists() else set()


def test_second_run_reads_features_from_disk_and_trains_identically(tiny_dataset, tmp_path):
    first = train(_extract(tiny_dataset, tmp_path, seed=3))
    second = train(_extract(tiny_dataset, tmp_path, seed=3))
    assert first.summary.features_from_cache is False and second.summary.features_from_cache is True
    assert _strip(first) == _strip(second)
    other_seed = train(_extract(tiny_dataset, tmp_path, seed=4))  # compare --seeds: the same features serve
    assert other_seed.summary.features_from_cache is True


def test_feature_cache_misses_when_views_pictures_or_switch_change(tiny_dataset, tmp_path):
    train(_extract(tiny_dataset, tmp_path))
    before = _feature_files()
    assert train(_extract(tiny_dataset, tmp_path, views=2)).summary.features_from_cache is False
    Image.new("RGB", (90, 70), (10, 200, 10)).save(tiny_dataset / "train" / "green" / "green_0.jpg")  # new content
    assert train(_extract(tiny_dataset, tmp_path)).summary.features_from_cache is False
    # views=2: one new entry; new content: one new entry, and one for the centre crops the "unknown" test fits on
    assert len(_feature_files() - before) == 3
    assert train(_extract(tiny_dataset, tmp_path, feature_cache=False)).summary.features_from_cache is False


def test_damaged_feature_cache_file_is_recomputed_with_a_warning(tiny_dataset, tmp_path, caplog):
    train(_extract(tiny_dataset, tmp_path))
    for name in _feature_files():
        (storage.cache_dir() / "features" / name).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="transferlab"):
        result = train(_extract(tiny_dataset, tmp_path))
    assert result.summary.features_from_cache is False
    assert "damaged feature cache" in caplog.text


def test_features_of_a_share_equal_the_same_rows_of_the_whole(tiny_dataset):
    dataset = load_dataset(tiny_dataset)
    backbone, spec, _ = create_backbone("efficientnet_lite0")
    train_split = decoding.decode_split(dataset.train, spec.resize_size, workers=0, quiet=True)
    val_split = decoding.decode_split(dataset.val, spec.resize_size, spec.input_size, workers=0, quiet=True)
    request = FeatureRequest(backbone=backbone, spec=spec, train=train_split, val=val_split, views=2, batch_size=8)
    whole = features.extract_features(request, device=torch.device("cpu"), quiet=True)
    share = [1, 4, 6, 7]
    part = features.extract_features(
        dataclasses.replace(request.share(share, [0]), batch_size=3),
        device=torch.device("cpu"),
        quiet=True,
        train_index=share,
    )
    torch.testing.assert_close(part.train, whole.train[:, share], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(whole.train[0], whole.train[1])  # two views are two different crops


def test_training_pictures_are_shrunk_to_train_side_never_enlarged_and_val_pictures_are_centre_crops(tmp_path):
    root = tmp_path / "pictures"
    root.mkdir()
    Image.new("RGB", (600, 450), (200, 30, 30)).save(root / "large.png")
    Image.new("RGB", (96, 72), (30, 200, 30)).save(root / "small.png")
    samples = [Sample(path=root / "large.png", label=0), Sample(path=root / "small.png", label=0)]
    train_split = decoding.decode_split(samples, 224, workers=0, quiet=True)
    assert [tuple(p.shape) for p in train_split.images] == [(3, 224, 298), (3, 72, 96)]
    val_split = decoding.decode_split(samples, 100, 90, workers=0, quiet=True)
    assert [tuple(p.shape) for p in val_split.images] == [(3, 90, 90), (3, 90, 90)]  # the small one enlarged first


def test_training_decodes_train_pictures_at_twice_the_input_size(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (800, 600), colour).save(root / split / name / "a.png")
    prepared = prepare_data(
        TrainConfig(data=DataConfig(root=str(root)), backbone="efficientnet_lite0", workers=0, quiet=True)
    )
    assert train_side(prepared.spec) == 2 * prepared.spec.input_size == 448
    assert {tuple(p.shape) for p in prepared.train.images} == {(3, 448, 597)}
    assert {tuple(p.shape) for p in prepared.val.images} == {(3, 224, 224)}
    smaller = prepare_data(
        TrainConfig(
            data=DataConfig(root=str(root), train_side=300), backbone="efficientnet_lite0", workers=0, quiet=True
        )
    )
    assert {tuple(p.shape) for p in smaller.train.images} == {(3, 300, 400)}


def test_disk_decoded_pictures_equal_memory_ones_and_leave_no_file(tiny_dataset):
    samples = load_dataset(tiny_dataset).train
    in_memory = decoding.decode_split(samples, 64, workers=0, quiet=True)
    on_disk = decoding.decode_split(samples, 64, workers=0, quiet=True, store="disk")
    assert len(on_disk) == len(in_memory) == len(samples)
    for a, b in zip(in_memory.images, on_disk.images):
        assert torch.equal(a, b)
    assert os.listdir(storage.cache_dir() / "decoded") == []  # unlinked at once; the mapping lives on
    on_disk.images[0][:] = 0  # copy-on-write: a tensor may be changed in place without touching any file
    assert on_disk.images[0].sum() == 0 and not torch.equal(on_disk.images[1], on_disk.images[0])


def test_decode_store_is_chosen_from_dataset_size_and_free_memory(tiny_dataset, monkeypatch):
    samples = load_dataset(tiny_dataset).train  # 24 pictures of 96x72
    estimate = decoding.estimate_decoded_bytes(samples, 36, None)
    assert estimate == pytest.approx(24 * 3 * 48 * 36, rel=1e-6)  # shrunk to short side 36, 4:3 from the headers
    assert decoding.estimate_decoded_bytes(samples, 100, None) == 24 * 3 * 96 * 72  # never enlarged
    assert decoding.estimate_decoded_bytes(samples, 100, 50) == 24 * 3 * 50 * 50
    monkeypatch.setattr(decoding, "available_memory", lambda: 4 * estimate)
    assert decoding.choose_store(estimate) == "memory"
    monkeypatch.setattr(decoding, "available_memory", lambda: estimate)
    assert decoding.choose_store(estimate) == "disk"


def test_training_with_disk_decoded_pictures_matches_memory(tiny_dataset, tmp_path):
    config = TrainConfig(
        data=DataConfig(root=str(tiny_dataset)),
        strategy="finetune",
        backbone="efficientnet_lite0",
        recipe=Recipe(epochs=1, batch_size=8),
        out=str(tmp_path),
        quiet=True,
        workers=0,
        deterministic=True,
    )
    memory = train(config)
    disk = train(dataclasses.replace(config, decode_cache="disk"))
    torch.use_deterministic_algorithms(False)
    assert _strip(memory) == _strip(disk)


def test_an_inconsistent_feature_cache_entry_is_a_miss_never_a_crash(tiny_dataset, tmp_path, caplog):
    from safetensors.torch import save_file

    from transferlab.utils import storage

    config = TrainConfig(
        data=DataConfig(root=str(tiny_dataset)),
        strategy="extract",
        backbone="efficientnet_lite0",
        recipe=Recipe(epochs=1, batch_size=8),
        out=str(tmp_path),
        quiet=True,
        workers=0,
    )
    first = train(config)
    entries = list((storage.cache_dir() / "features").glob("*.safetensors"))  # the head's, and the centre crops'
    assert len(entries) == 2
    for entry in entries:
        save_file({"train": torch.zeros(1, 0, 1280), "val": torch.zeros(0, 1280)}, entry)  # what a bad run left
    again = train(config)
    assert again.summary.features_from_cache is False and again.best_val_acc == first.best_val_acc
    assert "ignoring the feature cache" in caplog.text


def test_cached_features_are_costed_in_this_process_not_by_the_figure_recorded_with_them(tiny_dataset, tmp_path):
    """A cell's cost must not depend on whether its features were cached, nor on the load of the command that
    cached them: the figure recorded in the cache (here made 1000x too large) is not what the run reports."""
    from safetensors.torch import load_file, save_file

    from transferlab.utils.storage import cache_dir

    config = _extract(tiny_dataset, tmp_path / "cold")
    cold = train(config).summary
    for entry in (cache_dir() / "features").glob("*.safetensors"):
        save_file(load_file(entry), entry, metadata={"compute_seconds": repr(1000 * cold.feature_compute_seconds)})
    warm = train(dataclasses.replace(config, out=str(tmp_path / "warm"))).summary
    assert warm.features_from_cache and warm.feature_compute_seconds < 10 * cold.feature_compute_seconds
