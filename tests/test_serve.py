"""The web app answers good uploads, rejects every bad one with a clear 4xx and keeps serving, is safe under
concurrent requests, and works in a real headless browser."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import ANIMALS4, COLOURS, LOCAL, REPO, photo_like, synthetic_picture
from studio_pages import ARGS, CHROMIUM, free_port, serving
from transferlab.inference.serve import create_app

ARTIFACTS = REPO / "test-artifacts"


def _png(size=(64, 48), colour=(200, 40, 40), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else (*colour, 255)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(trained_run):
    return TestClient(create_app(trained_run, max_bytes=200_000, max_pixels=1_000_000), base_url=LOCAL)


def test_health_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["classes"] == ["blue", "green", "red"]
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and "blue, green, red" in page.text


def test_good_image_gets_topk_probabilities(client):
    buffer = io.BytesIO()
    synthetic_picture(COLOURS["red"], 4242).save(buffer, "JPEG")  # like the training photos (JPEGs too)
    response = client.post("/predict", files={"file": ("red.jpg", buffer.getvalue(), "image/jpeg")})
    body = response.json()
    assert response.status_code == 200 and body["label"] == "red" and body["known"] is True
    assert abs(sum(t["probability"] for t in body["topk"]) - 1.0) < 1e-5 and body["topk"][0]["label"] == body["label"]


def test_a_photo_of_no_class_is_answered_unknown_with_the_nearest_class(client):
    buffer = io.BytesIO()
    photo_like(3).save(buffer, "JPEG")  # a textured scene: like none of the flat-colour training pictures
    body = client.post("/predict", files={"file": ("scene.jpg", buffer.getvalue(), "image/jpeg")}).json()
    assert body["label"] == "unknown" and body["known"] is False
    assert body["nearest"] in ("blue", "green", "red") and body["nearest"] == body["topk"][0]["label"]


@pytest.mark.parametrize(
    "content, status, message",
    [
        (b"", 400, "empty upload"),
        (b"just some text, not an image", 415, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 300_000, 413, "upload too large"),
        (None, 413, "too many pixels"),  # a small file whose header says 2000x1000 pixels
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, 415, "not an image"),  # a JPEG signature and nothing else
    ],
)
def test_bad_uploads_get_clear_4xx_and_the_server_keeps_serving(client, content, status, message):
    if content is None:
        content = _png(size=(2000, 1000))
    response = client.post("/predict", files={"file": ("x.png", content, "image/png")})
    assert response.status_code == status and message in response.json()["detail"]
    assert client.post("/predict", files={"file": ("ok.png", _png(), "image/png")}).status_code == 200


def test_missing_file_field_is_a_4xx(client):
    assert client.post("/predict").status_code == 422


def test_concurrent_requests_are_safe_and_consistent(client):
    images = [_png(colour=c) for c in ((200, 40, 40), (40, 180, 60), (40, 60, 200))]

    def ask(i):
        return client.post("/predict", files={"file": (f"{i}.png", images[i % 3], "image/png")}).json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(24)))
    for i, answer in enumerate(answers):
        assert answer["topk"] == answers[i % 3]["topk"]  # the same image always gets the same answer


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)")
def test_browser_upload_shows_the_predicted_label(trained_run, tmp_path):
    from playwright.sync_api import sync_playwright

    port = free_port()
    app = create_app(trained_run, port=port)
    photos = sorted((ANIMALS4 / "val" / "cat").glob("*.jpg"))[:1] if ANIMALS4.is_dir() else []
    photo = photos[0] if photos else tmp_path / "red.png"
    if not photos:
        photo.write_bytes(_png())
    answer = (
        TestClient(app, base_url=f"http://127.0.0.1:{port}")
        .post("/predict", files={"file": (photo.name, photo.read_bytes())})
        .json()
    )
    expected = answer["label"]
    with serving(app, port), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".bar", timeout=30_000)
        label = page.text_content("#label")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve_page.png"), full_page=True)
        browser.close()
    if answer["known"]:
        assert label.startswith(expected + " (") and label.endswith("%)")
    else:  # a cat photo for a red/green/blue model: like none of its classes
        assert label == f"unknown: like none of the classes (nearest: {answer['nearest']})"
    assert (ARTIFACTS / "serve_page.png").stat().st_size > 10_000
