"""Evaluation numbers are right (checked against hand computations), uncertainty is reported, the paired test
tells noise from a real difference, and runs are bit-reproducible with --deterministic."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score

from conftest import make_folder
from transferlab import DataConfig, Recipe, TrainConfig, compare, train
from transferlab.analysis.evaluate import Evaluation, evaluate_run, wilson_interval
from transferlab.analysis.stats import paired_bootstrap
from transferlab.cli import main
from transferlab.inference.predict import Classifier


def _config(root, out, **kwargs) -> TrainConfig:
    recipe = Recipe(epochs=kwargs.pop("epochs", 1), batch_size=8)
    return TrainConfig(
        data=DataConfig(root=str(root)),
        backbone="efficientnet_lite0",
        recipe=recipe,
        out=str(out),
        quiet=True,
        workers=0,
        **kwargs,
    )


def test_wilson_interval_matches_the_formula():
    k, n, z = 263, 273, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(centre - half, abs=1e-9) and high == pytest.approx(centre + half, abs=1e-9)


@pytest.mark.parametrize(("k", "n", "confidence"), [(0, 7, 0.95), (7, 7, 0.95), (3, 10, 0.9), (270, 273, 0.99)])
def test_wilson_interval_is_scipys(k, n, confidence):
    from scipy.stats import binomtest

    expected = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert wilson_interval(k, n, confidence) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_per_class_scores_and_confusion_are_scikit_learns():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)
    labels[labels == 3] = 0  # a class with no photos: sklearn's zero_division=0
    probs = rng.dirichlet(np.ones(4), 60)
    probs[:, 2] = 0  # a class never predicted
    evaluation = Evaluation(run_dir=Path("x"), classes=list("abcd"), paths=[str(i) for i in range(60)],
                            labels=labels, probs=probs / probs.sum(1, keepdims=True))  # fmt: skip
    expected = precision_recall_fscore_support(labels, evaluation.predicted, labels=range(4), zero_division=0)
    ours = evaluation.per_class()
    for k, name in enumerate("abcd"):
        row = ours[name]
        assert [row["precision"], row["recall"], row["f1"], row["support"]] == pytest.approx([e[k] for e in expected])
    assert evaluation.confusion().tolist() == confusion_matrix(labels, evaluation.predicted, labels=range(4)).tolist()


def test_metrics_match_a_hand_computed_example(tmp_path):
    # 4 images, 2 classes: predictions a, a, b, a for truths a, b, b, b; every confidence 0.9
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.9, 0.1]])
    evaluation = Evaluation(
        run_dir=tmp_path, classes=["a", "b"], paths=["1", "2", "3", "4"], labels=np.array([0, 1, 1, 1]), probs=probs
    )
    assert evaluation.accuracy == 0.5
    assert evaluation.confusion().tolist() == [[1, 0], [2, 1]]
    per_class = evaluation.per_class()
    assert per_class["a"] == pytest.approx({"precision": 1 / 3, "recall": 1.0, "f1": 0.5, "support": 1})
    assert per_class["b"]["precision"] == 1.0 and per_class["b"]["recall"] == pytest.approx(1 / 3)
    assert evaluation.macro_f1 == pytest.approx(0.5)
    assert evaluation.calibration_error == pytest.approx(0.4)  # confidence 0.9, accuracy 0.5


def test_paired_bootstrap_tells_noise_from_a_real_difference():
    rng = np.random.default_rng(0)
    base = rng.random((3, 300)) < 0.9
    same = paired_bootstrap(base, base.copy(), "x", "y", resamples=2000)
    assert same.diff == 0 and not same.significant and "within the run-to-run" in same.sentence()
    worse = base & (rng.random((3, 300)) < 0.8)  # b loses about a fifth of a's correct answers
    real = paired_bootstrap(base, worse, "x", "y", resamples=2000)
    assert real.significant and real.low > 0 and "x beats y" in real.sentence()
    assert "paired bootstrap over 300 validation images and 3 seeds" in real.sentence()


def test_evaluate_run_writes_every_artefact_and_agrees_with_training(trained_run):
    evaluation = evaluate_run(trained_run, quiet=True)
    out = trained_run / "evaluation"
    for name in (
        "confusion_matrix.png",
        "reliability.png",
        "top_losses.png",
        "predictions.png",
        "evaluation.json",
        "evaluation.md",
        "predictions.csv",
    ):
        assert (out / name).exists(), name
    summary = json.loads((trained_run / "summary.json").read_text())
    assert abs(evaluation.accuracy - summary["best_val_acc"]) <= 1 / len(evaluation.labels) + 1e-9
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["accuracy_ci95"][0] <= saved["accuracy"] <= saved["accuracy_ci95"][1]


def test_another_folder_is_evaluated_whole_on_the_classes_it_holds(trained_run, tmp_path, capsys):
    test = make_folder(tmp_path / "test", {"red": 3, "blue": 2}, split=False)  # a test set: no split, 2 of 3 classes
    evaluation = evaluate_run(trained_run, test, quiet=True)
    assert len(evaluation.labels) == 5 and sorted(set(evaluation.labels.tolist())) == [0, 2]  # blue, red
    # macro F1 over the classes held or predicted (scikit-learn's default), not over all three
    assert evaluation.macro_f1 == pytest.approx(f1_score(evaluation.labels, evaluation.predicted, average="macro"))
    assert (trained_run / "evaluation-test" / "evaluation.json").exists()
    (tmp_path / "kaggle").mkdir()
    (tmp_path / "test").rename(tmp_path / "kaggle" / "test")  # train/ + test/: the test/ part
    make_folder(tmp_path / "kaggle" / "train", {"red": 2, "green": 2}, split=False)
    assert len(evaluate_run(trained_run, tmp_path / "kaggle", quiet=True, write=False).labels) == 5
    (tmp_path / "broken" / "red").mkdir(parents=True)
    (tmp_path / "broken" / "red" / "cut.jpg").write_bytes(b"\xff\xd8\xff")
    assert main(["evaluate", str(trained_run), str(tmp_path / "broken"), "-q"]) == 2
    assert "none of the 1 photo(s) to evaluate could be read" in capsys.readouterr().err
    make_folder(tmp_path / "zoo", {"red": 1, "zebra": 1}, split=False)
    assert main(["evaluate", str(trained_run), str(tmp_path / "zoo"), "-q"]) == 2
    assert "zebra are not classes of the model (blue, green, red)" in capsys.readouterr().err


def test_the_runs_own_single_folder_is_evaluated_on_its_validation_photos_only(tmp_path):
    photos = make_folder(tmp_path / "photos", {"red": 8, "green": 8}, split=False)  # split 80/20 when training
    run = train(_config(photos, tmp_path / "runs", strategy="extract")).run_dir
    evaluation = evaluate_run(run, photos, quiet=True)  # not all 16: 12 of them trained the model
    assert len(evaluation.labels) == 4 and evaluation.paths == evaluate_run(run, quiet=True, write=False).paths
    assert (run / "evaluation" / "evaluation.json").exists() and not list(run.glob("evaluation-*"))


def test_predict_handles_every_mode_dirs_globs_and_bad_files(trained_run, tmp_path, capsys):
    pics = tmp_path / "pics"
    (pics / "sub").mkdir(parents=True)
    base = Image.new("RGB", (80, 60), (40, 60, 200))
    base.convert("RGBA").save(pics / "rgba.png")
    base.convert("P").save(pics / "palette.png", transparency=0)
    base.convert("CMYK").save(pics / "sub" / "cmyk.jpg")
    Image.fromarray(np.full((60, 80), 40000, np.uint16)).save(pics / "sub" / "sixteen.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    base.save(pics / "rotated.jpg", exif=exif.tobytes())
    (pics / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    code = main(["predict", str(trained_run), str(pics), "--format", "json", "--topk", "2"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1 and len(rows) == 6
    good = [r for r in rows if "error" not in r]
    assert len(good) == 5 and all(len(r["topk"]) == 2 and r["nearest"] == r["topk"][0][0] for r in good)
    assert all(r["label"] == (r["nearest"] if r["known"] else "unknown") for r in good)
    assert [r["file"].endswith("broken.jpg") for r in rows if "error" in r] == [True]
    code = main(["predict", str(trained_run), str(pics / "*.png"), "--format", "csv", "--tta"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[0].startswith("file,label,probability") and len(lines) == 3


def test_python_api_predicts_a_path_like_the_batched_cli(trained_run, tmp_path):
    picture = tmp_path / "p.png"
    Image.new("RGBA", (64, 48), (200, 40, 40, 255)).save(picture)
    classifier = Classifier.load(trained_run)
    single = classifier.predict(picture)
    ((_, batched),) = list(classifier.predict_files([picture]))
    assert single.probability == pytest.approx(float(batched.probs.max()), abs=1e-6)
    assert single.distance == pytest.approx(batched.distance, abs=1e-6)


def test_deterministic_runs_are_bit_identical(tiny_dataset, tmp_path):
    metrics, weights = [], []
    for n in range(2):
        result = train(_config(tiny_dataset, tmp_path / f"r{n}", strategy="finetune", deterministic=True))
        metrics.append(
            [
                {k: v for k, v in json.loads(line).items() if "seconds" not in k}
                for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
            ]
        )
        weights.append(Classifier.load(result.run_dir).model.state_dict())
    assert metrics[0] == metrics[1]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other = train(_config(tiny_dataset, tmp_path / "r2", strategy="finetune", deterministic=True, seed=1))
    assert not torch.equal(
        Classifier.load(other.run_dir).model.state_dict()["head.1.weight"], weights[0]["head.1.weight"]
    )


def test_compare_with_seeds_reports_spread_test_and_self_contained_html(tiny_dataset, tmp_path):
    result = compare(_config(tiny_dataset, tmp_path / "runs"), ("finetune", "extract"), seeds=2)
    assert sorted(p.name for p in result.out_dir.iterdir() if p.is_dir()) == [
        "extract-seed0",
        "extract-seed1",
        "finetune-seed0",
        "finetune-seed1",
    ]
    report = result.report.read_text()
    assert "## Is the difference real?" in report and "paired bootstrap over 12 validation images and 2 seeds" in report
    assert re.search(r"\| finetune \| 2 \| [\d.]+% ± [\d.]+% \|", report)
    assert "## Evaluation: finetune\\-seed0" in report and "finetune-seed0/evaluation/confusion_matrix.png" in report
    html = result.report.with_suffix(".html").read_text()
    assert html.count("data:image/png;base64,") >= 7 and 'src="' not in html.replace('src="data:', "")


def test_evaluating_on_another_folder_keeps_the_runs_own_predictions(trained_run, tmp_path, capsys):
    own = trained_run / "evaluation" / "predictions.csv"
    before = own.read_text() if own.exists() else None
    other = make_folder(tmp_path / "elsewhere", {"red": 3, "green": 3, "blue": 3})
    assert main(["evaluate", str(trained_run), str(other), "-q"]) == 0
    assert (trained_run / "evaluation-elsewhere" / "predictions.csv").exists()
    assert (own.read_text() if own.exists() else None) == before
    assert "evaluation-elsewhere" in capsys.readouterr().out


def test_calibration_error_equals_torchmetrics_on_random_and_edge_probabilities():
    import numpy as np
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    from transferlab.analysis.evaluation import CALIBRATION_BINS, expected_calibration_error

    rng = np.random.default_rng(0)
    for classes, n in ((2, 7), (4, 300), (9, 1000)):
        logits = rng.normal(size=(n, classes)) * rng.uniform(0.1, 8)
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        probs[0] = np.eye(classes)[0]  # a confidence of exactly 1
        labels = rng.integers(0, classes, n)
        expected = multiclass_calibration_error(
            torch.from_numpy(probs).float(), torch.from_numpy(labels), classes, n_bins=CALIBRATION_BINS, norm="l1"
        )
        assert expected_calibration_error(probs, labels, CALIBRATION_BINS) == pytest.approx(float(expected), abs=1e-6)
