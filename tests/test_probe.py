"""The linear probe: scikit-learn's logistic regression solved faster, cross-validated, folded into the head; the
default recipe's extract fits it in one step, the reference recipe keeps the tutorial's SGD head."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from transferlab import DataConfig, Recipe, TrainConfig, train
from transferlab.config import DEFAULT_RECIPE, RECIPES
from transferlab.inference.predict import Classifier
from transferlab.training._solver import affine, lift, logistic, project, row_space
from transferlab.training.probe import C_GRID, fit_probe, stratified_folds


def _blobs(n: int, dim: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, dim)) + 0.8 * rng.normal(size=(classes, dim))[y]
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("n,dim,classes,c", [(90, 12, 3, 0.05), (40, 200, 4, 1.0), (60, 30, 2, 0.3)])
def test_solver_finds_scikit_learns_logistic_regression(n, dim, classes, c):
    x, y = _blobs(n, dim, classes)
    z = (x - x.mean(0)) / x.std(0, unbiased=False)
    reference = LogisticRegression(C=c, max_iter=5000, tol=1e-10).fit(z.numpy(), y.numpy())
    basis = row_space(z)
    w = lift(logistic(project(z, basis), y, c, classes), basis)
    ours = affine(z, w).softmax(1).numpy()
    assert np.abs(ours - reference.predict_proba(z.numpy())).max() < 1e-4


@pytest.mark.parametrize("n,dim,classes,c", [(300, 40, 5, 0.1), (40, 200, 4, 3.0)])
def test_a_float32_fit_started_far_off_still_finds_scikit_learns_solution(n, dim, classes, c):
    # what the probe does: float32, stopping at float32's resolution, started where the C path points (which may
    # overshoot): the start must not show in the answer
    x, y = _blobs(n, dim, classes, seed=3)
    z = ((x - x.mean(0)) / x.std(0, unbiased=False)).float()
    reference = LogisticRegression(C=c, max_iter=5000, tol=1e-10).fit(z.double().numpy(), y.numpy())
    basis = row_space(z)
    zb = project(z, basis)
    far = torch.randn(zb.shape[1] + 1, classes, generator=torch.Generator().manual_seed(0)) * 3
    w = lift(logistic(zb, y, c, classes, init=far), basis)
    ours = affine(z, w).softmax(1).double().numpy()
    assert np.abs(ours - reference.predict_proba(z.double().numpy())).max() < 5e-4


def test_probe_folds_the_standardisation_into_one_linear_layer():
    x, y = _blobs(80, 10, 3, seed=1)
    x = x * 50 + 7  # unscaled features
    probe = fit_probe(x, y, 3)
    z = (x - x.mean(0)) / (x.std(0, unbiased=False) + 1e-6)
    assert probe.C in C_GRID and 2 <= probe.folds <= 5 and 0 <= probe.cv_accuracy <= 1
    basis = row_space(z)
    direct = affine(z, lift(logistic(project(z, basis), y, probe.C, 3), basis)).argmax(1)
    assert torch.equal(probe.logits(x.float()).argmax(1), direct)


def test_default_extract_fits_the_head_as_a_probe_in_one_record(tiny_dataset, tmp_path):
    assert RECIPES[DEFAULT_RECIPE].head_solver == "probe"
    config = TrainConfig(
        data=DataConfig(root=str(tiny_dataset)),
        strategy="extract",
        backbone="efficientnet_lite0",
        out=str(tmp_path),
        quiet=True,
        workers=0,
    )
    result = train(config)
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in metrics] == ["probe"]
    assert result.summary.probe_C in C_GRID and result.best_epoch == 1
    classifier = Classifier.load(result.run_dir)
    crops = torch.stack([classifier.preprocess(p) for p in sorted((tiny_dataset / "val" / "red").iterdir())])
    assert [classifier.classes[i] for i in classifier.probabilities(crops).argmax(1)] == ["red"] * len(crops)


def test_reference_recipe_keeps_the_tutorials_sgd_head(tiny_dataset, tmp_path):
    config = TrainConfig(
        data=DataConfig(root=str(tiny_dataset)),
        strategy="extract",
        backbone="efficientnet_lite0",
        recipe=Recipe(epochs=3, batch_size=8),
        out=str(tmp_path),
        quiet=True,
        workers=0,
    )
    metrics = (train(config).run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["stage"] for m in metrics] == ["head", "head", "head"]


def test_a_probes_accuracies_are_exact_fractions_as_every_runs_are():
    """23 of 24 is 23 / 24 in float64, as the epoch loop counts it: not a float32 that compares as another number
    (0.9583333134651184) beside a fine-tuned run's 0.9583333333333334."""
    from transferlab.training.probe import _scores

    labels = torch.arange(24) % 3
    logits = torch.nn.functional.one_hot(labels, 3).float()
    logits[0] = torch.tensor([0.0, 5.0, 0.0])  # one wrong
    _, accuracy = _scores(logits, labels)
    assert accuracy == 23 / 24


