"""The answer: the headline names the most accurate cell and the cheapest one not shown to be worse, compares
every cell with the most accurate (Holm-corrected), and the compare folder carries it as data that predict uses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import LOCAL
from transferlab.analysis.plots import pareto_front
from transferlab.analysis.recommendation import holm, recommend
from transferlab.analysis.results import LoadedRun
from transferlab.cli import main
from transferlab.config import DataConfig, Recipe, TrainConfig
from transferlab.models.backbones import get_spec, resolve_backbone
from transferlab.runs import RunSummary, read_compare_summary, resolve_run

PATHS = [f"val/{i}.jpg" for i in range(300)]


def _run(strategy: str, backbone: str, accuracy: float, seconds: float, seed: int = 0, shift: int = 0) -> LoadedRun:
    correct = np.zeros(len(PATHS), dtype=bool)
    correct[np.roll(np.arange(len(PATHS)), shift)[: round(accuracy * len(PATHS))]] = True
    summary = RunSummary(
        status="completed", strategy=strategy, backbone=backbone, total_seconds=seconds, best_val_acc=accuracy
    )
    config = TrainConfig(data=DataConfig(root="photos"), backbone=backbone, seed=seed, recipe=Recipe(batch_size=32))
    return LoadedRun(
        name=f"{backbone}-{strategy}",
        dir=Path("runs"),
        summary=summary,
        metrics=[],
        config=config,
        correct=correct,
        paths=list(PATHS),
    )


def test_holm_adjusts_in_step_down_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_headline_names_the_winning_third_strategy():
    runs = [
        _run("finetune", "efficientnet_lite0", 0.80, 300),
        _run("extract", "efficientnet_lite0", 0.82, 10),
        _run("two-stage", "efficientnet_lite0", 0.97, 200),
    ]
    answer = recommend(runs)
    assert answer.best == "two-stage (efficientnet_lite0, batch 32)" == answer.recommended
    assert answer.sentence.startswith("Use two-stage (efficientnet_lite0, batch 32): 97.0%")
    assert all(c.worse and c.p_holm >= c.p_value for c in answer.comparisons)


def test_cheapest_cell_not_shown_worse_is_recommended_over_the_most_accurate():
    runs = [
        _run("finetune", "efficientnet_lite0", 0.950, 300),
        _run("extract", "efficientnet_lite0", 0.947, 10),
        _run("extract", "efficientnet_lite2", 0.70, 5),
    ]
    answer = recommend(runs)
    assert answer.best == "finetune (efficientnet_lite0, batch 32)"
    assert answer.recommended == "extract (efficientnet_lite0, batch 32)"  # 1 image behind, not shown worse
    assert "not shown to be worse" in answer.sentence and "30.0x faster" in answer.sentence
    assert "add validation images" in answer.settle


def test_fit_recommends_the_most_accurate_model_it_found_whatever_it_costs():
    ensemble = "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2"
    runs = [
        _run("extract", "efficientnet_lite0", 0.947, 10),
        _run("extract", ensemble, 0.957, 40),
        _run("two-stage", "efficientnet_lite0", 0.95, 200),
    ]
    assert recommend(runs).recommended == "extract (efficientnet_lite0, batch 32)"  # compare: cheapest not worse
    answer = recommend(runs, "most accurate")
    assert answer.recommended == answer.best == "extract (lite0+lite1+lite2, batch 32)"
    assert "the most accurate model found within the budget" in answer.sentence and "faster" not in answer.sentence
    runs[1].summary.status, runs[1].config.recipe.epochs = "interrupted", 1
    assert recommend(runs, "most accurate").recommended == "two-stage (efficientnet_lite0, batch 32)"


def test_times_within_ten_percent_are_the_same_cost_and_the_more_accurate_is_used():
    runs = [_run("finetune", "efficientnet_lite0", 0.950, 10.5), _run("extract", "efficientnet_lite0", 0.947, 10.0)]
    assert recommend(runs).recommended == "finetune (efficientnet_lite0, batch 32)"  # 5% slower: no real cost
    runs[0].summary.total_seconds = 11.5
    assert recommend(runs).recommended == "extract (efficientnet_lite0, batch 32)"  # 15% slower


def test_imbalanced_validation_classes_rank_cells_by_balanced_accuracy():
    # 270 photos of class 0, 30 of class 1. "majority" is right on every class-0 photo and no class-1 photo (90%
    # accuracy, 50% balanced); "balanced" misses 30 class-0 photos and no class-1 photo (90% accuracy, 94.4% balanced)
    labels = np.array([0] * 270 + [1] * 30)
    majority, balanced = _run("finetune", "efficientnet_lite0", 0.9, 10), _run("extract", "efficientnet_lite0", 0.9, 10)
    majority.correct, balanced.correct = labels == 0, np.arange(300) >= 30
    for run in (majority, balanced):
        run.labels = labels
    answer = recommend([majority, balanced])
    assert answer.metric == "balanced accuracy" and answer.best == "extract (efficientnet_lite0, batch 32)"
    assert answer.best_accuracy == pytest.approx((240 / 270 + 1) / 2)
    assert answer.comparisons[0].worse and "imbalanced (30 to 270 photos)" in answer.sentence
    assert "94.4% balanced accuracy in" in answer.sentence
    labels[:] = np.arange(300) % 2  # 150 and 150: balanced classes, plain accuracy ranks the cells
    assert recommend([majority, balanced]).metric == "accuracy"


def test_a_cell_without_per_image_results_is_compared_by_its_accuracy_not_waved_through():
    # Its evaluation was interrupted: no per-image results, only the summary's accuracy over 12 images. 4 of 12
    # against 12 of 12 is far outside the noise, so the faster cell must not be recommended (it once was: no pairing
    # gave an interval of nan and a p of 1).
    slow, fast = _run("extract", "efficientnet_lite0", 1.0, 20), _run("finetune", "efficientnet_lite0", 4 / 12, 10)
    slow.summary.val_images = fast.summary.val_images = 12
    fast.correct = fast.paths = None
    answer = recommend([slow, fast])
    assert answer.recommended == answer.best == "extract (efficientnet_lite0, batch 32)"
    assert answer.comparisons[0].worse and answer.comparisons[0].high < 0
    assert "unpaired bootstrap" in answer.method
    # ... while one a single image behind stays a candidate, and the cheaper one is used
    fast.summary.best_val_acc = 11 / 12
    assert recommend([slow, fast]).recommended == "finetune (efficientnet_lite0, batch 32)"


def test_a_run_cut_short_is_not_recommended_for_the_time_it_did_not_spend():
    whole, cut = _run("extract", "efficientnet_lite0", 0.95, 20), _run("finetune", "efficientnet_lite0", 0.95, 8)
    cut.summary.status, cut.summary.epochs_completed = "interrupted", 2
    cut.config.recipe.epochs = 10
    answer = recommend([whole, cut])
    assert answer.recommended == "extract (efficientnet_lite0, batch 32)"
    assert "Not recommended because cut short" in answer.sentence and "after 2 of 10 epochs" in answer.sentence
    whole.summary.best_val_acc, whole.correct[:100] = 0.5, False  # now the finished cell is shown worse
    answer = recommend([whole, cut])
    assert answer.recommended == "finetune (efficientnet_lite0, batch 32)" and "no finished cell" in answer.sentence


def test_headline_names_the_winning_second_backbone():
    runs = [_run("extract", "efficientnet_lite0", 0.85, 10), _run("extract", "efficientnet_lite2", 0.96, 20)]
    answer = recommend(runs)
    assert answer.recommended == "extract (efficientnet_lite2, batch 32)"
    assert answer.comparisons[0].cell == "extract (efficientnet_lite0, batch 32)" and answer.comparisons[0].worse


def test_images_are_paired_by_path_not_by_row():
    a, b = _run("extract", "efficientnet_lite0", 0.9, 10), _run("finetune", "efficientnet_lite0", 0.9, 20)
    order = np.random.default_rng(0).permutation(len(PATHS))  # the same results, rows in another order
    b.correct, b.paths = b.correct[order], [PATHS[i] for i in order]
    comparison = recommend([a, b]).comparisons[0]
    assert comparison.diff == 0 and comparison.low == 0 == comparison.high


def test_small_validation_sets_are_called_out():
    short = [f"val/{i}.jpg" for i in range(80)]
    runs = [_run("finetune", "efficientnet_lite0", 0.9, 30), _run("extract", "efficientnet_lite0", 0.85, 10)]
    for run in runs:
        run.correct, run.paths = run.correct[:80], short
    assert "Only 80 validation images (under 200)" in recommend(runs).settle


def test_pareto_front_keeps_the_cells_nothing_beats():
    points = [(10, 0.90), (20, 0.95), (15, 0.85), (30, 0.94), (40, 0.97)]
    assert pareto_front(points) == [0, 1, 4]


def test_auto_prefers_resnet50_when_its_weights_are_at_hand(monkeypatch):
    spec = get_spec("resnet50")
    monkeypatch.setattr(type(spec.find_weights), "missing", lambda self, variant: None)
    assert resolve_backbone("auto")[0] == "resnet50"


def test_auto_falls_back_to_the_most_accurate_offline_backbone(monkeypatch):
    from transferlab.models.weights import TorchvisionWeights

    monkeypatch.setattr(TorchvisionWeights, "missing", lambda self, variant: "not in the cache")
    name, why = resolve_backbone("auto")
    assert get_spec(name).offline and "auto never downloads" in why
    installed = [
        s for s in (get_spec(f"efficientnet_lite{k}") for k in (0, 1, 2)) if not s.find_weights.missing("IMAGENET")
    ]
    assert name == max(installed, key=lambda s: s.imagenet_top1).name


def test_compare_skips_a_backbone_without_weights_and_predict_uses_the_recommended_run(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code = main(
        [
            "compare",
            str(tiny_dataset),
            "--strategies",
            "extract",
            "--backbones",
            "resnet18,efficientnet_lite0",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "runs"),
            "--name",
            "c",
            "-q",
            "--workers",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "skipped resnet18" in out and out.count("Use extract (efficientnet_lite0, batch") == 1
    folder = tmp_path / "runs" / "c"
    summary = read_compare_summary(folder)
    assert "resnet18" in summary.skipped_backbones and summary.recommendation["recommended_run"] == "extract"
    assert "backbone resnet18 skipped" in (folder / "report.md").read_text()
    assert resolve_run(folder) == folder / "extract"
    photo = next((tiny_dataset / "val" / "red").iterdir())
    assert main(["predict", str(folder), str(photo), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "red"
    from fastapi.testclient import TestClient

    from transferlab.inference.serve import create_app

    assert TestClient(create_app(folder), base_url=LOCAL).get("/health").json()["run"] == str(folder / "extract")
    assert main(["export", str(folder), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "parity on" in capsys.readouterr().out


def test_cv_scores_every_image_with_a_probe_that_never_saw_it(tiny_dataset, tmp_path, capsys):
    assert (
        main(
            [
                "compare",
                str(tiny_dataset),
                "--strategies",
                "extract",
                "--backbone",
                "efficientnet_lite0",
                "--cv",
                "3",
                "--out",
                str(tmp_path),
                "--name",
                "c",
                "-q",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    summary = read_compare_summary(tmp_path / "c")
    (row,) = summary.cross_validation
    assert row["backbone"] == "efficientnet_lite0" and row["folds"] == 3 and row["images"] == 24 + 12
    assert row["accuracy"] > 0.9  # red, green and blue pictures are easy
    assert "Cross-validated over every image (3 folds, 36 images)" in (tmp_path / "c" / "report.md").read_text()


def test_cross_validated_probabilities_come_from_models_that_never_saw_the_image():
    from transferlab.training.probe import cross_val_probabilities

    torch.manual_seed(0)
    x = torch.randn(40, 6)
    y = torch.arange(40) % 2
    x[:, 0] += 4 * y  # learnable
    x[7, 0] = 4.0 * y[7]  # a typical picture of its class...
    given = y.clone()
    given[7] = 1 - y[7]  # one image labelled against its features
    probabilities = cross_val_probabilities(x, given, 2, folds=4)
    assert torch.allclose(probabilities.sum(1), torch.ones(40), atol=1e-5)
    assert probabilities[7, given[7]] < 0.5 and (probabilities.argmax(1) == y).float().mean() > 0.85


@pytest.mark.parametrize(
    ("recipe", "says", "never"),
    [
        ("fast", "fitted the head as a cross-validated probe on cached features in one step", "epochs ("),
        ("reference", "trained the head on cached features for 5 epochs", "probe"),
    ],
)
def test_the_report_says_what_two_stage_did_under_each_recipe(recipe, says, never):
    import dataclasses

    from transferlab.analysis.report import explain_times
    from transferlab.config import RECIPES

    run = _run("two-stage", "efficientnet_lite0", 0.9, 100)
    run.config.recipe = dataclasses.replace(RECIPES[recipe], batch_size=32)
    text = explain_times([run])
    assert says in text and never not in text.split("then fine-tuned")[0]
    run.config.recipe = dataclasses.replace(run.config.recipe, head_solver="sgd", head_epochs=0)
    assert "no head stage" in explain_times([run])
