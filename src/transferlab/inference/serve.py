"""A small local web app for a trained run (FastAPI): a page to drop a photo on, `POST /predict`, `GET /health`.

Uploads are bounded in bytes (refused by Content-Length before the body is read, or counted as it streams in:
`BodyLimit`) and in pixels (checked from the image header before any pixel is decoded): an empty upload, a file
that is not an image, or an oversize one gets a 4xx with a clear message, and the server keeps serving. At most one
upload per CPU core is decoded at a time (the others wait up to 10 s, then get 503), so parallel huge uploads cannot
exhaust memory; inference is serialized by a lock, so concurrent requests never race on the model. Class names
reach the page as text, never as markup.
"""

from __future__ import annotations

import html
import io
import json
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import HTMLResponse
from PIL import Image

from transferlab.data.images import UnreadableImage
from transferlab.inference.shipped import Predictor, is_shipped, load_predictor

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000
MULTIPART_OVERHEAD = 64 * 1024  # the multipart envelope around the file: boundaries, headers, the file name
DECODE_WAIT = 10.0  # seconds an upload waits for a decoding slot before 503


def create_app(
    run_dir: str | Path,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    topk: int = 5,
    decode_slots: int | None = None,
    decode_wait: float = DECODE_WAIT,
) -> FastAPI:
    """The web app for `run_dir`'s best model (or, for a compare folder, its recommended run's; or an exported
    `.onnx` file, run without torch).

    At most `decode_slots` uploads (default: one per CPU core) are decoded at once; another waits up to
    `decode_wait` seconds for a slot, then gets 503."""
    classifier = load_predictor(run_dir)
    uploads = UploadPredictor(classifier, max_bytes, max_pixels, decode_slots, decode_wait)
    app = FastAPI(title="transferlab", description=f"Image classifier: {', '.join(classifier.classes)}")
    app.add_middleware(BodyLimit, limit=max_bytes + MULTIPART_OVERHEAD)
    info = {
        "backbone": classifier.metadata.get("backbone"),
        "strategy": classifier.metadata.get("strategy"),
        "classes": classifier.classes,
        "val_acc": classifier.metadata.get("val_acc"),
        **_where(run_dir),
    }

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", **info}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        classes = html.escape(", ".join(classifier.classes))  # folder names are not markup
        return PAGE.replace("{{CLASSES}}", classes).replace("{{MAX_MB}}", str(max_bytes >> 20))

    @app.post("/predict")
    def predict(file: UploadFile = File(...)) -> dict:  # sync: FastAPI runs it in a worker thread
        return {"file": file.filename, **uploads.predict(file.file, topk)}

    return app


def _where(path: str | Path) -> dict:
    """What /health says the app runs: the exported file, or the run folder (a compare folder's recommended run)."""
    if is_shipped(path):
        return {"model": str(path)}
    from transferlab.runs import resolve_run  # torch is loaded already: the run's model is a torch model

    return {"run": str(resolve_run(path))}


class UploadPredictor:
    """Uploaded bytes -> a prediction, safely: bounded in bytes and pixels, at most `decode_slots` decoded at once
    (one per CPU core by default; another waits `decode_wait` seconds, then 503), inference serialized by a lock.
    Every refusal is an HTTPException with a clear message. Shared by `serve` and the studio's Try view."""

    def __init__(
        self,
        classifier: Predictor,
        max_bytes: int = MAX_BYTES,
        max_pixels: int = MAX_PIXELS,
        decode_slots: int | None = None,
        decode_wait: float = DECODE_WAIT,
    ):
        from transferlab.utils.machine import cpu_cores

        self.classifier, self.max_bytes, self.max_pixels, self.decode_wait = (
            classifier,
            max_bytes,
            max_pixels,
            decode_wait,
        )
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(decode_slots or cpu_cores())

    def predict(self, stream: BinaryIO, topk: int) -> dict:
        data = read_upload(stream, self.max_bytes)
        if not self.slots.acquire(timeout=self.decode_wait):
            raise HTTPException(503, "busy decoding other uploads: try again in a moment")
        try:
            crop = _decode(data, self.max_pixels, self.classifier)
        finally:
            self.slots.release()
        with self.lock:
            assessment = self.classifier.assess(crop[None])[0]
        prediction = self.classifier.rank(assessment, topk)
        return {
            "label": prediction.label,
            "probability": prediction.probability,
            "known": prediction.known,
            "nearest": prediction.nearest,
            "topk": [{"label": label, "probability": p} for label, p in prediction.topk],
        }


