"""`suggest`: a class for every photo of a pile, learned from the sorted photos, as users get it."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from conftest import COLOURS, make_folder, synthetic_picture
from transferlab.cli import main


@pytest.fixture
def sorted_and_pile(tmp_path):
    photos = make_folder(tmp_path / "photos", {"red": 5, "green": 5, "blue": 5}, split=False)
    pile = tmp_path / "pile"
    (pile / "deeper").mkdir(parents=True)
    truth = {}
    for i in range(12):
        name = list(COLOURS)[i % 3]
        folder = pile / "deeper" if i % 2 else pile
        synthetic_picture(COLOURS[name], 1000 + i).save(folder / f"p{i:02d}.jpg")
        truth[f"p{i:02d}.jpg"] = name
    (pile / ".hidden.jpg").write_bytes(b"not seen")
    return photos, pile, truth


def _csv(capsys) -> list[dict]:
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_every_pile_photo_below_the_folder_gets_its_class_in_the_documented_csv(sorted_and_pile, capsys):
    photos, pile, truth = sorted_and_pile
    assert main(["suggest", str(photos), str(pile), "--format", "csv", "--quiet"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split(",")
    assert header == ["path", "class", "probability", "blue", "green", "red", "unknown"]
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["path"].rsplit("/", 1)[1] for r in rows) == sorted(truth)  # recursive; hidden files skipped
    for row in rows:
        assert row["class"] == truth[row["path"].rsplit("/", 1)[1]]
        shares = [float(row[c]) for c in ("blue", "green", "red")]
        assert abs(sum(shares) - 1) < 1e-3 and float(row["probability"]) == max(shares) > 0.5


def test_a_rejected_class_is_never_suggested_again_and_the_rest_renormalised(sorted_and_pile, tmp_path, capsys):
    photos, pile, truth = sorted_and_pile
    red = next(name for name, cls in truth.items() if cls == "red" and (pile / name).exists())
    rejected = tmp_path / "rejected.csv"
    rejected.write_text(f"path,class\n{pile / red},red\n")
    assert main(["suggest", str(photos), str(pile), "--format", "json", "--rejected", str(rejected), "-q"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = next(line for line in lines if line["path"].endswith(red))
    assert mine["class"] != "red" and mine["probabilities"]["red"] == 0
    assert abs(sum(mine["probabilities"].values()) - 1) < 1e-3
    others = [line for line in lines if truth[line["path"].rsplit("/", 1)[1]] == "red" and line is not mine]
    assert others and all(line["class"] == "red" for line in others)


def test_a_photo_unlike_every_class_is_marked_unknown(sorted_and_pile, capsys):
    from conftest import photo_like

    photos, pile, truth = sorted_and_pile
    photo_like(7).save(pile / "stranger.jpg")
    assert main(["suggest", str(photos), str(pile), "--format", "csv", "-q"]) == 0
    rows = {r["path"].rsplit("/", 1)[1]: r for r in _csv(capsys)}
    assert rows["stranger.jpg"]["unknown"] == "yes"
    assert sum(r["unknown"] == "yes" for name, r in rows.items() if name in truth) <= 1


@pytest.mark.parametrize(
    "content, expected",
    [
        ("path,class\nonly-a-path\n", "line 2: expected 'path,class'"),
        ("a.jpg,red,extra\n", "line 1: expected 'path,class'"),
        (b"\xff\xfe\x00bad", "cannot read it"),
    ],
)
def test_a_wrong_rejected_file_is_one_line_and_exit_2(sorted_and_pile, tmp_path, capsys, content, expected):
    photos, pile, _ = sorted_and_pile
    rejected = tmp_path / "rejected.csv"
    rejected.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["suggest", str(photos), str(pile), "--rejected", str(rejected), "-q"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_a_missing_or_empty_pile_is_one_line(sorted_and_pile, tmp_path, capsys):
    photos, _, _ = sorted_and_pile
    assert main(["suggest", str(photos), str(tmp_path / "nowhere"), "-q"]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["suggest", str(photos), str(tmp_path / "empty"), "-q"]) == 2
    assert "no photos to sort" in capsys.readouterr().err


def test_an_unreadable_pile_photo_is_skipped_with_its_reason(sorted_and_pile, capsys):
    photos, pile, truth = sorted_and_pile
    (pile / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["suggest", str(photos), str(pile), "--format", "csv", "-q"]) == 0
    captured = capsys.readouterr()
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == len(truth)
    assert "skipped" in captured.err and "broken.jpg" in captured.err


def test_label_spreading_is_scikit_learns():
    """`spread_labels` computes scikit-learn's LabelSpreading (knn graph, alpha SPREAD) without importing it."""
    from sklearn.semi_supervised import LabelSpreading

    from transferlab.curate.pile_model import NEIGHBOURS, SPREAD, spread_labels

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    y = rng.integers(0, 3, 300)
    x = centres[y] + 0.8 * rng.normal(size=(300, 16))
    x_lab, y_lab, x_pile = x[:60], y[:60], x[60:]
    ours = spread_labels(x_lab, y_lab, x_pile, 3)
    unit = np.concatenate([x_lab, x_pile])
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    model = LabelSpreading(kernel="knn", n_neighbors=NEIGHBOURS, alpha=SPREAD, max_iter=100)
    theirs = model.fit(unit, np.concatenate([y_lab, np.full(240, -1)])).label_distributions_[60:]
    assert np.abs(ours - theirs).max() < 1e-4
    assert (ours.argmax(1) == y[60:]).mean() > 0.8


