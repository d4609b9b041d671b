"""`transferlab predict`: answers for image files from a run or an exported model, as a table, JSON lines or CSV,
with `--explain` each photo's heat map written beside."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from transferlab.errors import UsageError, at_least


def expand_images(patterns: list[str]) -> list[Path]:
    """Files as given, image files under folders (recursively), and glob patterns (also when quoted)."""
    import glob

    from transferlab.data.images import is_image_file

    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
        elif any(ch in pattern for ch in "*?[") and not path.exists():
            found += sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        else:
            found.append(path)  # a missing file gets its own error line
    return found


def cmd_predict(args: argparse.Namespace) -> int:
    import csv

    from transferlab.inference.shipped import load_predictor

    at_least("topk", args.topk, 1)  # before loading anything; `answer` checks it too
    classifier = load_predictor(args.run)  # a run (torch) or an exported .onnx file (onnxruntime, no torch)
    files = expand_images(args.images)
    if not files:
        raise UsageError(f"no images matched {' '.join(args.images)}")
    overlays = _overlays(classifier, files, args.explain) if args.explain else {}
    writer = csv.writer(sys.stdout) if args.format == "csv" else None
    if writer:
        header = ["file", "label", "probability", "topk", "error", "known", "nearest"]
        writer.writerow(header + ["heatmap"] * bool(args.explain))
    failed = 0
    for path, result in classifier.predict_files(files, args.batch_size, args.tta):
        row: dict[str, Any]
        if isinstance(result, str):
            failed += 1
            row = {"file": str(path), "error": result}
        else:
            prediction = classifier.rank(result, args.topk)
            ranked = [(label, round(p, 6)) for label, p in prediction.topk]
            row = {
                "file": str(path),
                "label": prediction.label,
                "probability": ranked[0][1],
                "topk": ranked,
                "known": prediction.known,
                "nearest": prediction.nearest,
            }
            if args.explain:
                row["heatmap"] = str(overlays[path]) if path in overlays else None
        _print_answer(row, args, writer)
        sys.stdout.flush()
    if failed:
        print(f"{failed} of {len(files)} file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def _print_answer(row: dict[str, Any], args: argparse.Namespace, writer: Any) -> None:
    """One photo's answer in the chosen format (`writer`: csv's, for --format csv)."""
    path = row["file"]
    if args.format == "json":
        print(json.dumps(row))
        return
    if writer:
        topk = " ".join(f"{label}:{p:.4f}" for label, p in row.get("topk", []))
        writer.writerow(
            [
                row["file"],
                row.get("label", ""),
                row.get("probability", ""),
                topk,
                row.get("error", ""),
                row.get("known", ""),
                row.get("nearest", ""),
            ]
            + [row.get("heatmap") or ""] * bool(args.explain)
        )
        return
    if "error" in row:
        print(f"{path}: error: {row['error']}")
        return
    where = f" [heat map: {row['heatmap']}]" if row.get("heatmap") else ""  # an unknown's: where its nearest is
    if not row["known"]:
        print(
            f"{path}: unknown - like none of the training photos (nearest class {row['nearest']}, "
            f"{row['probability']:.1%}){where}"
        )
    else:
        print(f"{path}: {row['label']} ({', '.join(f'{label} {p:.1%}' for label, p in row['topk'])}){where}")


def _overlays(classifier: object, files: list[Path], out: str) -> dict[Path, Path]:
    """`predict --explain`: each photo's heat map written into `out` before the answers are printed."""
    from transferlab.inference.explain import save_overlays
    from transferlab.inference.predict import Classifier

    if not isinstance(classifier, Classifier):
        raise UsageError("--explain needs a run folder: an exported .onnx model has no heat maps")
    return save_overlays(classifier, files, Path(out))


PREDICT_COMMANDS = {"predict": cmd_predict}
