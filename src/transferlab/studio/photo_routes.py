"""The studio's photo routes: the folder's classes and photos, thumbnails, new classes and photos, moves, set
aside, the journal and undo, the split, and the checks (the doctor, the label check) with their findings."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import Response

from transferlab.errors import UsageError
from transferlab.inference.serve import MAX_BYTES, read_upload
from transferlab.studio.state import Studio
from transferlab.studio.workspace import Workspace, thumbnail


def photo_routes(app: FastAPI, state: Studio) -> None:

    @app.get("/api/state")
    def overview() -> dict:
        return {
            "folder": str(state.workspace.folder),
            "split": state.workspace.split_dirs() is not None,
            "classes": [{"name": c.name, "counts": c.counts} for c in state.workspace.classes()],
            "out": str(state.out),
        }

    @app.get("/api/photos")
    def photos(cls: str, split: str = "all", offset: int = 0, limit: int = 60) -> dict:
        page, total = state.workspace.photos(cls, split, max(0, offset), min(max(1, limit), 500))
        return {"photos": page, "total": total, "offset": offset}

    @app.get("/api/thumb")
    def thumb(path: str) -> Response:
        try:
            data = thumbnail(state.workspace.photo(path))
        except UsageError:
            raise
        except Exception:  # noqa: BLE001 - an unreadable photo has no thumbnail; the doctor says why
            raise HTTPException(415, "cannot show this file") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/classes")
    def create_class(body: dict) -> dict:
        state.workspace.create_class(str(body.get("name", "")))
        return overview()

    @app.post("/api/upload")
    def upload(cls: str = Form(...), split: str = Form("all"), file: UploadFile = File(...)) -> dict:
        return {"added": _save_upload(state, cls, split, file)}


def change_routes(app: FastAPI, state: Studio) -> None:
    """Moving, setting aside, undoing, splitting, and the checks whose findings lead to them."""

    @app.post("/api/move")
    def move(body: dict) -> dict:
        source = state.workspace.photo(str(body.get("path", "")))
        split = _split_of(state.workspace, source)
        target = state.workspace.class_dir(str(body.get("to", "")), split) / source.name
        if target.parent == source.parent:
            raise UsageError(f"{state.workspace.relative(source)} is already in {body.get('to')}")
        target.parent.mkdir(parents=True, exist_ok=True)
        entry = state.journal.move(source, target, "move", str(body.get("reason") or f"moved to {body.get('to')}"))
        return {"entry": entry.__dict__}

    @app.post("/api/aside")
    def aside(body: dict) -> dict:
        source = state.workspace.photo(str(body.get("path", "")))
        target = state.workspace.aside / str(state.workspace.relative(source))
        entry = state.journal.move(source, target, "aside", str(body.get("reason") or "set aside"))
        return {"entry": entry.__dict__}

    @app.get("/api/journal")
    def journal() -> dict:
        return {"entries": [e.__dict__ for e in reversed(state.journal.entries())]}

    @app.post("/api/undo")
    def undo(body: dict) -> dict:
        return {"entry": state.journal.undo(str(body.get("id", "")), state.workspace.aside).__dict__}

    @app.post("/api/split")
    def split(body: dict) -> dict:
        from transferlab.curate.splitting import split_folder

        if state.workspace.split_dirs() is not None:
            raise UsageError("the folder is split into train/ and val/ already")
        out = state.workspace.folder.parent / f"{state.workspace.folder.name}-split"
        result = split_folder(
            state.workspace.folder, out, float(body.get("val_fraction", 0.2)), int(body.get("seed", 0))
        )
        state.open(out)  # the studio goes on with the split folder; the original is left as it was
        return {"folder": str(out), "counts": result.counts, "lines": result.lines()}

    @app.post("/api/check")
    def check(body: dict) -> dict:
        state.doctor.start()
        if body.get("labels"):
            state.labels.start()
        return findings()

    @app.get("/api/findings")
    def findings() -> dict:
        return state.findings()


def _save_upload(state: Studio, cls: str, split: str, file: UploadFile) -> str:
    """Write an uploaded photo into a class folder: bounded, judged by its bytes, never over another file."""
    from transferlab.curate.collect import EXTENSIONS, file_name, judge
    from transferlab.curate.fetching import FetchFailed
    from transferlab.curate.quarantine import free_name

    data = read_upload(file.file, MAX_BYTES)
    try:
        kind, _ = judge(data)
    except FetchFailed as error:
        raise HTTPException(415, f"not a photo: {error}") from None
    folder = state.workspace.class_dir(cls, split)
    folder.mkdir(parents=True, exist_ok=True)
    target = free_name(folder / file_name(file.filename or "photo", EXTENSIONS[kind]))
    tmp = folder / f".{target.name}.{os.getpid()}.part"
    tmp.write_bytes(data)
    os.link(tmp, target)  # never over a file that appeared meanwhile
    tmp.unlink()
    state.journal.added(target, f"added to {cls}")
    return str(target.relative_to(state.workspace.folder))


def _split_of(space: Workspace, photo: Path) -> str:
    splits = space.split_dirs()
    if splits is None:
        return "all"
    return next((name for name, d in splits.items() if photo.is_relative_to(d.resolve())), "train")