def test_stratified_folds_are_scikit_learns_folds():
    from sklearn.model_selection import StratifiedKFold

    generator = np.random.default_rng(0)
    for trial in range(20):
        classes, folds, seed = int(generator.integers(2, 7)), int(generator.integers(2, 6)), trial
        labels = torch.from_numpy(generator.integers(0, classes, 60 + 7 * trial))
        labels[: classes * folds] = torch.arange(classes).repeat(folds)  # every class has at least `folds` rows
        labels = labels[torch.from_numpy(generator.permutation(len(labels)))]  # classes first seen in any order
        ours = stratified_folds(labels, folds, seed)
        theirs = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels.numpy(), labels.numpy()))
        assert len(ours) == len(theirs) == folds
        for (fit, held), (fit_sk, held_sk) in zip(ours, theirs):
            assert np.array_equal(fit, fit_sk) and np.array_equal(held, held_sk)


def test_past_the_search_limit_the_strength_is_chosen_on_a_stratified_share_and_the_head_fits_every_photo(
    monkeypatch,
):
    from transferlab.training import probe as probe_module

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [200, 200, 12])  # a small class: kept whole in the share
    features = rng.normal(size=(len(labels), 8)).astype(np.float32) + 3 * np.eye(3, 8, dtype=np.float32)[labels]
    monkeypatch.setattr(probe_module, "SEARCH_PHOTOS", 100)
    rows = probe_module._search_rows(torch.from_numpy(labels), 0)
    share = labels[rows.numpy()]
    assert (share == 2).sum() == 12 and 40 <= (share == 0).sum() <= 60 and 40 <= (share == 1).sum() <= 60
    fitted = fit_probe(torch.from_numpy(features), torch.from_numpy(labels), 3)
    every = fitted.logits(torch.from_numpy(features)).argmax(1).numpy()
    assert (every == labels).mean() > 0.9  # the head saw every photo
    assert len(fitted.cv_recall or []) == 3 and fitted.cv_accuracy > 0.8


def test_a_refit_from_the_last_fit_after_one_label_changed_finds_the_same_head(monkeypatch):
    """The live model's refit: each fold started from the last fit's same fold, the head (past the search limit,
    solved in its own thread beside the folds) from the last head; the answer is a cold fit's."""
    from transferlab.training import probe as probe_module

    monkeypatch.setattr(probe_module, "SEARCH_PHOTOS", 120)
    x, y = _blobs(300, 20, 3)
    first = fit_probe(x, y, 3, grid=(0.1,))
    assert len(first.fold_solutions) == first.folds
    moved = y.clone()
    moved[7] = (moved[7] + 1) % 3
    warm = fit_probe(x, moved, 3, grid=(0.1,), start=first)
    cold = fit_probe(x, moved, 3, grid=(0.1,))
    assert float((warm.logits(x) - cold.logits(x)).abs().max()) < 1e-2  # float32 solves, from either start
    assert warm.cv_accuracy == pytest.approx(cold.cv_accuracy, abs=1 / 120)


def test_a_fold_assignment_given_is_the_folds_the_probe_would_deal_itself():
    from transferlab.training.probe import fold_assignment

    x, y = _blobs(90, 12, 3)
    assignment = fold_assignment(y, 3)
    assert sorted(set(assignment.tolist())) == [0, 1, 2, 3, 4]
    dealt, given = fit_probe(x, y, 3), fit_probe(x, y, 3, assignment=assignment)
    assert dealt.C == given.C and dealt.cv_accuracy == given.cv_accuracy
    assert torch.equal(dealt.weight, given.weight) and torch.equal(dealt.bias, given.bias)


def test_a_loss_summed_over_row_blocks_on_two_threads_finds_the_one_thread_solution():
    from transferlab.training._solver import SPLIT_ROWS, logistic, row_blocks

    x, y = _blobs(2 * SPLIT_ROWS + 5, 6, 3)
    z = ((x - x.mean(0)) / x.std(0)).float()
    assert [b.rows for b in row_blocks(z, 2)] == [slice(0, SPLIT_ROWS + 2), slice(SPLIT_ROWS + 2, len(z))]
    assert len(row_blocks(z[:SPLIT_ROWS], 2)) == 1  # too few rows to split
    one, two = logistic(z, y, 0.1, 3), logistic(z, y, 0.1, 3, threads=2)
    assert float((one - two).abs().max()) < 1e-3


def test_a_design_lays_out_each_set_of_rows_once_and_fits_as_the_features_do():
    from transferlab.training._solver import Design

    x, y = _blobs(90, 12, 3)
    design = Design(x)
    rows = np.arange(60)
    assert design.layout(rows, np.arange(60, 90)) is design.layout(rows.copy(), np.arange(60, 90))
    from_design, from_features = fit_probe(design, y, 3), fit_probe(x, y, 3)
    assert from_design.C == from_features.C and torch.equal(from_design.weight, from_features.weight)
    again = fit_probe(design, y, 3)  # the layouts reused: the same probe
    assert torch.equal(again.weight, from_design.weight)
