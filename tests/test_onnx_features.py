"""Frozen features by ONNX Runtime on the CPU equal torch's (so caches and accuracies do not change), the backbone is
exported once per set of weights, and any failure there falls back to torch."""

from __future__ import annotations

import logging

import torch

from transferlab.data.decoding import decode_split
from transferlab.data.layout import load_dataset
from transferlab.models.model import create_backbone
from transferlab.training.feature_cache import FeatureRequest
from transferlab.training.features import extract_features


def _features(tiny_dataset, onnx: bool):
    backbone, spec, _ = create_backbone("efficientnet_lite0")
    data = load_dataset(tiny_dataset)
    val = decode_split(data.val, spec.resize_size, spec.input_size, quiet=True)
    train = decode_split(data.train[:4], spec.resize_size, spec.input_size, quiet=True)
    request = FeatureRequest(backbone=backbone, spec=spec, train=train, val=val, centre=True, batch_size=8)
    return extract_features(request, device=torch.device("cpu"), quiet=True, onnx=onnx)


def test_onnx_runtime_features_equal_torchs_and_the_export_is_kept(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("TRANSFERLAB_FEATURES")
    by_torch, by_onnx = _features(tiny_dataset, False), _features(tiny_dataset, True)
    assert (by_torch.val - by_onnx.val).abs().max() <= 1e-4
    assert (by_torch.train_centre - by_onnx.train_centre).abs().max() <= 1e-4
    exported = list((tmp_path / "onnx").glob("efficientnet_lite0-*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    _features(tiny_dataset, True)
    assert exported[0].stat().st_mtime_ns == stamp  # the same weights: the same file, not exported again


def test_features_fall_back_to_torch_when_onnx_runtime_fails(tiny_dataset, tmp_path, monkeypatch, caplog):
    import transferlab.models.onnx_features as onnx_features

    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("TRANSFERLAB_FEATURES")

    def broken(path):
        raise RuntimeError("no session today")

    monkeypatch.setattr(onnx_features, "OnnxFeatures", broken)
    with caplog.at_level(logging.WARNING, logger="transferlab"):
        fallen = _features(tiny_dataset, True)
    assert "computing them with torch" in caplog.text
    assert (fallen.val - _features(tiny_dataset, False).val).abs().max() == 0
