"""The studio's result routes: the runs, their answer, table, plots and per-photo results; trying a model on a
photo; exporting and downloading it.

Every run a request names is confined to the runs folder, and so is every run a run's own files point to (a compare
folder's recommended run); a folder of the runs folder that cannot be read as a run (a dangling link, a summary of
another shape) is left out of the list, and named in one line when asked for. Files of a run are served with a
policy that runs no script: a report's HTML is text and pictures only.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse

from transferlab.analysis.evaluate import read_evaluation
from transferlab.analysis.evaluation import Evaluation
from transferlab.errors import Conflict, TransferlabError, UsageError
from transferlab.inference.serve import UploadPredictor
from transferlab.runs import read_compare_summary, read_summary
from transferlab.studio.jobs import read_runs
from transferlab.studio.requests import TrainRequest
from transferlab.studio.state import Studio
from transferlab.studio.workspace import confined

PLOTS = ("curves.png", "accuracy_vs_time.png", "time_breakdown.png")
RUN_FILES = (".png", ".md", ".html", ".json", ".csv")
NO_SCRIPTS = "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; sandbox"
RunName = Annotated[str, Query(min_length=1, max_length=255)]


def result_routes(app: FastAPI, state: Studio) -> None:
    @app.get("/api/runs")
    def runs() -> dict:
        found = []
        for folder in _run_folders(state.out):
            try:
                found.append(_describe(state, folder))
            except (TransferlabError, OSError):
                continue  # not a run this version can read: left out of the list
        return {"runs": found}

    @app.get("/api/results")
    def results(run: RunName) -> dict:
        folder = state.run_folder(run)
        chosen = state.run(run)
        summary = read_compare_summary(folder)
        try:
            evaluation = read_evaluation(chosen)
        except TransferlabError:
            evaluation = None  # damaged: the run's own commands say so; the page shows the rest
        return {
            "kind": summary.kind if summary is not None else "run",
            "sentence": summary.answer if summary is not None else None,
            "cells": summary.cells if summary is not None else [],
            "plots": [name for name in PLOTS if (folder / name).is_file()],
            "run": str(chosen.relative_to(os.path.realpath(state.out))),
            "evaluation": evaluation.summary() if evaluation is not None else None,
            "predictions": _predictions(state, evaluation) if evaluation is not None else [],
        }

    @app.get("/api/runfile")
    def runfile(path: Annotated[str, Query(min_length=1, max_length=4096)]) -> FileResponse:
        file = confined(state.out, path, must_exist=True)
        if file.suffix.lower() not in RUN_FILES:
            raise HTTPException(404, "no such file")
        return FileResponse(file, headers={"Content-Security-Policy": NO_SCRIPTS, "X-Content-Type-Options": "nosniff"})


def model_routes(app: FastAPI, state: Studio) -> None:
    """Try a model on a photo, export it to ONNX, download the export or the run folder."""

    @app.post("/api/predict")
    def predict(run: RunName, file: Annotated[UploadFile, File()], explain: bool = False) -> dict:
        return state.predictor(run).predict(file.file, 5, explain=explain)

    @app.get("/api/heatmap")
    def heatmap(photo: Annotated[str, Query(min_length=1, max_length=4096)], run: RunName | None = None) -> Response:
        """Where a photo of the folder gets its answer from: run `run`'s model (the live model when no run is
        named), the crop it saw with the class activation map of its answer laid over it, as JPEG."""
        path = state.workspace.photo(photo)
        return Response(_predictor(state, run).heat_of_file(path), media_type="image/jpeg")

    @app.get("/api/model")
    def live_model() -> dict:
        """The live model: "none" (and why), "fitting" or "ready"; the journal entries it reflects, its photos,
        cross-validated accuracy and per-class recall."""
        return state.live_model().state()

    @app.post("/api/model/try")
    def live_try(file: Annotated[UploadFile, File()], explain: bool = False) -> dict:
        return _predictor(state, None).predict(file.file, 5, explain=explain)

    @app.post("/api/model/save")
    def live_save() -> dict:
        """Save the live model as a run: an `extract` comparison of the photos as they are, on the live model's
        backbone (its features are stored: it takes seconds), a normal run folder."""
        from transferlab.training.live import LIVE_BACKBONE

        request = TrainRequest(mode="compare", strategies=["extract"], backbones=[LIVE_BACKBONE])
        return {"folder": state.training.start(request).name}

    @app.post("/api/export")
    def export(run: RunName) -> dict:
        from transferlab.inference.export import export_run

        result = export_run(state.run(run), "onnx")
        return {"file": str(result.path.relative_to(os.path.realpath(state.out))), "max_abs_diff": result.max_abs_diff}

    @app.get("/api/download")
    def download(run: RunName, what: Literal["onnx", "run"] = "onnx") -> Response:
        chosen = state.run(run)
        if what == "onnx":
            model = chosen / "model.onnx"
            if not model.is_file() or model.is_symlink():
                raise UsageError("no ONNX export yet: export it first")
            return FileResponse(model, filename=f"{chosen.name}.onnx", media_type="application/octet-stream")
        return StreamingResponse(
            iter([_zip(chosen)]),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{chosen.name}.zip"'},
        )


def curve_routes(app: FastAPI, state: Studio) -> None:
    """The live model's learning curves, class by class (`training.curves`): would more photos still help?"""

    @app.post("/api/model/curves")
    def live_curves_start() -> dict:
        """Start working out, class by class, whether more photos would still help (a learning curve)."""
        state.curves.start()
        return live_curves()

    @app.get("/api/model/curves")
    def live_curves() -> dict:
        curves = state.curves.result if state.curves.status == "finished" else None
        return {
            "status": state.curves.status,
            "error": state.curves.error,
            "classes": [
                {"name": c.name, "photos": c.photos, "recall": c.recall, "rising": c.rising, "sentence": c.sentence()}
                for c in curves or []
            ],
        }


