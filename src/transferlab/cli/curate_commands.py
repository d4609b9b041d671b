"""The dataset tools' commands once their arguments are parsed: doctor (and --labels, --quarantine, --restore),
collect and split. Each imports the libraries it needs when it runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from transferlab.errors import DatasetError, UsageError, above, at_least

if TYPE_CHECKING:
    from transferlab.curate.doctor import DoctorReport


def _with_shortcuts(report: DoctorReport, args: argparse.Namespace) -> DoctorReport:
    """The report with `doctor --shortcuts`' findings after the rest (none where the folder has no classes)."""
    from dataclasses import replace

    from transferlab.curate.shortcuts import folder_shortcuts

    try:
        found = folder_shortcuts(args.data, quiet=args.quiet)
    except DatasetError:  # the report's layout finding says why
        return report
    return replace(report, findings=[*report.findings, *found])


def cmd_doctor(args: argparse.Namespace) -> int:
    from transferlab.curate.doctor import diagnose, format_report
    from transferlab.curate.quarantine import quarantine, restore

    if args.restore:
        restored, left = restore(args.restore)
        print(
            f"restored {len(restored)} file(s)"
            + (f"; {len(left)} left (place taken or file gone): " + ", ".join(left) if left else "")
        )
        return 1 if left else 0
    if not args.data:
        raise UsageError("give a photo folder (or --restore DIR)")
    at_least("folds", args.folds, 2)  # before the inspection, as --out below; check_labels checks it too
    if args.labels:
        from transferlab.data.layout import check_out_folder

        check_out_folder(args.out, args.data)  # before the inspection, not after it
    report = diagnose(args.data, args.workers, args.quiet, use_cache=not args.no_cache)
    if args.shortcuts:
        report = _with_shortcuts(report, args)
    check, unchecked = None, ""
    if args.labels:
        try:
            check = _check_labels(args)
            report = report.with_graphics_judged({i.path for i in check.issues if i.kind == "outlier"})
        except DatasetError as error:  # e.g. a class too small to split: the report above still stands
            unchecked = f"labels not checked: {error}"
    if args.json:
        document = json.loads(report.to_json())
        if check is not None:
            document["label_check"] = check.as_dict()
            document["label_issues"] = document["label_check"].pop("issues")
        elif unchecked:
            document["label_check"] = {"error": unchecked}
        print(json.dumps(document, indent=2))
    else:
        print(format_report(report))
        if check is not None:
            from transferlab.curate.label_issues import format_check

            print(format_check(check))
        elif unchecked:
            print(f"ERROR: {unchecked}")
    if args.quarantine:
        moved = quarantine(report, args.quarantine)
        print(
            f"moved {len(moved)} file(s) to {args.quarantine} (manifest.json says why; --restore puts them back)",
            file=sys.stderr if args.json else sys.stdout,
        )
    return 1 if unchecked or any(f.severity == "error" for f in report.findings) else 0


def cmd_collect(args: argparse.Namespace) -> int:
    from transferlab.curate.collect import collect
    from transferlab.curate.fetching import Limits

    above("max_mb", args.max_mb, 0)
    limits = Limits(
        concurrency=args.concurrency,
        timeout=args.timeout,
        deadline=4 * args.timeout,
        retries=args.retries,
        max_bytes=int(args.max_mb * 1e6),
    )
    result = collect(args.urls, args.out, limits, args.quiet)
    for label, count in sorted(result.saved.items()):
        print(f"{label}: {count} photo(s) saved")
    for url, reason in result.failed[:20]:
        print(f"failed: {url}: {reason}")
    if len(result.failed) > 20:
        print(f"... and {len(result.failed) - 20} more failures (sources.csv lists every one)")
    print(
        f"{sum(result.saved.values())} saved, {result.duplicates} already in the folder (skipped), "
        f"{len(result.failed)} failed, {result.already} saved by an earlier run; {result.seconds:.1f} s; "
        f"{Path(args.out) / 'sources.csv'} records each file's URL"
    )
    return 1 if result.failed and not result.saved and not result.already else 0


def cmd_split(args: argparse.Namespace) -> int:
    from transferlab.curate.splitting import split_folder

    result = split_folder(args.src, args.out, args.val_fraction, args.seed, args.link, args.workers, quiet=args.quiet)
    print("\n".join(result.lines()))
    total = {name: sum(counts.values()) for name, counts in result.counts.items()}
    print(
        f"{'linked' if args.link else 'copied'} {total['train']} train / {total['val']} val images into "
        f"{result.out} (split.json says how)"
    )
    return 0


def _check_labels(args: argparse.Namespace):
    from transferlab.curate.label_issues import check_labels

    out = Path(args.out) / f"labels-{Path(args.data).expanduser().resolve().name}"
    return check_labels(
        args.data,
        args.backbone,
        args.weights,
        args.folds,
        workers=args.workers,
        quiet=args.quiet,
        feature_cache=not args.no_cache,
        out=out,
    )


CURATE_COMMANDS = {"doctor": cmd_doctor, "split": cmd_split, "collect": cmd_collect}
