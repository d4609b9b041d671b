"""The studio's API: paths confined to the folder, only its own page answered, every change journaled and
undoable, nothing lost when it is killed in the middle of a move, one training at a time."""

from __future__ import annotations

import io
import json
import os

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import make_folder
from transferlab.studio.app import create_studio

HOST = "127.0.0.1:8123"


def _png(colour=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def photos(tmp_path):
    return make_folder(tmp_path / "photos", {"red": 3, "green": 3}, split=False, ext=".png")


@pytest.fixture
def client(photos, tmp_path):
    app = create_studio(photos, tmp_path / "runs", host="127.0.0.1", port=8123)
    yield TestClient(app, base_url=f"http://{HOST}")
    app.state.studio.close()  # its threads' work ended: none left running under the next test


def test_the_page_and_its_assets_come_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.split("<body>")[1]
    assert "EventSource" in client.get("/static/app.js").text
    assert client.get("/static/../app.py").status_code == 404


def test_classes_and_a_page_of_photos(client):
    state = client.get("/api/state").json()
    assert [(c["name"], c["counts"]) for c in state["classes"]] == [("green", {"all": 3}), ("red", {"all": 3})]
    page = client.get("/api/photos", params={"cls": "red", "limit": 2}).json()
    assert page["total"] == 3 and page["photos"] == ["red/red_0.png", "red/red_1.png"]
    thumb = client.get("/api/thumb", params={"path": "red/red_0.png"})
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size[0] <= 160


@pytest.mark.parametrize("path", ["../secret.png", "/etc/passwd", "red/../../secret.png", "link/secret.png", ""])
def test_a_path_outside_the_folder_is_refused(client, photos, tmp_path, path):
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.png")
    (photos / "link").symlink_to(tmp_path, target_is_directory=True)
    for method, url, kwargs in (
        ("get", "/api/thumb", {"params": {"path": path}}),
        ("post", "/api/move", {"json": {"path": path, "to": "green"}}),
        ("post", "/api/aside", {"json": {"path": path}}),
    ):
        response = getattr(client, method)(url, **kwargs)
        assert response.status_code == (400 if path else 422), (url, path, response.text)  # "": no path at all
    assert (tmp_path / "secret.png").exists()


def test_results_files_are_confined_to_the_runs_folder(client, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "outside.json").write_text("{}")
    assert client.get("/api/runfile", params={"path": "../outside.json"}).status_code == 400
    assert client.get("/api/results", params={"run": "../photos"}).status_code == 400


def test_a_foreign_host_or_origin_is_refused(client):
    assert client.get("/api/state", headers={"host": "evil.example:8123"}).status_code == 403  # DNS rebinding
    hostile = client.post("/api/classes", json={"name": "x"}, headers={"origin": "http://evil.example"})
    assert hostile.status_code == 403
    assert client.post("/api/classes", json={"name": "y"}, headers={"origin": f"http://{HOST}"}).status_code == 200
    assert [c["name"] for c in client.get("/api/state").json()["classes"]] == ["green", "red", "y"]


@pytest.mark.parametrize("name", ["../up", "a/b", ".hidden", "unknown", "train", " spaced "])
def test_a_class_name_that_is_no_plain_folder_name_is_refused(client, name):
    response = client.post("/api/classes", json={"name": name})
    assert response.status_code == 400 and "cannot be a class name" in response.json()["detail"]


def test_move_and_undo_are_journaled_and_never_overwrite(client, photos):
    (photos / "green" / "red_0.png").write_bytes(_png((1, 2, 3)))  # the name is taken in the target class
    moved = client.post("/api/move", json={"path": "red/red_0.png", "to": "green"}).json()["entry"]
    assert moved["target"] == "photos/green/red_0 (2).png" and moved["state"] == "done"
    assert (photos / "green" / "red_0.png").read_bytes() == _png((1, 2, 3))  # not overwritten
    assert not (photos / "red" / "red_0.png").exists()
    entries = client.get("/api/journal").json()["entries"]
    assert entries[0]["id"] == moved["id"] and entries[0]["kind"] == "move"
    assert client.post("/api/undo", json={"id": moved["id"]}).status_code == 200
    assert (photos / "red" / "red_0.png").exists() and not (photos / "green" / "red_0 (2).png").exists()
    again = client.post("/api/undo", json={"id": moved["id"]})
    assert again.status_code == 409 and "undone already" in again.json()["detail"]


def test_set_aside_moves_into_the_studio_folder_never_deletes(client, photos):
    entry = client.post("/api/aside", json={"path": "green/green_1.png"}).json()["entry"]
    aside = photos.parent / "photos.studio" / "set-aside" / "green" / "green_1.png"
    assert aside.exists() and entry["target"].endswith("set-aside/green/green_1.png")
    client.post("/api/undo", json={"id": entry["id"]})
    assert (photos / "green" / "green_1.png").exists() and not aside.exists()


def test_an_upload_is_judged_by_its_bytes_and_added_as_a_journaled_photo(client, photos):
    good = client.post("/api/upload", data={"cls": "red"}, files={"file": ("cam.jpg", _png(), "image/jpeg")})
    assert good.status_code == 200
    added = good.json()["added"]
    assert added.startswith("red/cam-") and added.endswith(".png")  # named by what the bytes are
    assert (photos / added).exists()
    bad = client.post("/api/upload", data={"cls": "red"}, files={"file": ("x.jpg", b"<html>nope</html>")})
    assert bad.status_code == 415
    huge = client.post("/api/upload", data={"cls": "red"}, files={"file": ("x.png", b"\x89PNG" + b"0" * 21_000_000)})
    assert huge.status_code == 413
    assert client.get("/api/journal").json()["entries"][0]["kind"] == "add"


@pytest.mark.parametrize("killed_after", ["begin", "link"])
def test_a_kill_in_the_middle_of_a_move_leaves_the_photo_in_one_place_and_journaled(
    photos, tmp_path, killed_after, monkeypatch
):
    import transferlab.studio.journal as journal

    def killed(source, target):
        if killed_after == "link":
            os.link(source, target)  # the hard link made, the source not yet removed
        raise SystemExit("killed")

    monkeypatch.setattr(journal, "move_file", killed)
    journal_ = create_studio(photos, tmp_path / "runs", host="127.0.0.1", port=8123).state.studio.journal
    with pytest.raises(SystemExit):  # the process dies in the middle of the move the page asked for
        journal_.move(photos / "red" / "red_1.png", photos / "green" / "red_1.png", "move", "moved to green")
    monkeypatch.undo()
    reopened = TestClient(
        create_studio(photos, tmp_path / "runs", host="127.0.0.1", port=8123), base_url=f"http://{HOST}"
    )
    places = [p for p in (photos / "red" / "red_1.png", photos / "green" / "red_1.png") if p.exists()]
    assert len(places) == 1  # never lost, never twice
    (entry,) = reopened.get("/api/journal").json()["entries"]
    if killed_after == "link":
        assert places == [photos / "green" / "red_1.png"] and entry["state"] == "done"
    else:
        assert places == [photos / "red" / "red_1.png"] and entry["state"] == "abandoned"
    lines = (photos.parent / "photos.studio" / "journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["state"] for line in lines] == ["begin", entry["state"]]


def test_one_training_at_a_time_and_cancel_is_ctrl_c(client, monkeypatch):
    import signal

    import transferlab.studio.jobs as jobs

    class FakeProcess:
        def __init__(self, command, **kwargs):
            self.command, self.signals, self.pid, self.kwargs = command, [], 2**22 + 1, kwargs

        def poll(self):
            return None

        def send_signal(self, sent):
            self.signals.append(sent)

    monkeypatch.setattr(jobs.subprocess, "Popen", FakeProcess)
    first = client.post("/api/train", json={"mode": "compare", "strategies": ["extract"], "epochs": 1})
    assert first.status_code == 200
    process = client.app.state.studio.training.process
    assert process.command[3:5] == ["compare", str(client.app.state.studio.workspace.folder)]
    assert "--strategies" in process.command and "extract" in process.command
    second = client.post("/api/train", json={"mode": "fit"})
    assert second.status_code == 409 and "a training is running" in second.json()["detail"]
    assert client.post("/api/train/cancel").status_code == 200 and process.signals == [signal.SIGINT]