def _predictor(state: Studio, run: str | None) -> UploadPredictor:
    """Run `run`'s model, or the live model when none is named (Conflict while there is none yet)."""
    if run is not None:
        return state.predictor(run)
    predictor = state.live_model().predictor
    if predictor is None:
        raise Conflict("no live model yet: " + (state.live_model().error or "it is being fitted"))
    return predictor


def _run_folders(out: Path) -> list[Path]:
    """The runs folder's sub-folders that stay inside it after symlinks, newest first."""
    if not out.is_dir():
        return []
    real = Path(os.path.realpath(out))
    found = []
    for path in out.iterdir():
        try:
            resolved = Path(os.path.realpath(path))
            if resolved.is_relative_to(real) and resolved != real and path.is_dir():
                found.append((path.stat().st_mtime, path))
        except OSError:
            continue  # gone meanwhile, or a link to nowhere
    return [path for _, path in sorted(found, reverse=True)]


def _describe(state: Studio, folder: Path) -> dict[str, Any]:
    """What /api/runs says of a folder: a compare (or fit) folder with its answer and runs, or one run."""
    summary = read_compare_summary(folder)
    if summary is None:
        read_summary(folder)  # a single run: refused (DamagedFile) unless its summary reads
    return {
        "name": folder.name,
        "kind": summary.kind if summary is not None else "run",
        "sentence": summary.answer if summary is not None else None,
        "runs": [r["name"] for r in read_runs(folder)] if summary is not None else [],
        "onnx": _exported(state, folder.name),
    }


def _exported(state: Studio, name: str) -> bool:
    """Whether the run a folder stands for (a compare folder: its recommended run) has an ONNX export."""
    try:
        return (state.run(name) / "model.onnx").is_file()
    except TransferlabError:
        return False


def _predictions(state: Studio, evaluation: Evaluation) -> list[dict[str, Any]]:
    """The evaluation's per-photo answers, with each photo's path relative to the studio's folder (None if outside)."""
    predicted = evaluation.predicted
    return [
        {
            "photo": state.workspace.relative(path),
            "true": evaluation.classes[int(truth)],
            "predicted": evaluation.classes[int(guess)],
            "probability": float(evaluation.probs[i, guess]),
        }
        for i, (path, truth, guess) in enumerate(zip(evaluation.paths, evaluation.labels, predicted))
    ]


def _zip(folder: Path) -> bytes:
    """The run folder as a zip: its plain files only (no link is followed, in or out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for dirpath, _, filenames in os.walk(folder):  # links to folders are not walked into
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buffer.getvalue()
