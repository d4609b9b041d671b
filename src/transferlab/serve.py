"""A small local web app for a trained run (FastAPI): a page to drop a photo on, `POST /predict`, `GET /health`.

Uploads are bounded in bytes and in pixels (checked from the image header before any pixel is decoded) and
checked: an empty upload, a file that is not an image, or an oversize one gets a 4xx with a clear message, and
the server keeps serving. Decoding runs in parallel request threads; inference is serialized by a lock, so
concurrent requests never race on the model.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import HTMLResponse
from PIL import Image

from .images import UnreadableImage
from .predict import Classifier
from .runs import resolve_run

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000


def create_app(run_dir: str | Path, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS, topk: int = 5) -> FastAPI:
    """The web app for `run_dir`'s best model (or, for a compare folder, its recommended run's)."""
    run_dir = resolve_run(run_dir)
    classifier = Classifier.load(run_dir)
    lock = threading.Lock()
    app = FastAPI(title="transferlab", description=f"Image classifier: {', '.join(classifier.classes)}")
    info = {"backbone": classifier.spec.name, "strategy": classifier.metadata.get("strategy"),
            "classes": classifier.classes, "val_acc": classifier.metadata.get("val_acc"), "run": str(run_dir)}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", **info}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.replace("{{CLASSES}}", ", ".join(classifier.classes)).replace("{{MAX_MB}}", str(max_bytes >> 20))

    @app.post("/predict")
    def predict(file: UploadFile = File(...)) -> dict:  # sync: FastAPI runs it in a worker thread
        data = file.file.read(max_bytes + 1)
        if not data:
            raise HTTPException(400, "empty upload: choose an image file")
        if len(data) > max_bytes:
            raise HTTPException(413, f"upload too large: more than {max_bytes} bytes")
        crop = _decode(data, max_pixels, classifier)
        with lock:
            probs = classifier.probabilities(crop.unsqueeze(0))[0]
        prediction = classifier.rank(probs, topk)
        return {"file": file.filename, "label": prediction.label, "probability": prediction.probability,
                "topk": [{"label": label, "probability": p} for label, p in prediction.topk]}

    return app


def _decode(data: bytes, max_pixels: int, classifier: Classifier):
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
 <input id="file" type="file" accept="image/*" hidden></label>
<img id="preview" alt="your photo">
<p id="error" role="alert"></p>
<h2 id="label"></h2>
<div id="bars"></div>
<script>
const drop = document.getElementById('drop'), input = document.getElementById('file');
async function classify(file) {
  document.getElementById('error').textContent = '';
  document.getElementById('label').textContent = 'Thinking...';
  document.getElementById('bars').innerHTML = '';
  const preview = document.getElementById('preview');
  preview.src = URL.createObjectURL(file); preview.style.display = 'block';
  const form = new FormData(); form.append('file', file);
  const response = await fetch('/predict', {method: 'POST', body: form});
  const body = await response.json();
  if (!response.ok) { document.getElementById('label').textContent = '';
    document.getElementById('error').textContent = body.detail; return; }
  document.getElementById('label').textContent = body.label + ' (' + (100 * body.probability).toFixed(1) + '%)';
  document.getElementById('bars').innerHTML = body.topk.map(t =>
    `<div class="row"><span class="name">${t.label}</span><div class="bar" style="width:${Math.max(2, 300 * t.probability)}px"></div>` +
    `<span class="pct">${(100 * t.probability).toFixed(1)}%</span></div>`).join('');
}
input.addEventListener('change', () => input.files[0] && classify(input.files[0]));
drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', e => { e.preventDefault(); drop.classList.remove('over');
  if (e.dataTransfer.files[0]) classify(e.dataTransfer.files[0]); });
</script></body></html>
"""
