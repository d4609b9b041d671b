"""The web app's uploads: bounded in bytes, pixels and decoding slots, parsed by a multipart library without its
known denial-of-service bugs, and class names shown as text, never markup (each test failed on the code before it)."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import LOCAL, make_folder
from transferlab.cli import main
from transferlab.inference.serve import create_app
from transferlab.inference.web import BodyLimit

HOSTILE = "<img src=x onerror=alert(1)>"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _call(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, list[bytes]]:
    """Drive an ASGI app by hand: (status, body chunks the app pulled from the request)."""
    pulled, sent = [], {}

    async def receive():
        body = chunks.pop(0) if chunks else b""
        pulled.append(body)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent["status"], pulled


def _draining_app(scope, receive, send):
    async def app():
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app()


def test_an_announced_oversize_body_is_refused_before_a_byte_is_read():
    status, pulled = _call(BodyLimit(_draining_app, limit=1000), [(b"content-length", b"200000000")], [b"x" * 10])
    assert status == 413 and pulled == []


def test_a_body_without_a_length_is_cut_off_once_past_the_limit():
    chunks = [b"x" * 400] * 10
    status, pulled = _call(BodyLimit(_draining_app, limit=1000), [], chunks)
    assert status == 413 and len(pulled) == 3  # 1200 bytes read, then refused: the other 2800 never pulled


def test_uploads_wait_for_a_decoding_slot_then_get_503(trained_run, monkeypatch):
    import transferlab.inference.serve as serve

    real_decode, started = serve._decode, threading.Event()

    def slow_decode(*args):
        started.set()
        time.sleep(1.5)
        return real_decode(*args)

    monkeypatch.setattr(serve, "_decode", slow_decode)
    client = TestClient(create_app(trained_run, decode_slots=1, decode_wait=0.2), base_url=LOCAL)
    first = {}
    worker = threading.Thread(target=lambda: first.update(r=client.post("/predict", files={"file": ("a.png", _png())})))
    worker.start()
    started.wait(10)
    second = client.post("/predict", files={"file": ("b.png", _png())})
    worker.join()
    assert second.status_code == 503 and "busy" in second.json()["detail"]
    assert first["r"].status_code == 200


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("hostile"), {"red": 6, "green": 6})
    for split in ("train", "val"):
        (root / split / "red").rename(root / split / HOSTILE)
    out = tmp_path_factory.mktemp("runs")
    assert (
        main(
            [
                "compare",
                str(root),
                "--strategies",
                "extract",
                "--backbone",
                "efficientnet_lite0",
                "--out",
                str(out),
                "--name",
                "c",
                "-q",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    return out / "c"


def test_class_names_reach_the_page_and_the_report_as_text(hostile_run):
    page = TestClient(create_app(hostile_run / "extract"), base_url=LOCAL).get("/").text
    report = (hostile_run / "report.html").read_text()
    for html in (page, report):
        assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "innerHTML" not in page


def test_uploads_are_parsed_by_a_python_multipart_without_the_known_dos_bugs():
    from importlib.metadata import version

    from conftest import REPO

    assert '"python-multipart>=0.0.18"' in (REPO / "pyproject.toml").read_text()
    assert tuple(int(p) for p in version("python-multipart").split(".")[:3]) >= (0, 0, 18)
