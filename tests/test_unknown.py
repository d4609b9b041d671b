"""Photos of none of the classes are answered "unknown": the threshold is fitted on validation photos and stored
with the run, predict says so (JSON: known false and the nearest class), a class folder named "unknown" is refused,
and a run trained before the detector existed answers a class as before."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from conftest import COLOURS, make_folder, photo_like, synthetic_picture
from transferlab.cli import main
from transferlab.inference.predict import Classifier
from transferlab.inference.unknown import FILE, fit_unknown_detector, load_detector


def test_threshold_turns_away_about_five_percent_of_known_photos_and_keeps_strangers_out():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 32))
    known = lambda n: torch.tensor(np.repeat(centres, n, 0) + rng.normal(0, 0.3, (3 * n, 32)))  # noqa: E731
    detector = fit_unknown_detector(known(100), known(100))
    held_out = detector.scores(known(200))
    strangers = detector.scores(torch.tensor(rng.normal(0, 1, (100, 32))))
    assert 0.01 <= float((held_out > detector.threshold).float().mean()) <= 0.10
    assert 0.01 <= detector.known_rejected <= 0.10
    assert float((strangers > detector.threshold).float().mean()) > 0.9


def test_the_run_stores_its_detector_and_reports_it(trained_run):
    detector = load_detector(trained_run)
    summary = json.loads((trained_run / "summary.json").read_text())
    assert detector is not None and detector.bank.shape == (18, 1280)  # 18 training photos, lite0 features
    assert summary["unknown_threshold"] == detector.threshold
    assert summary["unknown_known_rejected"] == detector.known_rejected


def test_predict_answers_unknown_with_the_nearest_class(trained_run, tmp_path, capsys):
    scene, red = tmp_path / "scene.jpg", tmp_path / "red.jpg"
    photo_like(5).save(scene)
    synthetic_picture(COLOURS["red"], 777).save(red)
    assert main(["predict", str(trained_run), str(scene), str(red), "--format", "json"]) == 0
    rows = {json.loads(line)["file"]: json.loads(line) for line in capsys.readouterr().out.splitlines()}
    assert rows[str(scene)]["label"] == "unknown" and rows[str(scene)]["known"] is False
    assert rows[str(scene)]["nearest"] == rows[str(scene)]["topk"][0][0]  # the most likely class, not a fixed one
    assert rows[str(red)]["label"] == "red" and rows[str(red)]["known"] is True
    assert main(["predict", str(trained_run), str(scene)]) == 0
    assert "unknown - like none of the training photos (nearest class" in capsys.readouterr().out


def test_evaluate_reports_how_many_photos_of_a_folder_are_answered_unknown(trained_run, tmp_path):
    from transferlab.analysis.evaluate import evaluate_run

    own = evaluate_run(trained_run, quiet=True, write=False)
    strangers = tmp_path / "strangers"
    for k, name in enumerate(("red", "green", "blue")):  # the run's classes, filled with scenes like none of its photos
        for split in ("train", "val"):
            (strangers / split / name).mkdir(parents=True)
            for i in range(3):
                photo_like(100 + 10 * k + i + (5 if split == "val" else 0)).save(strangers / split / name / f"{i}.jpg")
    other = evaluate_run(trained_run, strangers, quiet=True, write=False)
    assert own.answered_unknown is not None and own.answered_unknown <= 0.5
    assert other.answered_unknown == 1.0 and "100.0% answered 'unknown'" in other.summary_line()


def test_a_run_without_a_detector_answers_a_class(trained_run, tmp_path):
    old = tmp_path / "old-run"
    shutil.copytree(trained_run, old)
    (old / FILE).unlink()
    scene = tmp_path / "scene.jpg"
    photo_like(5).save(scene)
    prediction = Classifier.load(old).predict(scene)
    assert prediction.known and prediction.label in ("red", "green", "blue") and prediction.distance is None


def test_a_class_folder_named_unknown_is_refused(tmp_path, capsys):
    root = make_folder(tmp_path / "d", {"cat": 4, "Unknown": 4})
    assert main(["train", str(root), "--backbone", "efficientnet_lite0", "--out", str(tmp_path / "runs"), "-q"]) == 2
    assert "cannot be named 'Unknown'" in capsys.readouterr().err and not (tmp_path / "runs").exists()