class BodyLimit:
    """ASGI middleware: a request whose Content-Length is over `limit` gets 413 before a byte of its body is read;
    one without a length is counted as it streams in and cut off with 413 once past the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send)
        seen, started = 0, False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": f"upload too large: more than {self.limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def read_upload(stream: BinaryIO, max_bytes: int) -> bytes:
    """An upload's bytes, at most `max_bytes`: an empty one is a 400, a larger one a 413 (read no further)."""
    data = stream.read(max_bytes + 1)
    if not data:
        raise HTTPException(400, "empty upload: choose an image file")
    if len(data) > max_bytes:
        raise HTTPException(413, f"upload too large: more than {max_bytes} bytes")
    return data


def _decode(data: bytes, max_pixels: int, classifier: Predictor):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:  # size from the header, before decoding pixels
                width, height = header.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise HTTPException(413, "image has too many pixels") from None
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is not an image for us
        raise HTTPException(415, "not an image: upload a JPEG, PNG, GIF, WebP, BMP or TIFF file") from None
    if width * height > max_pixels:
        raise HTTPException(413, f"image has too many pixels: {width}x{height} (at most {max_pixels:,})")
    try:
        return classifier.preprocess(io.BytesIO(data))
    except UnreadableImage as error:
        raise HTTPException(415, f"cannot read the image: {error}") from None


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(run_dir), host=host, port=port, log_level="info")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>transferlab classifier</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:680px;margin:2em auto;padding:0 1em;color:#222}
 #drop{display:block;border:2px dashed #888;border-radius:10px;padding:2em;text-align:center;cursor:pointer}
 #drop.over{background:#eef5ff;border-color:#36c}
 #preview{max-width:100%;max-height:320px;margin:1em auto;display:none}
 .row{display:flex;align-items:center;margin:4px 0}.name{width:130px}.bar{height:18px;background:#36c;border-radius:3px}
 .pct{margin-left:8px;font-variant-numeric:tabular-nums}#error{color:#b00}
</style></head><body>
<h1>What is in the photo?</h1>
<p>Classes: {{CLASSES}}</p>
<label id="drop">Drop a photo here, or click to choose one (at most {{MAX_MB}} MB)
 <input id="file" type="file" accept="image/*,.heic,.heif,.avif" hidden></label>
<img id="preview" alt="your photo">
<p id="error" role="alert"></p>
<h2 id="label"></h2>
<div id="bars"></div>
<script>
const drop = document.getElementById('drop'), input = document.getElementById('file');
async function classify(file) {
  document.getElementById('error').textContent = '';
  document.getElementById('label').textContent = 'Thinking...';
  document.getElementById('bars').replaceChildren();
  const preview = document.getElementById('preview');
  preview.src = URL.createObjectURL(file); preview.style.display = 'block';
  const form = new FormData(); form.append('file', file);
  const response = await fetch('/predict', {method: 'POST', body: form});
  const body = await response.json();
  if (!response.ok) { document.getElementById('label').textContent = '';
    document.getElementById('error').textContent = body.detail; return; }
  document.getElementById('label').textContent = body.known === false
    ? 'unknown: like none of the classes (nearest: ' + body.nearest + ')'
    : body.label + ' (' + (100 * body.probability).toFixed(1) + '%)';
  const bars = document.getElementById('bars');
  for (const t of body.topk) {  // built as elements with textContent: a class name is never parsed as markup
    const row = document.createElement('div'); row.className = 'row';
    const name = document.createElement('span'); name.className = 'name'; name.textContent = t.label;
    const bar = document.createElement('div'); bar.className = 'bar';
    bar.style.width = Math.max(2, 300 * t.probability) + 'px';
    const pct = document.createElement('span'); pct.className = 'pct';
    pct.textContent = (100 * t.probability).toFixed(1) + '%';
    row.append(name, bar, pct); bars.append(row);
  }
}
input.addEventListener('change', () => input.files[0] && classify(input.files[0]));
drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', e => { e.preventDefault(); drop.classList.remove('over');
  if (e.dataTransfer.files[0]) classify(e.dataTransfer.files[0]); });
</script></body></html>
"""
