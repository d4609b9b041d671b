"""The studio: one local page for the whole loop. Look at the photos and fix them, train, see the results, try the
model, ship it. `create_studio(folder, out)` is the FastAPI app; `studio(...)` serves it.

The page is a view: the doctor (`curate.doctor`), the label check (`curate.label_issues`), `fit` and `compare`
(run as the command), evaluation results (read from the runs' files), `Classifier` and `export_run` do the work.

Security: it answers only requests whose Host is the page's own and whose Origin, when sent, is the page's own (a
hostile site cannot post to it, nor reach it by DNS rebinding); every path a request names is resolved and confined
to the photo folder or the runs folder; uploads are bounded as `serve` bounds them; names reach the page as text.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from transferlab.errors import TransferlabError
from transferlab.inference.serve import MAX_BYTES, MULTIPART_OVERHEAD, BodyLimit
from transferlab.studio.jobs import Busy, TrainRequest
from transferlab.studio.photo_routes import change_routes, photo_routes
from transferlab.studio.result_routes import model_routes, result_routes
from transferlab.studio.security import SameOrigin
from transferlab.studio.state import Studio

log = logging.getLogger("transferlab")
STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}


def create_studio(folder: str | Path, out: str | Path = "runs", allowed_hosts: tuple[str, ...] = ()) -> FastAPI:
    """The studio's app for the photo folder `folder` (created if need be), its runs written into `out`.
    `allowed_hosts` are the host:port pairs the page is served on (requests naming another Host are refused)."""
    state = Studio(folder, out)
    app = FastAPI(title="transferlab studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, limit=MAX_BYTES + MULTIPART_OVERHEAD)
    app.add_middleware(SameOrigin, hosts=allowed_hosts)
    app.state.studio = state

    @app.exception_handler(TransferlabError)
    def expected_failure(request: Request, error: TransferlabError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409 if isinstance(error, Busy) else 400)

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
    _train_routes(app, state)
    result_routes(app, state)
    model_routes(app, state)
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
    def train(body: dict) -> dict:
        known = set(TrainRequest.__dataclass_fields__)
        request = TrainRequest(**{k: v for k, v in body.items() if k in known})
        run = state.training.start(request)
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

        def stream():
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
    import uvicorn

    hosts = {f"{host}:{port}"}
    if host in ("127.0.0.1", "localhost", "::1"):
        hosts |= {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    else:
        log.warning("studio: listening on %s: anyone who can reach this machine can see and change the photos", host)
    app = create_studio(folder, out, tuple(sorted(hosts)))
    print(f"transferlab studio: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
