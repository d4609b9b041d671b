"""The studio's photo routes: the folder's classes and photos, thumbnails, new classes and photos, moves, set
aside, the journal and undo, the split, the checks (the doctor, the label check, shortcuts) with their findings,
and the Inbox of unsorted photos."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response

from transferlab.errors import UsageError
from transferlab.studio.requests import (
    MAX_LISTED,
    Aside,
    Check,
    InboxPage,
    Move,
    Name,
    NewClass,
    Split,
    SplitFolder,
    Undo,
)
from transferlab.studio.state import Studio
from transferlab.studio.workspace import Workspace, thumbnail

JOURNAL_SHOWN = 200  # the newest entries /api/journal returns
PAGE = 30  # photos an Inbox page shows (a class's most probable)


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
    def photos(
        cls: Annotated[str, Query(min_length=1, max_length=255)],
        split: Split = "all",
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = 60,
    ) -> dict:
        page, total = state.workspace.photos(cls, split, offset, limit)
        return {"photos": page, "total": total, "offset": offset}

    @app.get("/api/thumb")
    def thumb(path: Annotated[str, Query(min_length=1, max_length=4096)]) -> Response:
        photo = state.workspace.photo(path)
        try:
            with state.uploads.decoding():
                data = thumbnail(photo, max_pixels=state.uploads.max_pixels)
        except HTTPException:
            raise
        except Exception:  # noqa: BLE001 - an unreadable photo has no thumbnail; the doctor says why
            raise HTTPException(415, "cannot show this file") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/classes")
    def create_class(body: NewClass) -> dict:
        state.workspace.create_class(body.name)
        state.changed()
        return overview()

    @app.post("/api/upload")
    def upload(
        cls: Annotated[Name, Form()], file: Annotated[UploadFile, File()], split: Annotated[Split, Form()] = "all"
    ) -> dict:
        added = _save_upload(state, cls, split, file)
        state.changed()
        return {"added": added}


def change_routes(app: FastAPI, state: Studio) -> None:
    """Moving, setting aside, undoing, splitting, and the checks whose findings lead to them."""

    @app.post("/api/move")
    def move(body: Move) -> dict:
        source = state.workspace.photo(body.path)
        split = _split_of(state.workspace, source)
        target = state.workspace.class_dir(body.to, split) / source.name
        if target.parent == source.parent:
            raise UsageError(f"{state.workspace.relative(source)} is already in {body.to}")
        entry = state.journal.move(source, target, "move", body.reason or f"moved to {body.to}")
        state.changed()
        return {"entry": entry.__dict__}

    @app.post("/api/aside")
    def aside(body: Aside) -> dict:
        source = state.workspace.photo(body.path)
        target = state.workspace.aside / str(state.workspace.relative(source))
        entry = state.journal.move(source, target, "aside", body.reason or "set aside")
        state.changed()
        return {"entry": entry.__dict__}

    @app.get("/api/journal")
    def journal() -> dict:
        return {"entries": [e.__dict__ for e in reversed(state.journal.entries()[-JOURNAL_SHOWN:])]}

    @app.post("/api/undo")
    def undo(body: Undo) -> dict:
        entry = state.journal.undo(body.id, state.workspace.aside)
        state.changed()
        return {"entry": entry.__dict__}

    @app.post("/api/split")
    def split(body: SplitFolder) -> dict:
        from transferlab.curate.splitting import split_folder

        if state.workspace.split_dirs() is not None:
            raise UsageError("the folder is split into train/ and val/ already")
        out = state.workspace.folder.parent / f"{state.workspace.folder.name}-split"
        result = split_folder(state.workspace.folder, out, body.val_fraction, body.seed)
        state.open(out)  # the studio goes on with the split folder; the original is left as it was
        state.changed()
        return {"folder": str(out), "counts": result.counts, "lines": result.lines()}

    @app.post("/api/check")
    def check(body: Check) -> dict:
        state.doctor.start()
        if body.labels:
            state.labels.start()
        if body.shortcuts:
            state.shortcuts.start()
        return findings()

    @app.get("/api/findings")
    def findings() -> dict:
        return state.findings()


def inbox_routes(app: FastAPI, state: Studio) -> None:
    """The Inbox (`studio.inbox`): suggestions for the unsorted photos, and accepting a page of them."""

    @app.get("/api/inbox")
    def inbox() -> dict:
        """The unsorted photos' suggestions: a page a class, most probable first (once made)."""
        return state.inbox.state(PAGE)

    @app.post("/api/inbox/suggest")
    def inbox_suggest() -> dict:
        state.inbox.refresh()
        return state.inbox.state(PAGE)

    @app.post("/api/inbox/accept")
    def inbox_accept(body: InboxPage) -> dict:
        """Accept a page: the ticked photos moved into the class (journaled), the class remembered as rejected for
        the unticked ones; the live model refits and the suggestions are made again."""
        entries = state.inbox.accept(body.cls, list(body.accept), list(body.reject), body.new)
        state.changed()
        state.inbox.refresh()
        return {"entries": [e.__dict__ for e in entries]}


def _save_upload(state: Studio, cls: str, split: str, file: UploadFile) -> str:
    """Write an uploaded photo into a class folder: bounded as every upload is (bytes, pixels, decodes at once),
    judged by its bytes, written under a temporary name of its own, never over another file."""
    from transferlab.curate.collect import EXTENSIONS, file_name, judge
    from transferlab.curate.fetching import FetchFailed
    from transferlab.curate.quarantine import free_name

    data = state.uploads.read(file.file)
    state.uploads.check_pixels(data)
    try:
        with state.uploads.decoding():
            kind, _ = judge(data)
    except FetchFailed as error:
        raise HTTPException(415, f"not a photo: {error}") from None
    folder = state.workspace.class_dir(cls, split)
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")  # one per request
    tmp = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        while True:
            target = free_name(folder / file_name(file.filename or "photo", EXTENSIONS[kind]))
            try:
                os.link(tmp, target)  # never over a file that appeared meanwhile: then the next free name
                break
            except FileExistsError:
                continue
    finally:
        tmp.unlink(missing_ok=True)
    state.journal.added(target, f"added to {cls}")
    return str(target.relative_to(state.workspace.folder))


def _split_of(space: Workspace, photo: Path) -> str:
    splits = space.split_dirs()
    if splits is None:
        return "all"
    return next((name for name, d in splits.items() if photo.is_relative_to(d.resolve())), "train")
