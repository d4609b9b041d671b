"""The studio's live model (`GET /api/model`): fitted on the photos as they are, it takes in a move, an undo, a new
class or a photo changed outside the page within seconds, says why there is none when the folder cannot be trained
on, answers Try, and saves as a normal run."""

from __future__ import annotations

import io
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from conftest import make_folder, studio_client

FIRST_FIT = 120  # seconds: the backbone loads and every photo's features are computed once
REFIT = 10  # seconds a refit of a few dozen stored photos may take on a loaded machine (it takes well under 2)


@pytest.fixture
def photos(tmp_path):
    return make_folder(tmp_path / "photos", {"red": 8, "green": 8, "blue": 8}, split=False)


@pytest.fixture
def client(photos, tmp_path):
    with studio_client(photos, tmp_path / "runs") as studio:
        yield studio


def _ready(client, journal: int, within: float) -> dict:
    """The live model's state once it is ready and reflects `journal` entries (fails after `within` seconds)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        model = client.get("/api/model").json()
        if model["status"] == "ready" and model["journal"] >= journal:
            return model
        assert model["status"] in ("fitting", "ready"), model
        time.sleep(0.05)
    raise AssertionError(f"not ready within {within} s: {model}")


def test_the_live_model_takes_in_a_move_an_undo_and_a_new_photo(client, photos):
    first = _ready(client, 0, FIRST_FIT)
    assert first["photos"] == 24 and [c["name"] for c in first["classes"]] == ["blue", "green", "red"]
    assert first["accuracy"] > 0.9 and all(c["photos"] == 8 for c in first["classes"])
    moved = client.post("/api/move", json={"path": "red/red_0.jpg", "to": "green"})
    assert moved.status_code == 200
    assert client.get("/api/model").json()["status"] == "fitting"  # never the old model shown as the current one
    after = _ready(client, 1, REFIT)
    assert {c["name"]: c["photos"] for c in after["classes"]} == {"blue": 8, "green": 9, "red": 7}
    client.post("/api/undo", json={"id": moved.json()["entry"]["id"]})
    undone = _ready(client, 2, REFIT)
    assert {c["name"]: c["photos"] for c in undone["classes"]} == {"blue": 8, "green": 8, "red": 8}
    # a photo copied in by another program: the folder is watched
    shutil.copy(photos / "blue" / "blue_0.jpg", photos / "blue" / "copied-in.jpg")
    deadline = time.monotonic() + REFIT
    while client.get("/api/model").json()["photos"] != 25:
        assert time.monotonic() < deadline, "a photo added outside the page was not taken in"
        time.sleep(0.1)


def test_the_live_model_answers_try_and_a_wrong_upload_is_refused(client, photos):
    _ready(client, 0, FIRST_FIT)
    with open(photos / "blue" / "blue_1.jpg", "rb") as photo:
        answer = client.post("/api/model/try", files={"file": ("b.jpg", photo, "image/jpeg")}).json()
    assert answer["label"] == "blue" and len(answer["topk"]) == 3
    refused = client.post("/api/model/try", files={"file": ("x.jpg", b"not a photo", "image/jpeg")})
    assert refused.status_code == 415


def test_the_live_model_shows_where_its_answers_come_from(client, photos):
    _ready(client, 0, FIRST_FIT)
    with open(photos / "blue" / "blue_1.jpg", "rb") as photo:
        answer = client.post("/api/model/try?explain=true", files={"file": ("b.jpg", photo, "image/jpeg")}).json()
    assert answer["label"] == "blue" and answer["heatmap"].startswith("data:image/jpeg;base64,")
    heat = client.get("/api/heatmap", params={"photo": "red/red_2.jpg"})
    assert heat.status_code == 200 and heat.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(heat.content)) as overlay:
        assert overlay.size == (224, 224)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"photo": "../../etc/passwd"}, 400),  # out of the folder
        ({"photo": "/etc/passwd"}, 400),
        ({"photo": "red/none.jpg"}, 400),  # no such photo
        ({"photo": ""}, 422),
        ({"photo": "x" * 5000}, 422),
        ({}, 422),
        ({"photo": "red/red_0.jpg", "run": "no-such-run"}, 400),
        ({"photo": "red/red_0.jpg", "run": "../.."}, 400),
    ],
)
def test_a_heat_map_request_for_a_wrong_photo_or_run_is_refused(client, params, status):
    answer = client.get("/api/heatmap", params=params)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]


def test_no_live_model_says_why_and_try_is_refused(tmp_path):
    photos = make_folder(tmp_path / "one", {"red": 6}, split=False)
    with studio_client(photos, tmp_path / "runs") as client:
        deadline = time.monotonic() + FIRST_FIT
        while (model := client.get("/api/model").json())["status"] == "fitting":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert model["status"] == "none" and "class" in model["error"] and model["classes"] == []
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32)).save(buffer, "PNG")
        refused = client.post("/api/model/try", files={"file": ("a.png", buffer.getvalue(), "image/png")})
        assert refused.status_code == 409 and "no live model" in refused.json()["detail"]
        assert client.post("/api/classes", json={"name": "green"}).status_code == 200
        rng = np.random.default_rng(0)
        for i in range(6):  # six different pictures (copies of one picture cannot be split)
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(photos / "green" / f"g{i}.png")
        deadline = time.monotonic() + FIRST_FIT
        while client.get("/api/model").json()["status"] != "ready":
            assert time.monotonic() < deadline, client.get("/api/model").json()
            time.sleep(0.1)


def test_the_live_model_says_class_by_class_whether_more_photos_would_help(client):
    _ready(client, 0, FIRST_FIT)
    assert client.post("/api/model/curves").status_code == 200
    deadline = time.monotonic() + REFIT * 6
    while (curves := client.get("/api/model/curves").json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert curves["status"] == "finished", curves["error"]
    assert [c["name"] for c in curves["classes"]] == ["blue", "green", "red"]
    for c in curves["classes"]:
        assert c["photos"] == 8 and len(c["recall"]) == 3 and all(0 <= r <= 1 for r in c["recall"])
        assert "photos would" in c["sentence"] or "help little" in c["sentence"]


def test_after_a_move_the_live_fit_keeps_every_photos_fold_and_its_features_laid_out(photos):
    """A move changes one label: every photo stays in its fold (the folds' solves start where they ended), the
    standardised features are reused; new bytes are laid out anew."""
    from transferlab.training.live import LiveFitter

    fitter = LiveFitter()
    fitter.fit(photos, workers=1)
    folds, design = dict(fitter.fold_of), fitter.design
    (photos / "red" / "red_0.jpg").rename(photos / "green" / "red_0.jpg")
    after = fitter.fit(photos, workers=1)
    assert not after.searched and after.counts == [8, 9, 7]
    assert fitter.fold_of == folds and fitter.design is design
    Image.new("RGB", (40, 40), (10, 20, 230)).save(photos / "blue" / "new.png")  # new bytes: laid out anew
    fitter.fit(photos, workers=1)
    assert fitter.design is not design and len(fitter.fold_of) == 25
