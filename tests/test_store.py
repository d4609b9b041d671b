"""The per-photo store: keyed by a photo's bytes (a renamed copy is a hit, one changed byte a miss), by the
backbone's identity (another revision is a miss), bounded (least recently used trimmed first), safe with two
processes filling one entry, and a damaged entry is reported missing and removed."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import time

import numpy as np
import pytest

from transferlab.store.hashes import photo_keys
from transferlab.store.photos import PhotoStore, parse_size


def _photo(path, content: bytes = b"\xff\xd8 some bytes of a photo") -> object:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_photo_is_keyed_by_its_bytes_whatever_its_name_and_one_changed_byte_is_a_miss(tmp_path):
    memo = tmp_path / "keys.sqlite"
    first = _photo(tmp_path / "cat" / "a.jpg")
    copy = tmp_path / "dog" / "renamed.jpg"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    moved = tmp_path / "moved.jpg"
    (key,) = photo_keys([first], memo)
    assert photo_keys([copy], memo) == [key]
    first.rename(moved)
    assert photo_keys([moved], memo) == [key]  # the remembered key of the same file (inode)
    changed = bytearray(moved.read_bytes())
    changed[-1] ^= 1
    moved.write_bytes(bytes(changed))
    os.utime(moved, ns=(1, 1))  # a new size or time is what tells a changed file; the bytes are hashed again
    assert photo_keys([moved], memo) != [key]
    assert photo_keys([tmp_path / "missing.jpg"], memo) == [None]


def test_the_keys_memo_never_answers_for_a_file_whose_bytes_changed_under_the_same_size(tmp_path):
    memo = tmp_path / "keys.sqlite"
    photo = _photo(tmp_path / "a.jpg", b"A" * 100)
    (before,) = photo_keys([photo], memo)
    time.sleep(0.01)
    photo.write_bytes(b"B" * 100)  # same size, new modification time
    assert photo_keys([photo], memo) != [before]


def test_a_damaged_keys_memo_is_started_afresh(tmp_path):
    memo = tmp_path / "keys.sqlite"
    photo = _photo(tmp_path / "a.jpg")
    expected = photo_keys([photo], None)
    memo.write_bytes(b"not a database at all" * 100)
    assert photo_keys([photo], memo) == expected
    assert photo_keys([photo], memo) == expected


def test_another_backbone_revision_or_precision_is_another_feature_space():
    import torch

    from transferlab.models.backbones import get_spec
    from transferlab.models.onnx_features import feature_identity

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    spec = get_spec("efficientnet_lite0")
    base = feature_identity(net, spec, None)
    assert feature_identity(net, spec, None) == base
    assert feature_identity(net, dataclasses.replace(spec, revision="another"), None) != base
    assert feature_identity(net, spec, torch.bfloat16) != base
    with torch.no_grad():
        net[1].running_mean += 1  # BatchNorm statistics are part of the weights the features depend on
    assert feature_identity(net, spec, None) != base


def test_entries_round_trip_and_a_damaged_entry_is_missing_and_removed(tmp_path, caplog):
    store = PhotoStore(tmp_path / "store", limit=10**9)
    vector = np.arange(8, dtype=np.float32)
    store.put("features/x", "ab" * 16, vector)
    np.testing.assert_array_equal(store.get("features/x", "ab" * 16), vector)
    assert store.get("features/y", "ab" * 16) is None and store.get("features/x", "cd" * 16) is None
    picture = np.zeros((3, 5, 7), dtype=np.uint8)
    store.put("picture/p", "ab" * 16, picture)
    mapped = store.get("picture/p", "ab" * 16, mmap=True)
    assert isinstance(mapped, np.memmap) and mapped.shape == (3, 5, 7)
    entry = store._path("features/x", "ab" * 16)
    entry.write_bytes(entry.read_bytes()[:20])  # cut short
    assert store.get("features/x", "ab" * 16) is None and not entry.exists()
    assert store.get("picture/p", "ab" * 16, mmap=True) is not None  # the other space's entry is untouched
    assert "damaged store entry" in caplog.text


def test_the_store_trims_the_least_recently_used_entries_past_its_limit(tmp_path):
    store = PhotoStore(tmp_path / "store", limit=10**9)
    for i in range(6):
        store.put("features/x", f"{i:032x}", np.zeros(4096, dtype=np.uint8))  # one 4 KB block + a header each
        os.utime(store._path("features/x", f"{i:032x}"), (1000 + i, 1000 + i))
    store.get("features/x", f"{0:032x}")  # read now: the most recently used
    each = store.usage().bytes // 6
    freed = store.trim(limit=3 * each)
    assert freed == 3 * each
    kept = {i for i in range(6) if store.get("features/x", f"{i:032x}") is not None}
    assert kept == {0, 4, 5}
    usage = store.usage()
    assert usage.entries == 3 and [s.name for s in usage.spaces] == ["features/x"]
    assert store.clear() == usage.bytes and store.usage().entries == 0


def _fill(root, rounds: int) -> None:
    store = PhotoStore(root, limit=10**12)
    for round_ in range(rounds):
        store.put("features/shared", "ee" * 16, np.full(50_000, round_ % 7, dtype=np.float32))


def test_two_processes_filling_one_entry_never_leave_half_of_one(tmp_path):
    root = tmp_path / "store"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_fill, args=(root, 60)) for _ in range(2)]
    for writer in writers:
        writer.start()
    store = PhotoStore(root, limit=10**12)
    seen = 0
    while any(w.is_alive() for w in writers):
        array = store.get("features/shared", "ee" * 16)
        if array is not None:  # a whole entry, one writer's, every time
            assert array.shape == (50_000,) and len(set(np.unique(array).tolist())) == 1
            seen += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert store.get("features/shared", "ee" * 16) is not None and seen > 0
    assert not list(root.rglob("*.tmp"))  # nothing half-written left behind


@pytest.mark.parametrize(
    ("text", "size"), [("20GB", 20 * 10**9), ("500 MB", 500 * 10**6), ("1.5G", 15 * 10**8), ("1000", 1000)]
)
def test_store_limits_are_read_as_people_write_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "0", "nan", "inf", "twenty"])
def test_a_store_limit_that_is_not_a_size_is_refused(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_small_entries_are_kept_in_memory_when_asked_and_a_new_write_replaces_them(tmp_path):
    store = PhotoStore(tmp_path / "store", limit=10**9)
    store.put("features/x", "ab" * 16, np.ones(4, dtype=np.float32))
    store._path("features/x", "ab" * 16).unlink()
    assert store.get("features/x", "ab" * 16) is None  # not asked to remember: read from disk every time
    store.remember_small_entries(limit=40)
    for i in range(3):
        store.put("features/x", f"{i:032x}", np.full(4, i, dtype=np.float32))
        store.get("features/x", f"{i:032x}")
    for i in range(3):
        store._path("features/x", f"{i:032x}").unlink()
    assert store.get("features/x", f"{0:032x}") is None  # 3 x 16 bytes > 40: the least recently used went first
    kept = store.get("features/x", f"{2:032x}")
    assert kept is not None and not kept.flags.writeable
    store.put("features/x", f"{2:032x}", np.full(4, 7, dtype=np.float32))
    np.testing.assert_array_equal(store.get("features/x", f"{2:032x}"), np.full(4, 7, dtype=np.float32))
