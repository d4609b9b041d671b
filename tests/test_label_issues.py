"""`doctor --labels` ranks wrongly filed pictures first with the right suggestion, names a stranger as an outlier,
gives the list under `label_issues` in JSON, writes a gallery page, and moves nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import COLOURS, photo_like, synthetic_picture
from transferlab.cli import main
from transferlab.curate.label_issues import neighbour_distance, robust_z


@pytest.fixture(scope="module")
def misfiled(tmp_path_factory) -> Path:
    """red/green/blue, 12 pictures each; two red pictures filed under green, one textured scene filed under blue."""
    root = tmp_path_factory.mktemp("labels") / "photos"
    seed = 0
    for name in ("red", "green", "blue"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            seed += 1
            synthetic_picture(COLOURS[name], seed).save(root / name / f"{name}{i}.png")
    for i in range(2):
        synthetic_picture(COLOURS["red"], 900 + i).save(root / "green" / f"really_red{i}.png")
    photo_like(7).save(root / "blue" / "stranger.png")
    return root


def test_misfiled_pictures_come_first_with_their_class_and_the_stranger_is_an_outlier(misfiled, tmp_path, capsys):
    before = sorted(p.relative_to(misfiled) for p in misfiled.rglob("*"))
    code = main(
        [
            "doctor",
            str(misfiled),
            "--labels",
            "--backbone",
            "efficientnet_lite0",
            "--json",
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "0",
            "-q",
        ]
    )
    document = json.loads(capsys.readouterr().out)
    issues = document["label_issues"]
    assert code == 0
    first_two = {(i["path"], i["suggested"]) for i in issues[:2]}
    assert first_two == {("green/really_red0.png", "red"), ("green/really_red1.png", "red")}
    assert [i["kind"] for i in issues[:2]] == ["label", "label"] and issues[0]["p_label"] < 0.5
    outliers = [i["path"] for i in issues if i["kind"] == "outlier"]
    assert outliers == ["blue/stranger.png"]
    assert document["label_check"]["images"] == 39 and document["label_check"]["backbone"] == "efficientnet_lite0"
    page = Path(document["label_check"]["page"])
    assert page.name == "label_issues.html" and (page.parent / "label_issues.png").exists()
    assert "really_red0.png" in page.read_text()
    assert sorted(p.relative_to(misfiled) for p in misfiled.rglob("*")) == before  # nothing moved


def test_label_check_text_names_the_suggestion(misfiled, tmp_path, capsys):
    assert (
        main(
            [
                "doctor",
                str(misfiled),
                "--labels",
                "--backbone",
                "efficientnet_lite0",
                "--out",
                str(tmp_path / "out"),
                "--workers",
                "0",
                "-q",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "green/really_red0.png: filed green" in text and "looks like red" in text
    assert "blue/stranger.png: blue, but like no other photo" in text and "Nothing was moved" in text


def test_a_folder_the_label_check_cannot_split_still_gets_its_report(tmp_path, capsys):
    for name, count in (("red", 5), ("green", 1)):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(count):
            synthetic_picture(COLOURS[name], 50 + i).save(tmp_path / "photos" / name / f"{i}.png")
    assert (
        main(
            [
                "doctor",
                str(tmp_path / "photos"),
                "--labels",
                "--backbone",
                "efficientnet_lite0",
                "--out",
                str(tmp_path / "runs"),
                "-q",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert out.startswith("dataset: ") and "ERROR: labels not checked: class 'green' has 1 image(s)" in out


def test_outlier_scores_single_out_the_far_point():
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal([5, 0, 0, 0], 0.3, (20, 4)), [[0, 0, 0, 5]]])
    z = robust_z(neighbour_distance(features, k=3))
    assert int(np.argmax(z)) == 20 and z[20] > 4 and np.all(z[:20] < 4)
