"""The studio: one local page for the whole loop. Look at the photos and fix them, train, see the results, try the
model, ship it. `create_studio(folder, out)` is the FastAPI app; `studio(...)` serves it.

The page is a view: the doctor (`curate.doctor`), the label check (`curate.label_issues`), `fit` and `compare`
(run as the command), evaluation results (read from the runs' files), `Classifier` and `export_run` do the work.

Security, as every page of transferlab (`inference.web`): it answers only requests whose Host is the page's own and
whose Origin, when sent, is the page's own (a hostile site cannot post to it, nor reach it by DNS rebinding); every
request is validated into a typed model (`requests`: 422, one line); every path a request names or a run's file
points to is resolved and confined to the photo folder or the runs folder; uploads are bounded as `serve` bounds
them; names reach the page as text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from transferlab.errors import Conflict, TransferlabError
from transferlab.inference.web import (
    MAX_BYTES,
    MULTIPART_OVERHEAD,
    BodyLimit,
    SameOrigin,
    address_line,
    allowed_hosts,
    one_line_errors,
    run,
    warn_if_exposed,
)
from transferlab.studio.photo_routes import change_routes, inbox_routes, photo_routes
from transferlab.studio.requests import TrainRequest
from transferlab.studio.result_routes import curve_routes, model_routes, result_routes
from transferlab.studio.state import Studio

STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}


def create_studio(
    folder: str | Path, out: str | Path = "runs", *, host: str = "127.0.0.1", port: int = 8000
) -> FastAPI:
    """The studio's app for the photo folder `folder` (created if need be), its runs written into `out`, answering
    requests for `host`:`port` only (0.0.0.0: this machine's own addresses and names too)."""
    state = Studio(folder, out)
    app = FastAPI(title="transferlab studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, limit=MAX_BYTES + MULTIPART_OVERHEAD)
    app.add_middleware(SameOrigin, allows=allowed_hosts(host, port))
    one_line_errors(app)
    app.state.studio = state

    @app.exception_handler(TransferlabError)
    def expected_failure(request: Request, error: TransferlabError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409 if isinstance(error, Conflict) else 400)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, "no such file")
        return Response((STATIC / name).read_bytes(), media_type=ASSETS[name])

    photo_routes(app, state)
    change_routes(app, state)
    inbox_routes(app, state)
    _train_routes(app, state)
    result_routes(app, state)
    model_routes(app, state)
    curve_routes(app, state)
    return app


def _train_routes(app: FastAPI, state: Studio) -> None:
    @app.get("/api/backbones")
    def backbones() -> dict:
        from transferlab.config import STRATEGIES
        from transferlab.models.backbones import REGISTRY

        specs = sorted(REGISTRY.values(), key=lambda s: (not s.offline, s.input_size))
        return {
            "strategies": list(STRATEGIES),
            "backbones": [{"name": s.name, "at_hand": s.find_weights.missing(s.variants[0]) is None} for s in specs],
        }

    @app.post("/api/train")
    def train(body: TrainRequest) -> dict:
        run = state.training.start(body)
        return {"folder": run.name}

    @app.post("/api/train/cancel")
    def cancel() -> dict:
        state.training.cancel()
        return state.training.progress()

    @app.get("/api/train")
    def progress() -> dict:
        return state.training.progress()

    @app.get("/api/train/events")
    def events() -> StreamingResponse:
        """Server-sent events: the training's progress once a second, until it ends."""

        def stream() -> Iterator[str]:
            last = None
            while True:
                now = state.training.progress()
                text = json.dumps(now)
                if text != last:
                    yield f"data: {text}\n\n"
                    last = text
                if now["status"] != "running":
                    yield "event: end\ndata: {}\n\n"
                    return
                time.sleep(1.0)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def studio(folder: str | Path, out: str | Path = "runs", host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the studio on http://host:port (127.0.0.1 unless told otherwise)."""
    app = create_studio(folder, out, host=host, port=port)
    warn_if_exposed(host, "studio")
    print(f"transferlab studio: {address_line(host, port)}", flush=True)
    run(app, host, port)
