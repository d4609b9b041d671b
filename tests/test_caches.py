"""The per-photo store as training sees it: only new bytes are decoded and passed through the backbone, stored
vectors are used only when everything they depend on is the same (a damaged or wrong one is recomputed), they do
not depend on how the pictures were shared out, and stored pictures equal decoded ones."""

from __future__ import annotations

import dataclasses
import logging

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


def _store_entries(kind: str) -> list:
    """The store's entry files of one kind of space ("features", "picture", "fingerprint")."""
    root = storage.cache_dir() / "store" / "spaces"
    found = []
    for space in root.iterdir() if root.exists() else []:
        if (space / "space.txt").read_text().startswith(kind + "/"):
            found += list(space.glob("*/*.npy"))
    return found


def test_second_run_reads_features_from_the_store_and_trains_identically(tiny_dataset, tmp_path):
    first = train(_extract(tiny_dataset, tmp_path, seed=3))
    second = train(_extract(tiny_dataset, tmp_path, seed=3))
    assert first.summary.features_from_cache is False and second.summary.features_from_cache is True
    assert second.summary.features_computed == 0 and second.summary.photos_decoded == 0
    assert _strip(first) == _strip(second)
    other_seed = train(_extract(tiny_dataset, tmp_path, seed=4))  # compare --seeds: the same features serve
    assert other_seed.summary.features_from_cache is True


def test_only_new_bytes_are_decoded_and_passed_through_the_backbone(tiny_dataset, tmp_path):
    first = train(_extract(tiny_dataset, tmp_path)).summary
    assert first.photos_decoded == first.train_images + first.val_images
    views = train(_extract(tiny_dataset, tmp_path, views=2)).summary  # the head trains on views 0 and 1
    assert views.features_computed == first.train_images and views.photos_decoded == 0  # view 1 only is new
    Image.new("RGB", (90, 70), (10, 200, 10)).save(tiny_dataset / "train" / "green" / "green_0.jpg")  # new bytes
    changed = train(_extract(tiny_dataset, tmp_path)).summary
    assert changed.photos_decoded == 1 and changed.features_computed == 1  # its view 0 (the head trains on it)
    # a photo moved to another class and renamed is the same bytes: nothing decoded, nothing computed
    (tiny_dataset / "train" / "green" / "green_1.jpg").rename(tiny_dataset / "train" / "red" / "was-green.jpg")
    moved = train(_extract(tiny_dataset, tmp_path)).summary
    assert moved.photos_decoded == 0 and moved.features_computed == 0 and moved.features_from_cache
    off = train(_extract(tiny_dataset, tmp_path, feature_cache=False)).summary
    assert off.features_from_cache is False and off.features_computed == off.train_images + off.val_images


def test_damaged_store_entries_are_recomputed_with_a_warning(tiny_dataset, tmp_path, caplog):
    first = train(_extract(tiny_dataset, tmp_path))
    for entry in _store_entries("features") + _store_entries("picture") + _store_entries("fingerprint"):
        entry.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="transferlab"):
        again = train(_extract(tiny_dataset, tmp_path))
    assert again.summary.features_from_cache is False and again.summary.photos_decoded == first.summary.photos_decoded
    assert again.best_val_acc == first.best_val_acc
    assert "damaged store entry" in caplog.text


def test_a_stored_vector_of_the_wrong_shape_is_a_miss_never_a_crash(tiny_dataset, tmp_path):
    import numpy as np

    first = train(_extract(tiny_dataset, tmp_path))
    entries = _store_entries("features")
    train_images, val_images = first.summary.train_images, first.summary.val_images
    assert len(entries) == 2 * train_images + val_images  # view 0 (the head), centre crops (unknown test), val
    for entry in entries:
        np.save(entry, np.full(3, np.nan, dtype=np.float32))  # what a bad run could have left
    again = train(_extract(tiny_dataset, tmp_path))
    assert again.summary.features_computed == train_images + val_images and again.best_val_acc == first.best_val_acc


def test_features_of_a_share_equal_the_same_rows_of_the_whole(tiny_dataset):
    dataset = load_dataset(tiny_dataset)
    backbone, spec, _ = create_backbone("efficientnet_lite0")
    train_split = decoding.decode_split(dataset.train, spec.resize_size, workers=0, quiet=True)
    val_split = decoding.decode_split(dataset.val, spec.resize_size, spec.input_size, workers=0, quiet=True)
    request = FeatureRequest(backbone=backbone, spec=spec, train=train_split, val=val_split, views=2, batch_size=8)
    whole = features.extract_features(request, device=torch.device("cpu"), quiet=True)
    share = [1, 4, 6, 7]
    part = features.extract_features(
        dataclasses.replace(request.share(share, [0]), batch_size=3), device=torch.device("cpu"), quiet=True
    )
    torch.testing.assert_close(part.train, whole.train[:, share], rtol=1e-4, atol=1e-4)  # seeded by the photo
    assert not torch.allclose(whole.train[0], whole.train[1])  # two views are two different crops


def test_stored_pictures_equal_decoded_ones_and_are_read_only_when_asked_for(tiny_dataset):
    samples = load_dataset(tiny_dataset).train
    stored = decoding.decode_split(samples, 64, workers=0, quiet=True)
    assert stored.decoded == len(samples) and isinstance(stored.images, decoding.Pictures)
    direct = decoding.Decode(64, None, (255, 255, 255))
    for picture, sample in zip(stored.images, samples):
        assert torch.equal(picture, torch.from_numpy(direct.picture(sample.path)))
    again = decoding.decode_split(samples, 64, workers=0, quiet=True)
    assert again.decoded == 0 and again.digest() == stored.digest()
    in_memory = decoding.decode_split(samples, 64, workers=0, quiet=True, keep="memory")
    assert isinstance(in_memory.images, list) and in_memory.digest() == stored.digest()
    again.images[0][:] = 0  # copy-on-write: a tensor may be changed in place without touching the store
    assert torch.equal(decoding.decode_split(samples, 64, workers=0, quiet=True).images[0], stored.images[1 - 1])
    assert decoding.decode_split(samples, 64, workers=0, quiet=True).images[0].sum() > 0


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


def test_stored_features_are_costed_in_this_process(tiny_dataset, tmp_path):
    """A cell's cost must not depend on whether its features were stored: read ones are costed by timing the
    backbone here and now, so the figure stays near what computing them took."""
    config = _extract(tiny_dataset, tmp_path / "cold")
    cold = train(config).summary
    warm = train(dataclasses.replace(config, out=str(tmp_path / "warm"))).summary
    assert warm.features_from_cache and 0 < warm.feature_compute_seconds < 10 * cold.feature_compute_seconds


def test_threads_writing_one_cache_file_at_once_never_rename_each_others_file_away(tmp_path):
    """The studio's checks, its Inbox and its page write the same cache entries from threads of one process: each
    write has its own temporary file (it once had one per process, and a check failed with FileNotFoundError)."""
    from concurrent.futures import ThreadPoolExecutor

    from transferlab.utils.storage import write_atomically

    target = tmp_path / "entry.json"

    def write(n: int) -> None:
        for k in range(40):
            write_atomically(target, lambda tmp, k=k: tmp.write_text(f"{n}-{k}" * 200))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))  # raises what any write raised
    assert target.read_text().count("-") == 200 and not [p for p in tmp_path.iterdir() if p.name != "entry.json"]
