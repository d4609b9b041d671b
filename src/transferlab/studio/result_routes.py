"""The studio's result routes: the runs, their answer, table, plots and per-photo results; trying a model on a
photo; exporting and downloading it."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse

from transferlab.errors import TransferlabError, UsageError
from transferlab.studio.jobs import read_runs
from transferlab.studio.state import Studio
from transferlab.studio.workspace import confined
from transferlab.utils.storage import read_json_if_readable

PLOTS = ("curves.png", "accuracy_vs_time.png", "time_breakdown.png")


def result_routes(app: FastAPI, state: Studio) -> None:
    @app.get("/api/runs")
    def runs() -> dict:
        found = []
        if state.out.is_dir():
            for folder in sorted(state.out.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
                summary = read_json_if_readable(folder / "summary.json")
                if summary is None:
                    continue
                answer = summary.get("recommendation") if summary.get("kind") == "compare" else None
                found.append(
                    {
                        "name": folder.name,
                        "kind": summary.get("kind", "run"),
                        "sentence": answer.get("sentence") if answer else None,
                        "runs": [r["name"] for r in read_runs(folder)] if summary.get("kind") == "compare" else [],
                        "onnx": _exported(folder),
                    }
                )
        return {"runs": found}

    @app.get("/api/results")
    def results(run: str) -> dict:
        folder = state.run_folder(run)
        summary = read_json_if_readable(folder / "summary.json") or {}
        answer = summary.get("recommendation")
        chosen = folder / answer["recommended_run"] if answer else folder
        evaluation = read_json_if_readable(chosen / "evaluation" / "evaluation.json")
        return {
            "summary": summary,
            "plots": [name for name in PLOTS if (folder / name).exists()],
            "run": str(chosen.relative_to(state.out)),
            "evaluation": evaluation,
            "predictions": _predictions(state, chosen / "evaluation" / "predictions.csv"),
        }

    @app.get("/api/runfile")
    def runfile(path: str) -> FileResponse:
        file = confined(state.out, path, must_exist=True)
        if file.suffix.lower() not in (".png", ".md", ".html", ".json", ".csv"):
            raise HTTPException(404, "no such file")
        return FileResponse(file)


def model_routes(app: FastAPI, state: Studio) -> None:
    """Try a model on a photo, export it to ONNX, download the export or the run folder."""

    @app.post("/api/predict")
    def predict(run: str, file: UploadFile = File(...)) -> dict:
        return state.predictor(run).predict(file.file, 5)

    @app.post("/api/export")
    def export(run: str) -> dict:
        from transferlab.inference.export import export_run

        result = export_run(state.run_folder(run), "onnx")
        return {"file": str(result.path.relative_to(state.out)), "max_abs_diff": result.max_abs_diff}

    @app.get("/api/download")
    def download(run: str, what: str = "onnx") -> Response:
        folder = state.run_folder(run)
        from transferlab.runs import resolve_run

        chosen = resolve_run(folder)
        if what == "onnx":
            model = chosen / "model.onnx"
            if not model.exists():
                raise UsageError("no ONNX export yet: export it first")
            return FileResponse(model, filename=f"{chosen.name}.onnx", media_type="application/octet-stream")
        return StreamingResponse(
            iter([_zip(chosen)]),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{chosen.name}.zip"'},
        )


def _exported(folder: Path) -> bool:
    """Whether the run a folder stands for (a compare folder: its recommended run) has an ONNX export."""
    from transferlab.runs import resolve_run

    try:
        return (resolve_run(folder) / "model.onnx").exists()
    except TransferlabError:
        return False


def _predictions(state: Studio, path: Path) -> list[dict[str, Any]]:
    """The evaluation's per-photo rows, with each photo's path relative to the studio's folder (None if outside)."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        probabilities = {k[2:]: float(v) for k, v in row.items() if k.startswith("p_")}
        out.append(
            {
                "photo": state.workspace.relative(row["path"]),
                "true": row["true"],
                "predicted": row["predicted"],
                "probability": probabilities.get(row["predicted"], 0.0),
            }
        )
    return out


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buffer.getvalue()
