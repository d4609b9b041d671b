"""The studio and `serve` under wrong, missing, huge and hostile input: every route answers 4xx with one line,
never 500; paths stay in their folders after symlinks; names are never markup; one change at a time per photo; a
journal or a runs folder of another shape is survived; only this machine's own names are answered; slow clients
are cut off. Each kind failed on the code before it (the closing note of the issue has the table)."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import Request  # at module level: the annotations below are strings, resolved here
from fastapi.testclient import TestClient
from PIL import Image

from conftest import LOCAL, make_folder
from transferlab.studio.app import create_studio

PORT = 8123
HOST = f"127.0.0.1:{PORT}"
HUGE = "x" * 100_000  # in a body
LONG = "x" * 5_000  # in a query: over every bound, under the client's own limit on a URL


def _png(colour=(200, 40, 40), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def photos(tmp_path):
    return make_folder(tmp_path / "photos", {"red": 3, "green": 3}, split=False, ext=".png")


@pytest.fixture
def client(photos, tmp_path):
    app = create_studio(photos, tmp_path / "runs", port=PORT)
    yield TestClient(app, base_url=f"http://{HOST}")
    app.state.studio.close()  # its threads' work ended: none left running under the next test


def _one_line(response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and 0 < len(detail) <= 600, detail
    return detail


# --- every route: a table of wrong, missing, huge and hostile values -------------------------------------------

BAD_REQUESTS = [
    # (method, url, keyword arguments, expected status)
    ("get", "/api/photos", {}, 422),  # cls missing
    ("get", "/api/photos", {"params": {"cls": "red", "offset": "x"}}, 422),
    ("get", "/api/photos", {"params": {"cls": "red", "offset": -1}}, 422),
    ("get", "/api/photos", {"params": {"cls": "red", "limit": 10**12}}, 422),
    ("get", "/api/photos", {"params": {"cls": "red", "split": "nope"}}, 422),
    ("get", "/api/photos", {"params": {"cls": LONG}}, 422),
    ("get", "/api/photos", {"params": {"cls": "../../etc"}}, 400),
    ("get", "/api/thumb", {}, 422),
    ("get", "/api/thumb", {"params": {"path": LONG}}, 422),
    ("get", "/api/thumb", {"params": {"path": "red/\x00.png"}}, 400),
    ("get", "/api/thumb", {"params": {"path": "red/nothing.png"}}, 400),
    ("post", "/api/classes", {"json": None}, 422),
    ("post", "/api/classes", {"json": []}, 422),
    ("post", "/api/classes", {"json": {}}, 422),
    ("post", "/api/classes", {"json": {"name": None}}, 422),
    ("post", "/api/classes", {"json": {"name": 5}}, 422),
    ("post", "/api/classes", {"json": {"name": HUGE}}, 422),
    ("post", "/api/classes", {"json": {"name": "x", "extra": 1}}, 422),
    ("post", "/api/classes", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
    ("post", "/api/move", {"json": {"path": "red/red_0.png"}}, 422),
    ("post", "/api/move", {"json": {"path": ["red/red_0.png"], "to": "green"}}, 422),
    ("post", "/api/move", {"json": {"path": "red/red_0.png", "to": "green", "reason": HUGE}}, 422),
    ("post", "/api/move", {"json": {"path": "red/red_0.png", "to": "green", "reason": 7}}, 422),
    ("post", "/api/move", {"json": {"path": "red/red_0.png", "to": "red"}}, 400),
    ("post", "/api/move", {"json": {"path": "red/red_0.png", "to": "../x"}}, 400),
    ("post", "/api/aside", {"json": {"path": None}}, 422),
    ("post", "/api/aside", {"json": {"path": "/etc/passwd"}}, 400),
    ("post", "/api/undo", {"json": {"id": 5}}, 422),
    ("post", "/api/undo", {"json": {"id": HUGE}}, 422),
    ("post", "/api/undo", {"json": {"id": "nosuchchange"}}, 400),
    ("post", "/api/split", {"json": {"val_fraction": "x"}}, 422),
    ("post", "/api/split", {"json": {"val_fraction": 1.5}}, 422),
    ("post", "/api/split", {"json": {"seed": -1}}, 422),
    ("post", "/api/split", {"json": {"seed": 1.5}}, 422),
    ("post", "/api/check", {"json": {"labels": "yes"}}, 422),
    ("post", "/api/check", {"json": [1]}, 422),
    ("post", "/api/check", {"json": {"shortcuts": 1}}, 422),
    ("post", "/api/check", {"json": {"shortcuts": True, "more": True}}, 422),
    ("get", "/api/heatmap", {}, 422),
    ("get", "/api/heatmap", {"params": {"photo": LONG}}, 422),
    ("get", "/api/heatmap", {"params": {"photo": "red/\x00.png"}}, 400),
    ("get", "/api/heatmap", {"params": {"photo": "../../etc/passwd"}}, 400),
    ("get", "/api/heatmap", {"params": {"photo": "red/red_0.png", "run": "nosuchrun"}}, 400),
    ("get", "/api/heatmap", {"params": {"photo": "red/red_0.png", "run": LONG}}, 422),
    ("post", "/api/model/try", {"params": {"explain": "perhaps"}, "files": {"file": ("a.png", _png())}}, 422),
    ("post", "/api/predict", {"params": {"run": "x", "explain": "x"}, "files": {"file": ("a.png", _png())}}, 422),
    ("post", "/api/train", {"json": {"budget": 5}}, 422),
    ("post", "/api/train", {"json": {"budget": "forever"}}, 422),
    ("post", "/api/train", {"json": {"mode": "sometimes"}}, 422),
    ("post", "/api/train", {"json": {"mode": "compare", "strategies": ["magic"]}}, 422),
    ("post", "/api/train", {"json": {"mode": "compare", "strategies": []}}, 422),
    ("post", "/api/train", {"json": {"mode": "compare", "backbones": ["nope; rm -rf /"]}}, 422),
    ("post", "/api/train", {"json": {"seeds": 10**9}}, 422),
    ("post", "/api/train", {"json": {"epochs": 0}}, 422),
    ("post", "/api/train", {"json": {"epochs": None, "seeds": None}}, 422),
    ("post", "/api/train/cancel", {}, 400),  # nothing runs
    ("get", "/api/results", {}, 422),
    ("get", "/api/results", {"params": {"run": "../photos"}}, 400),
    ("get", "/api/results", {"params": {"run": "nosuchrun"}}, 400),
    ("get", "/api/results", {"params": {"run": LONG}}, 422),
    ("get", "/api/runfile", {"params": {"path": "../photos/red/red_0.png"}}, 400),
    ("get", "/api/runfile", {"params": {"path": LONG}}, 422),
    ("post", "/api/predict", {"params": {"run": "nosuchrun"}, "files": {"file": ("a.png", _png())}}, 400),
    ("post", "/api/predict", {"params": {"run": "nosuchrun"}}, 422),  # no file
    ("post", "/api/export", {"params": {"run": "../.."}}, 400),
    ("get", "/api/download", {"params": {"run": "nosuchrun", "what": "everything"}}, 422),
    ("get", "/api/download", {"params": {"run": "/etc"}}, 400),
    ("post", "/api/upload", {"data": {"cls": "red"}}, 422),  # no file
    ("post", "/api/upload", {"data": {"cls": HUGE}, "files": {"file": ("a.png", _png())}}, 422),
    ("post", "/api/upload", {"data": {"cls": "red", "split": "x"}, "files": {"file": ("a.png", _png())}}, 422),
    ("post", "/api/upload", {"data": {"cls": "red"}, "files": {"file": ("a.png", b"")}}, 400),
    ("post", "/api/upload", {"data": {"cls": "red"}, "files": {"file": ("a.png", b"<svg onload=x>")}}, 415),
    ("post", "/api/upload", {"data": {"cls": "../up"}, "files": {"file": ("a.png", _png())}}, 400),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "status"), BAD_REQUESTS)
def test_every_studio_route_answers_a_bad_request_with_one_line_never_500(client, method, url, kwargs, status):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, (url, kwargs, response.text[:300])
    _one_line(response)
    assert client.get("/api/state").status_code == 200  # and it keeps serving


def test_every_serve_route_answers_a_bad_request_with_one_line_never_500(trained_run):
    from transferlab.inference.serve import create_app

    client = TestClient(create_app(trained_run, max_bytes=200_000, max_pixels=1_000_000), base_url=LOCAL)
    for kwargs, status in (
        ({}, 422),
        ({"files": {"file": ("a.png", b"")}}, 400),
        ({"files": {"file": ("a.png", b"GIF89a nope")}}, 415),
        ({"files": {"file": ("a.png", b"x" * 300_000)}}, 413),
        ({"files": {"file": ("a.png", _png(size=(1200, 1000)))}}, 413),
        ({"data": {"file": "not a file"}}, 422),
        ({"params": {"explain": "sometimes"}, "files": {"file": ("a.png", _png())}}, 422),
    ):
        response = client.post("/predict", **kwargs)
        assert response.status_code == status, (kwargs.keys(), response.text[:200])
        _one_line(response)


# --- findings as data: the label check does not break the doctor's findings -----------------------------------


def test_findings_keep_answering_after_the_label_check_and_name_their_photos(client, photos):
    from transferlab.curate.label_issues import LabelCheck, LabelIssue

    (photos / "green" / "copy.png").write_bytes((photos / "red" / "red_0.png").read_bytes())  # a finding
    state = client.app.state.studio
    state.doctor.result, state.doctor.status = state._diagnose(), "finished"
    issue = LabelIssue(
        path="red/red_1.png",
        label="red",
        suggested="green",
        p_label=0.1,
        p_suggested=0.9,
        kind="label",
        distance=0.2,
        outlier_z=0.0,
    )
    state.labels.result = LabelCheck(
        root=str(photos),
        backbone="efficientnet_lite0",
        folds=5,
        images=7,
        cv_accuracy=0.9,
        seconds=0.1,
        estimated_errors=1,
        issues=[issue],
    )
    state.labels.status = "finished"
    for _ in range(3):  # the first answer once changed what the next ones read (500 from then on)
        answer = client.get("/api/findings")
        assert answer.status_code == 200, answer.text[:300]
    body = answer.json()
    (conflict,) = [f for f in body["doctor"]["report"]["findings"] if f["kind"] == "conflicting-labels"]
    assert conflict["photos"] == ["green/copy.png", "red/red_0.png"]  # paths, not text to parse
    assert conflict["items"] == [{"paths": ["green/copy.png", "red/red_0.png"], "detail": ""}]
    assert [i["path"] for i in body["labels"]["check"]["issues"]] == ["red/red_1.png"]


# --- confinement after symlinks --------------------------------------------------------------------------------


def test_a_class_folder_linked_out_of_the_folder_is_neither_listed_nor_written(client, photos, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(_png())
    (photos / "linked").symlink_to(outside, target_is_directory=True)
    assert "linked" not in [c["name"] for c in client.get("/api/state").json()["classes"]]
    assert client.get("/api/photos", params={"cls": "linked"}).status_code == 400
    move = client.post("/api/move", json={"path": "red/red_0.png", "to": "linked"})
    upload = client.post("/api/upload", data={"cls": "linked"}, files={"file": ("a.png", _png())})
    assert move.status_code == 400 and upload.status_code == 400 and "points out" in _one_line(upload)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.png"] and (photos / "red" / "red_0.png").exists()
    (photos / "red" / "leak.png").symlink_to(outside / "secret.png")  # a photo linked out: not listed either
    assert "red/leak.png" not in client.get("/api/photos", params={"cls": "red"}).json()["photos"]


def _copy_run(trained_run: Path, runs: Path, name: str) -> Path:
    runs.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(trained_run, runs / name, ignore=shutil.ignore_patterns("model.onnx*")))


def test_a_recommended_run_pointing_out_of_the_runs_folder_is_refused(client, tmp_path, trained_run):
    outside = _copy_run(trained_run, tmp_path, "outside-run")
    (outside / "private.txt").write_text("not for download")
    compare = tmp_path / "runs" / "c"
    compare.mkdir(parents=True)
    summary = {
        "kind": "compare",
        "cells": [],
        "skipped_backbones": {},
        "recommendation": {"recommended_run": "../../outside-run"},
    }
    (compare / "summary.json").write_text(json.dumps(summary))
    for url in ("/api/download", "/api/results"):
        response = client.get(url, params={"run": "c", "what": "run"} if url == "/api/download" else {"run": "c"})
        assert response.status_code == 400 and "summary.json" in _one_line(response)
    (compare / "summary.json").write_text(json.dumps({**summary, "recommendation": {"recommended_run": 5}}))
    assert client.get("/api/download", params={"run": "c", "what": "run"}).status_code == 400


def test_a_run_folder_download_packs_no_link(client, tmp_path, trained_run):
    run = _copy_run(trained_run, tmp_path / "runs", "r")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.txt").write_text("secret")
    (run / "linked-dir").symlink_to(tmp_path / "secret", target_is_directory=True)
    (run / "linked-file.txt").symlink_to(tmp_path / "secret" / "key.txt")
    import zipfile

    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/download", params={"run": "r", "what": "run"}).content))
    names = archive.namelist()
    assert "r/model.safetensors" in names and not any("key.txt" in n or "linked" in n for n in names)


# --- names are never markup ------------------------------------------------------------------------------------


def test_a_report_served_by_the_studio_runs_no_script(client, tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "report.html").write_text("<script>alert(1)</script>")
    response = client.get("/api/runfile", params={"path": "r/report.html"})
    assert response.status_code == 200 and "default-src 'none'" in response.headers["content-security-policy"]


def test_names_in_markdown_are_text_whatever_they_hold():
    import markdown

    from transferlab.analysis.evaluation import markdown_text

    for name in ("[x](javascript:alert(1))", "<img src=x onerror=alert(1)>", "a|b", "*bold* `code`", "&lt;"):
        html = markdown.markdown(f"| class |\n|---|\n| {markdown_text(name)} |", extensions=["tables"])
        assert "<a " not in html and "<img" not in html and "<em>" not in html and "<code>" not in html
        assert html.count("<td>") == 1  # the table cell is not broken by a '|'


# --- bounded uploads: one path for the studio and serve ---------------------------------------------------------


def test_the_studio_refuses_a_picture_serve_refuses(client, photos):
    buffer = io.BytesIO()
    Image.new("L", (8000, 7000)).save(buffer, "PNG")  # 56 megapixels in a small file
    response = client.post("/api/upload", data={"cls": "red"}, files={"file": ("big.png", buffer.getvalue())})
    assert response.status_code == 413 and "pixels" in _one_line(response)
    assert sorted(p.name for p in (photos / "red").iterdir()) == ["red_0.png", "red_1.png", "red_2.png"]


def test_same_name_uploads_at_the_same_moment_each_keep_their_own_bytes(client, photos):
    colours = [(i * 20, 255 - i * 20, 90) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda c: client.post("/api/upload", data={"cls": "red"}, files={"file": ("same.png", _png(c))}),
                colours,
            )
        )
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    saved = {a.json()["added"] for a in answers}
    assert len(saved) == 8
    kept = {Image.open(photos / path).convert("RGB").getpixel((0, 0)) for path in saved}
    assert kept == set(colours)  # no file holds another request's bytes
    assert not [p for p in (photos / "red").iterdir() if p.name.startswith(".")]  # no temporary file left


# --- one change at a time per photo -----------------------------------------------------------------------------


def _journal_states(photos: Path) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for line in (photos.parent / "photos.studio" / "journal.jsonl").read_text().splitlines():
        record = json.loads(line)
        states.setdefault(record["id"], []).append(record["state"])
    return states


def test_parallel_moves_and_undos_of_one_photo_one_wins_the_others_get_409(client, photos):
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(
                lambda to: client.post("/api/move", json={"path": "red/red_0.png", "to": to}), ["green", "blue"] * 3
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1 and set(statuses) <= {200, 400, 409}, [a.text for a in answers]
    assert all(a.status_code != 409 or "another request" in _one_line(a) for a in answers)
    entry = next(a.json()["entry"] for a in answers if a.status_code == 200)
    with ThreadPoolExecutor(4) as pool:
        undos = list(pool.map(lambda _: client.post("/api/undo", json={"id": entry["id"]}), range(4)))
    assert sorted(u.status_code for u in undos) == [200, 409, 409, 409], [u.text for u in undos]
    assert (photos / "red" / "red_0.png").exists()
    assert all(states[-1] != "begin" for states in _journal_states(photos).values())  # no begin left open


# --- the journal -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        '{"id": 5, "kind": "move", "source": "photos/red/red_0.png", "target": "photos/green/red_0.png"}',
        '{"id": "a", "kind": "move", "source": null, "target": "photos/green/x.png", "state": "begin"}',
        '{"id": "b", "kind": "teleport", "source": "a", "target": "b", "state": "begin"}',
        '{"id": "c", "kind": "move", "source": "../../etc/passwd", "target": "photos/x.png", "state": "begin"}',
        "[1, 2, 3]",
        '"just a string"',
    ],
)
def test_a_journal_line_of_the_wrong_shape_is_skipped_and_the_studio_starts(photos, tmp_path, line, caplog):
    home = photos.parent / "photos.studio"
    home.mkdir()
    good = {"id": "ok", "kind": "add", "source": "", "target": "photos/red/red_0.png", "state": "done"}
    (home / "journal.jsonl").write_text(f"{line}\n{json.dumps(good)}\n")
    client = TestClient(create_studio(photos, tmp_path / "runs", port=PORT), base_url=f"http://{HOST}")
    assert [e["id"] for e in client.get("/api/journal").json()["entries"]] == ["ok"]
    assert "damaged line" in caplog.text
    assert Path("/etc/passwd").exists()


def test_the_journal_keeps_a_reason_bounded(client):
    entry = client.post("/api/move", json={"path": "red/red_0.png", "to": "green", "reason": "r" * 500}).json()
    assert len(entry["entry"]["reason"]) == 500
    client.app.state.studio.journal.added(Path(client.app.state.studio.workspace.folder) / "red" / "red_1.png", HUGE)
    assert max(len(e["reason"]) for e in client.get("/api/journal").json()["entries"]) == 500


# --- a damaged runs folder ------------------------------------------------------------------------------------------


def test_a_damaged_runs_folder_is_listed_without_what_cannot_be_read(client, tmp_path, trained_run):
    runs = tmp_path / "runs"
    _copy_run(trained_run, runs, "good")
    (runs / "dangling").symlink_to(tmp_path / "nowhere")
    (runs / "list").mkdir()
    (runs / "list" / "summary.json").write_text("[1, 2]")
    (runs / "odd").mkdir()
    (runs / "odd" / "summary.json").write_text('{"kind": "compare", "cells": 5, "recommendation": "x"}')
    (runs / "half").mkdir()
    (runs / "half" / "summary.json").write_text('{"kind": "compare", "cel')
    listed = client.get("/api/runs")
    assert listed.status_code == 200 and [r["name"] for r in listed.json()["runs"]] == ["good"]
    for name in ("list", "odd", "half", "dangling"):
        response = client.get("/api/results", params={"run": name})
        assert response.status_code == 400, (name, response.text[:200])
        _one_line(response)
    good = client.get("/api/results", params={"run": "good"}).json()
    assert good["kind"] == "run" and good["evaluation"] is None or isinstance(good["evaluation"], dict)


def test_a_try_model_is_kept_once_per_run_and_only_the_last_few(client, tmp_path, trained_run, monkeypatch):
    import transferlab.inference.predict as predict
    from transferlab.studio.state import MODELS_KEPT

    loads = []
    monkeypatch.setattr(predict.Classifier, "load", classmethod(lambda cls, path: loads.append(path) or object()))
    runs = tmp_path / "runs"
    for i in range(MODELS_KEPT + 2):
        _copy_run(trained_run, runs, f"r{i}")
    (runs / "alias").symlink_to(runs / "r0", target_is_directory=True)
    state = client.app.state.studio
    state.predictor("r0"), state.predictor("alias"), state.predictor("r0/")
    assert len(loads) == 1  # one run under three names: loaded once
    for i in range(MODELS_KEPT + 2):
        state.predictor(f"r{i}")
    assert len(state.predictors) == MODELS_KEPT


# --- hosts -------------------------------------------------------------------------------------------------------


def test_served_on_every_address_the_page_answers_this_machines_own_names_only():
    from transferlab.inference.web import allowed_hosts

    allows = allowed_hosts("0.0.0.0", 8000)
    for host in ("127.0.0.1:8000", "localhost:8000", f"{socket.gethostname().lower()}:8000", "[::1]:8000"):
        assert allows(host), host
    for host in ("evil.example:8000", "127.0.0.1:9999", "8.8.8.8:8000", "", "localhost"):
        assert not allows(host), host
    assert not allowed_hosts("127.0.0.1", 8000)(f"{socket.gethostname().lower()}:8000")


def test_serve_refuses_a_foreign_host_or_origin(trained_run):
    from transferlab.inference.serve import create_app

    client = TestClient(create_app(trained_run), base_url=LOCAL)
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"host": "rebound.example:8000"}).status_code == 403
    hostile = client.post("/predict", files={"file": ("a.png", _png())}, headers={"origin": "http://evil.example"})
    assert hostile.status_code == 403


def test_a_client_too_slow_to_send_its_request_is_cut_off():
    import uvicorn
    from fastapi import FastAPI

    from transferlab.inference.web import slow_client_protocol

    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> int:
        return len(await request.body())

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=slow_client_protocol(0.5))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        for opening in (
            b"",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\nab",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as slow:
                slow.sendall(opening)
                started = time.monotonic()
                assert slow.recv(1024) == b""  # closed by the server, not by our timeout (which would raise)
                assert time.monotonic() - started < 3
        with socket.create_connection(("127.0.0.1", port), timeout=5) as quick:
            quick.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            assert quick.recv(1024).startswith(b"HTTP/1.1 404")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
