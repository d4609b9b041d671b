"""A small local web app for a trained run (FastAPI): a page to drop a photo on, `POST /predict`, `GET /health`.

Uploads are bounded as every page of transferlab bounds them (`web.Uploads`: bytes, pixels from the header before
any pixel is decoded, one decode per CPU core at a time): an empty upload, a file that is not an image, or an
oversize one gets a 4xx with a clear message, and the server keeps serving. Inference is serialized by a lock, so
concurrent requests never race on the model. The app answers only its own Host and Origin (`web.SameOrigin`), and
class names reach the page as text, never as markup.
"""

from __future__ import annotations

import base64
import html
import io
import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import HTMLResponse

from transferlab.data.images import UnreadableImage
from transferlab.inference.shipped import Predictor, is_shipped, load_predictor
from transferlab.inference.web import (
    DECODE_WAIT,
    MAX_BYTES,
    MAX_PIXELS,
    MULTIPART_OVERHEAD,
    BodyLimit,
    SameOrigin,
    Uploads,
    address_line,
    allowed_hosts,
    one_line_errors,
    run,
    warn_if_exposed,
)

if TYPE_CHECKING:
    from transferlab.inference.predict import Classifier


def create_app(
    run_dir: str | Path,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    topk: int = 5,
    decode_slots: int | None = None,
    decode_wait: float = DECODE_WAIT,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> FastAPI:
    """The web app for `run_dir`'s best model (or, for a compare folder, its recommended run's; or an exported
    `.onnx` file, run without torch), answering requests for `host`:`port` only.

    At most `decode_slots` uploads (default: one per CPU core) are decoded at once; another waits up to
    `decode_wait` seconds for a slot, then gets 503."""
    classifier = load_predictor(run_dir)
    uploads = UploadPredictor(classifier, Uploads(max_bytes, max_pixels, decode_slots, decode_wait))
    app = FastAPI(title="transferlab", description=f"Image classifier: {', '.join(classifier.classes)}")
    app.add_middleware(BodyLimit, limit=max_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(SameOrigin, allows=allowed_hosts(host, port))
    one_line_errors(app)
    info = {**classifier.describe(), "classes": classifier.classes, **_where(run_dir)}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", **info}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        classes = html.escape(", ".join(classifier.classes))  # folder names are not markup
        return PAGE.replace("{{CLASSES}}", classes).replace("{{MAX_MB}}", str(max_bytes >> 20))

    @app.post("/predict")
    def predict(file: UploadFile = File(...), explain: bool = False) -> dict:  # sync: run in a worker thread
        return {"file": file.filename, **uploads.predict(file.file, topk, explain=explain)}

    return app


def _where(path: str | Path) -> dict:
    """What /health says the app runs: the exported file, or the run folder (a compare folder's recommended run)."""
    if is_shipped(path):
        return {"model": str(path)}
    from transferlab.runs import resolve_run  # torch is loaded already: the run's model is a torch model

    return {"run": str(resolve_run(path))}


class UploadPredictor:
    """Uploaded bytes -> a prediction, safely: within `uploads`' bounds, inference serialized by a lock. Every
    refusal is an HTTPException with a clear message. Shared by `serve` and the studio's Try view."""

    def __init__(self, classifier: Predictor, uploads: Uploads):
        self.classifier, self.uploads = classifier, uploads
        self.lock = threading.Lock()

    def predict(self, stream: BinaryIO, topk: int, *, explain: bool = False) -> dict:
        """The answer for an uploaded photo; with `explain`, also `heatmap`: where in the photo the answer comes
        from, as a JPEG data URL of the crop the model saw with its class activation map laid over it."""
        explained = self.explainable() if explain else None  # refused before the upload is read
        data = self.uploads.read(stream)
        self.uploads.check_pixels(data)
        with self.uploads.decoding():
            crop = _decode(data, self.classifier)
        with self.lock:
            assessment = self.classifier.assess(crop[None])[0]
            heat = _heat_jpeg(explained, crop) if explained is not None else None
        prediction = self.classifier.rank(assessment, topk)
        answer = {
            "label": prediction.label,
            "probability": prediction.probability,
            "known": prediction.known,
            "nearest": prediction.nearest,
            "topk": [{"label": label, "probability": p} for label, p in prediction.topk],
        }
        if heat is not None:
            answer["heatmap"] = "data:image/jpeg;base64," + base64.b64encode(heat).decode()
        return answer

    def explainable(self) -> Classifier:
        """The model as one whose answers have a heat map (HTTP 400 for an exported model, or one without grids)."""
        from transferlab.inference.explain import has_maps
        from transferlab.inference.predict import Classifier

        if not isinstance(self.classifier, Classifier):
            raise HTTPException(400, "an exported ONNX model has no heat map: use the run it was exported from")
        if not has_maps(self.classifier):
            raise HTTPException(400, f"{self.classifier.meta.backbone}: no heat map for this model")
        return self.classifier

    def heat_of_file(self, path: Path) -> bytes:
        """The overlay of a photo on disk (a photo of the folder: the Results view's wrong photos)."""
        classifier = self.explainable()
        try:
            if path.stat().st_size > self.uploads.max_bytes:
                raise HTTPException(413, f"photo too large: more than {self.uploads.max_bytes} bytes")
            data = path.read_bytes()
        except OSError:  # gone since it was listed
            raise HTTPException(404, "no such photo") from None
        self.uploads.check_pixels(data)
        with self.uploads.decoding():
            crop = _decode(data, classifier)
        with self.lock:
            return _heat_jpeg(classifier, crop)


def _heat_jpeg(classifier: Classifier, crop) -> bytes:
    """The overlay of one decoded crop's answer, as JPEG (the caller holds the predictor's lock)."""
    from transferlab.inference.explain import explain_crops, overlay_jpeg

    (explanation,) = explain_crops(classifier, crop[None])
    return overlay_jpeg(explanation)


def _decode(data: bytes, classifier: Predictor):
    try:
        return classifier.preprocess(io.BytesIO(data))
    except UnreadableImage as error:
        raise HTTPException(415, f"cannot read the image: {error}") from None


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve `run_dir`'s model on http://host:port (127.0.0.1 unless told otherwise)."""
    app = create_app(run_dir, host=host, port=port)
    warn_if_exposed(host, "serve")
    print(f"transferlab serve: {address_line(host, port)}", flush=True)
    run(app, host, port)


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