def test_the_ridge_held_out_answers_are_those_of_refitting_without_each_photo():
    """The leave-one-out answers that choose the ridge's strength (one eigendecomposition) equal fitting the kernel
    ridge regression again without each photo and answering for it."""
    from transferlab.curate.pile_model import held_out_answers

    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 8))
    kernel = x @ x.T / 8 + 1.0
    targets = np.eye(3)[rng.integers(0, 3, 30)] - 1 / 3
    values, vectors = np.linalg.eigh(kernel)
    fast = next(held_out_answers(values, vectors, targets, [0.5]))
    for i in range(30):
        rest = np.delete(np.arange(30), i)
        weights = np.linalg.solve(kernel[np.ix_(rest, rest)] + 0.5 * np.eye(29), targets[rest])
        assert np.allclose(fast[i], kernel[i, rest] @ weights, atol=1e-8)


def test_the_pile_model_sorts_separable_features_from_several_backbones():
    from transferlab.curate.pile_model import pile_probabilities

    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 400)
    blocks = [rng.normal(size=(4, 32))[y] * 3 + rng.normal(size=(400, 32)) for _ in range(2)]
    p = pile_probabilities([b[:40] for b in blocks], y[:40], [b[40:] for b in blocks], 4)
    assert p.shape == (360, 4) and np.allclose(p.sum(1), 1)
    assert (p.argmax(1) == y[40:]).mean() > 0.95


def test_a_round_whose_photos_are_all_stored_imports_no_torch_and_answers_the_same(sorted_and_pile, tmp_path):
    """The first round computes the features (and remembers the backbone's identity and the unreadable photo); the
    next, in a fresh process as a user runs it, reads them all from the store without importing torch, and says
    the same, the unreadable photo still skipped with its reason."""
    import subprocess
    import sys

    photos, pile, truth = sorted_and_pile
    (pile / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    probe = (
        "import sys; from transferlab.cli import main; code = main(sys.argv[1:]); "
        "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr); sys.exit(code)"
    )
    argv = ["suggest", str(photos), str(pile), "--format", "csv", "-q", "--backbone", "efficientnet_lite0"]
    rounds = [subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True) for _ in range(2)]
    assert [r.returncode for r in rounds] == [0, 0]
    assert "torch imported" in rounds[0].stderr and "no torch" in rounds[1].stderr
    assert all("skipped" in r.stderr and "broken.jpg" in r.stderr for r in rounds)
    first, second = (list(csv.DictReader(io.StringIO(r.stdout))) for r in rounds)
    assert len(first) == len(truth) and [(r["path"], r["class"]) for r in first] == [
        (r["path"], r["class"]) for r in second
    ]
    assert max(abs(float(a["probability"]) - float(b["probability"])) for a, b in zip(first, second)) < 1e-3


def test_a_round_learns_from_at_most_so_many_labelled_photos_each_class_its_share():
    from transferlab.curate.suggest import _evenly

    labels = np.array([0] * 600 + [1] * 300 + [2] * 100)
    assert _evenly(labels, 2000) == list(range(1000))
    chosen = _evenly(labels, 100)
    assert np.bincount(labels[chosen]).tolist() == [60, 30, 10] and chosen == sorted(chosen)
    rare = np.array([0] * 999 + [1])
    assert np.bincount(rare[_evenly(rare, 10)]).tolist() == [10, 1]  # a class keeps one


@pytest.mark.parametrize("backbone, expected", [("auto", "needs backbones named"), ("nope", "nope")])
def test_a_wrong_backbone_is_one_line_and_exit_2(sorted_and_pile, capsys, backbone, expected):
    photos, pile, _ = sorted_and_pile
    with pytest.raises(SystemExit) if backbone == "nope" else _no_exit():
        assert main(["suggest", str(photos), str(pile), "--backbone", backbone, "-q"]) == 2
    assert expected in capsys.readouterr().err


def _no_exit():
    import contextlib

    return contextlib.nullcontext()


@pytest.mark.parametrize(
    "which, expected",
    [("missing", "no such folder"), ("file", "not a folder"), ("one class", "only one class")],
)
def test_wrong_labelled_photos_are_one_line_and_exit_2(sorted_and_pile, tmp_path, capsys, which, expected):
    _, pile, _ = sorted_and_pile
    photos = {"missing": tmp_path / "nowhere", "file": next(pile.glob("*.jpg"))}.get(which)
    if photos is None:
        photos = make_folder(tmp_path / "one", {"red": 3}, split=False)
    assert main(["suggest", str(photos), str(pile), "-q"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
