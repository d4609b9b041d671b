"""`two-stage` trains the head on cached features with the backbone untouched, then trains everything with the
backbone at a smaller learning rate than the head; interrupted in either stage, it resumes to the same end."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from transferlab import DataConfig, Recipe, TrainConfig, train
from transferlab.config import RECIPES
from transferlab.models.model import build_model
from transferlab.runs import LAST_STATE
from transferlab.training.resuming import resume
from transferlab.training.trainer import Stage, TrainingInterrupted, plan_stages


def _config(root, out, **kwargs) -> TrainConfig:
    recipe = Recipe(
        epochs=kwargs.pop("epochs", 2), head_epochs=kwargs.pop("head_epochs", 2), batch_size=8, backbone_lr_scale=0.1
    )
    return TrainConfig(
        data=DataConfig(root=str(root)),
        strategy="two-stage",
        backbone="efficientnet_lite0",
        recipe=recipe,
        out=str(out),
        quiet=True,
        workers=0,
        **kwargs,
    )


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_stages_of_each_strategy():
    recipe = dataclasses.replace(RECIPES["reference"], head_epochs=5, epochs=25)
    assert plan_stages("finetune", recipe) == [Stage(name="finetune", first=1, last=25)]
    assert plan_stages("extract", recipe) == [Stage(name="head", first=1, last=25)]
    assert plan_stages("two-stage", recipe) == [
        Stage(name="head", first=1, last=5),
        Stage(name="finetune", first=6, last=30),
    ]
    assert plan_stages("two-stage", dataclasses.replace(recipe, head_epochs=0)) == [
        Stage(name="finetune", first=1, last=25)
    ]


def test_two_stage_trains_head_on_features_then_everything_with_a_smaller_backbone_lr(tiny_dataset, tmp_path):
    result = train(_config(tiny_dataset, tmp_path, epochs=1))
    assert [(m["epoch"], m["stage"]) for m in _metrics(result.run_dir)] == [(1, "head"), (2, "head"), (3, "finetune")]
    assert result.summary.trainable_params == result.summary.total_params
    state = torch.load(result.run_dir / LAST_STATE, weights_only=True)
    assert state["stage"] == "finetune"
    backbone_group, head_group = state["optimizer"]["param_groups"]
    assert backbone_group["lr"] == pytest.approx(head_group["lr"] * 0.1)
    pretrained, _, _ = build_model("efficientnet_lite0", 3, "extract")
    changed = [
        name
        for name, tensor in pretrained.backbone.state_dict().items()
        if not torch.equal(tensor, state["model"]["backbone." + name])
    ]
    assert len(changed) > len(pretrained.backbone.state_dict()) // 2


def test_two_stage_head_stage_leaves_the_backbone_bit_identical(tiny_dataset, tmp_path):
    result = train(_config(tiny_dataset, tmp_path, epochs=0))  # the head stage alone
    state = torch.load(result.run_dir / LAST_STATE, weights_only=True)
    pretrained, _, _ = build_model("efficientnet_lite0", 3, "extract")
    for name, tensor in pretrained.backbone.state_dict().items():
        assert torch.equal(tensor, state["model"]["backbone." + name]), name


@pytest.mark.parametrize("stop_after", [1, 2, 3])  # inside the head stage, at the boundary, inside fine-tuning
def test_two_stage_interrupted_in_any_stage_resumes_to_the_uninterrupted_result(
    tiny_dataset, tmp_path, monkeypatch, stop_after
):
    import transferlab.training.checkpoint as checkpoint

    whole = train(_config(tiny_dataset, tmp_path / "whole", deterministic=True))
    real_save = checkpoint.save_training_state

    def save_then_stop(run_dir, epoch, *args, **kwargs):
        real_save(run_dir, epoch, *args, **kwargs)
        if epoch == stop_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_training_state", save_then_stop)
    with pytest.raises(TrainingInterrupted) as stop:
        train(_config(tiny_dataset, tmp_path / "cut", deterministic=True))
    monkeypatch.setattr(checkpoint, "save_training_state", real_save)
    resumed = resume(stop.value.result.run_dir)
    torch.use_deterministic_algorithms(False)

    def comparable(run):
        return [{k: v for k, v in m.items() if "seconds" not in k} for m in _metrics(run)]

    assert [m["epoch"] for m in _metrics(resumed.run_dir)] == [1, 2, 3, 4]
    assert comparable(resumed.run_dir) == comparable(whole.run_dir)
    assert resumed.summary.status == "completed"
