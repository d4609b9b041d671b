"""`transferlab suggest PHOTOS PILE`: a class for every photo of an unsorted pile, as a table, CSV or JSON lines."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from transferlab.errors import UsageError


def cmd_suggest(args: argparse.Namespace) -> int:
    from transferlab.curate.suggest import SUGGEST_BACKBONES, suggest

    result = suggest(
        args.photos, args.pile, rejected=read_rejected(args.rejected) if args.rejected else None,
        backbones=args.backbone.split("+") if args.backbone else SUGGEST_BACKBONES,
        workers=args.workers, quiet=args.quiet,
    )  # fmt: skip
    out = sys.stdout
    if args.format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", "class", "probability", *result.classes, "unknown"])
        for s in result.photos:
            row = [str(s.path), s.suggested, f"{s.probability:.4f}", *(f"{p:.4f}" for p in s.probabilities)]
            writer.writerow([*row, "yes" if s.unknown else "no"])
    elif args.format == "json":
        for s in result.photos:
            line = {
                "path": str(s.path), "class": s.suggested, "probability": round(s.probability, 4),
                "probabilities": {c: round(p, 4) for c, p in zip(result.classes, s.probabilities)},
                "unknown": s.unknown,
            }  # fmt: skip
            out.write(json.dumps(line) + "\n")
    else:
        width = max([len(str(s.path)) for s in result.photos] + [4])
        print(f"{'path':{width}s}  {'class':16s} probability", file=out)
        for s in result.photos:
            mark = "  (looks like none of the classes)" if s.unknown else ""
            print(f"{str(s.path):{width}s}  {s.suggested:16s} {s.probability:10.1%}{mark}", file=out)
    for path, why in result.skipped:
        print(f"transferlab: skipped {path}: {why}", file=sys.stderr)
    if not args.quiet:
        print(
            f"transferlab: {len(result.photos)} photos suggested from {result.labelled} labelled photos "
            f"({'+'.join(result.backbones)}) in {result.seconds:.1f} s ({result.decoded} decoded)",
            file=sys.stderr,
        )
    return 0


def read_rejected(path: str | Path) -> dict[Path, set[str]]:
    """A CSV of `path,class` rows (a header row `path,class` is allowed): classes a person rejected for a photo."""
    rejected: dict[Path, set[str]] = {}
    try:
        with open(path, newline="") as handle:
            for n, row in enumerate(csv.reader(handle), 1):
                if not row or row == ["path", "class"]:
                    continue
                if len(row) != 2 or not row[0] or not row[1]:
                    raise UsageError(f"--rejected {path}, line {n}: expected 'path,class'")
                rejected.setdefault(Path(row[0]), set()).add(row[1])
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--rejected {path}: cannot read it ({error.__class__.__name__})") from None
    return rejected


SUGGEST_COMMANDS = {"suggest": cmd_suggest}
