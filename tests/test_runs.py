"""A run directory holds everything needed to use the model again, loads without pickle, predicts exactly
as before saving, and survives Ctrl-C."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image

from conftest import ctrl_c_on_call, make_folder
from transferlab import DataConfig, Recipe, TrainConfig, train
from transferlab.inference.predict import Classifier
from transferlab.models.model import build_model
from transferlab.runs import WEIGHTS_FILE, ModelMeta, save_checkpoint
from transferlab.training.trainer import TrainingInterrupted


def _config(root, out, **kwargs) -> TrainConfig:
    recipe = Recipe(epochs=kwargs.pop("epochs", 2), batch_size=8)
    return TrainConfig(
        data=DataConfig(root=str(root)),
        backbone="efficientnet_lite0",
        recipe=recipe,
        out=str(out),
        quiet=True,
        workers=0,
        **kwargs,
    )


def test_saved_model_predicts_exactly_what_it_predicted_before(tmp_path):
    model, spec, _ = build_model("resnet18", 3, "finetune", pretrained=False)
    model.eval()
    meta = ModelMeta(backbone="resnet18", classes=["a", "b", "c"], strategy="finetune")
    save_checkpoint(tmp_path, model, meta)
    crops = torch.randint(0, 256, (3, 3, 224, 224), dtype=torch.uint8)
    before = Classifier(model, spec, meta.classes, meta).logits(crops)
    loaded = Classifier.load(tmp_path)
    assert torch.equal(before, loaded.logits(crops))
    with open(tmp_path / WEIGHTS_FILE, "rb") as handle:
        assert not handle.read(2).startswith(b"\x80")  # safetensors, not a pickle


def test_train_writes_a_complete_run_directory(tiny_dataset, tmp_path):
    result = train(_config(tiny_dataset, tmp_path / "runs", strategy="extract"))
    run = result.run_dir
    for name in ("config.json", "metrics.jsonl", "model.safetensors", "model.json", "summary.json"):
        assert (run / name).exists(), name
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"train_loss", "val_acc", "seconds", "data_seconds", "compute_seconds"} <= metrics[0].keys()
    meta = json.loads((run / "model.json").read_text())
    assert meta["classes"] == ["blue", "green", "red"] and meta["strategy"] == "extract"
    assert meta["mean"] and meta["std"] and meta["input_size"] == 224 and meta["weights"]["pretrained"]
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "efficientnet_lite0" and config["recipe"]["epochs"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["trainable_params"] == 1280 * 3 + 3
    assert summary["best_val_acc"] == max(m["val_acc"] for m in metrics)


def test_extract_run_keeps_pretrained_backbone_bit_identical(tiny_dataset, tmp_path):
    result = train(_config(tiny_dataset, tmp_path / "runs", strategy="extract"))
    saved = Classifier.load(result.run_dir).model.backbone.state_dict()
    pretrained, _, _ = build_model("efficientnet_lite0", 3, "extract")
    for name, tensor in pretrained.backbone.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_unreadable_file_is_skipped_and_counted(tiny_dataset, tmp_path):
    (tiny_dataset / "train" / "red" / "broken.jpg").write_bytes(b"not a jpeg at all")
    result = train(_config(tiny_dataset, tmp_path / "runs", strategy="extract", epochs=1))
    assert result.summary.skipped_files == 1
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["resolved"]["skipped_files"][0][0].endswith("broken.jpg")


def test_ctrl_c_leaves_a_usable_run_with_the_best_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    import transferlab.runs as runs_module

    monkeypatch.setattr(runs_module, "append_metrics", ctrl_c_on_call(runs_module.append_metrics, 2))
    with pytest.raises(TrainingInterrupted) as stop:
        train(_config(tiny_dataset, tmp_path / "runs", strategy="extract", epochs=5))
    run = stop.value.result.run_dir
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["best_epoch"] == 1
    prediction = Classifier.load(run).predict(Image.new("RGB", (50, 50), (200, 40, 40)))
    assert prediction.label in ("blue", "green", "red")


def test_finetune_run_changes_the_pretrained_backbone(tiny_dataset, tmp_path):
    result = train(_config(tiny_dataset, tmp_path / "runs", strategy="finetune", epochs=1))
    saved = Classifier.load(result.run_dir).model.backbone.state_dict()
    pretrained, _, _ = build_model("efficientnet_lite0", 3, "finetune")
    changed = [n for n, t in pretrained.backbone.state_dict().items() if not torch.equal(t, saved[n])]
    assert len(changed) > len(saved) // 2


def test_a_run_alone_and_inside_compare_give_the_same_results(tmp_path):
    from transferlab import compare

    root = make_folder(tmp_path / "d", {"red": 12, "green": 12, "blue": 12})  # 36 train: decoding starts workers
    config = TrainConfig(
        data=DataConfig(root=str(root)),
        strategy="extract",
        backbone="efficientnet_lite0",
        recipe=Recipe(epochs=2, batch_size=8),
        quiet=True,
        workers=2,
    )
    alone = train(dataclasses.replace(config, out=str(tmp_path / "alone")))
    inside = compare(dataclasses.replace(config, out=str(tmp_path / "cmp")), ("extract",), evaluate=False)
    strip = lambda run: [  # noqa: E731
        {k: v for k, v in m.items() if "seconds" not in k}  # noqa: E731
        for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    ]
    assert strip(alone.run_dir) == strip(inside.results[0].run_dir)
