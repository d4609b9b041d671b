"""What each `transferlab` command does once its arguments are parsed: call the Python API, print the result
(the dataset tools' commands are in `curate_commands`).
Each command imports the libraries it needs when it runs (`cli` imports this module before parsing anything)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import cast

from transferlab.cli.cache_command import CACHE_COMMANDS
from transferlab.cli.curate_commands import CURATE_COMMANDS
from transferlab.cli.predict_command import PREDICT_COMMANDS, expand_images
from transferlab.cli.suggest_command import SUGGEST_COMMANDS
from transferlab.config import RECIPES, DataConfig, Strategy, TrainConfig
from transferlab.errors import InvalidSetting, UsageError
from transferlab.models.backbones import REGISTRY


def config_from_args(args: argparse.Namespace, strategy: Strategy = "finetune") -> TrainConfig:
    recipe = RECIPES[args.recipe]
    overrides = {
        k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr)) if v is not None
    }
    data = args.data
    if data is None:
        from transferlab.curate.demo import demo_dataset

        data = str(demo_dataset())
    return TrainConfig(
        data=DataConfig(
            root=data, val_fraction=args.val_fraction, split_seed=args.split_seed, max_per_class=args.max_per_class
        ),
        strategy=strategy,
        backbone=args.backbone,
        weights=args.weights,
        recipe=replace(recipe, **overrides),
        seed=args.seed,
        deterministic=args.deterministic,
        views=args.views,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        workers=args.workers,
        loader_workers=args.loader_workers,
        feature_cache=not args.no_feature_cache,
        decode_cache=args.decode_cache,
        out=args.out,
        name=args.name,
        quiet=args.quiet,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from transferlab.training.resuming import resume
    from transferlab.training.run_folder import TrainingInterrupted
    from transferlab.training.trainer import train

    if args.resume:
        _refuse_flags_with_resume(args)
    try:
        result = resume(args.resume, args.epochs) if args.resume else train(config_from_args(args, args.strategy))
    except TrainingInterrupted as stop:
        print(f"interrupted; {stop.result.run_dir} keeps the best checkpoint (epoch {stop.result.best_epoch})")
        return 130
    from transferlab.utils.distributed import is_main_process

    s = result.summary
    if s is None or not is_main_process():
        return 0  # under torchrun, rank 0 reports
    if result.already_finished:
        print(
            f"{result.run_dir}: already finished ({s.epochs_completed} epochs, best val accuracy "
            f"{s.best_val_acc:.1%} at epoch {s.best_epoch}); nothing to do (--epochs N extends it)"
        )
        return 0
    print(
        f"{result.strategy}: best val accuracy {s.best_val_acc:.1%} at epoch {s.best_epoch}, "
        f"{s.total_seconds:.0f}s in all; run saved in {result.run_dir}"
    )
    if s.unknown_known_rejected is not None:
        print(
            f"predict answers 'unknown' for photos like none of the training photos; it turns away about "
            f"{s.unknown_known_rejected:.0%} of known photos (cross-validated on the validation photos)"
        )
    return 0


def _refuse_flags_with_resume(args: argparse.Namespace) -> None:
    """--resume continues with the run's own settings: any other option given with it is an error (not silently
    ignored), except --epochs N (extend the run) and -q."""
    from transferlab.cli.parser import build_parser

    defaults = vars(build_parser().parse_args(["train"]))
    given = [
        name
        for name, value in vars(args).items()
        if name not in ("resume", "epochs", "quiet", "command") and value != defaults.get(name)
    ]
    if given:
        flags = ", ".join("a photo folder" if name == "data" else f"--{name.replace('_', '-')}" for name in given)
        raise UsageError(
            f"--resume continues the run with its own settings: drop {flags} (only --epochs N, to "
            "extend it, and -q go with --resume)"
        )


def cmd_fit(args: argparse.Namespace) -> int:
    from transferlab.training.budget import fit_within, parse_duration

    budget = parse_duration(args.budget)
    start = time.monotonic()
    result = fit_within(config_from_args(args), budget)
    return _print_comparison(result, f"fit: {time.monotonic() - start:.0f} s of a {budget:.0f} s budget")


def _print_comparison(result, closing: str = "") -> int:
    from transferlab.analysis.report import not_run
    from transferlab.analysis.results import load_runs, text_table
    from transferlab.runs import read_compare_plan, read_compare_summary
    from transferlab.utils.distributed import is_main_process

    if not is_main_process():
        return 0  # under torchrun, rank 0 reports
    runs = load_runs(result.out_dir)
    print(text_table(runs))
    for line in not_run(read_compare_plan(result.out_dir), runs):
        print(line)
    for name, why in result.skipped_backbones.items():
        print(f"skipped {name}: {why}")
    summary = read_compare_summary(result.out_dir)
    sentence = summary.sentence if summary is not None else None
    print("\n" + (sentence or "No run finished: nothing to recommend."))
    if summary is not None and summary.settle:
        print(summary.settle)
    if closing:
        print(closing)
    print(f"report: {result.report} (and {result.report.with_suffix('.html').name})")
    return 130 if result.interrupted else 0


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _integers(name: str, text: str) -> list[int]:
    try:
        return [int(part) for part in _names(text)]
    except ValueError:
        raise InvalidSetting(name, f"must be whole numbers separated by commas, got '{text}'") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from transferlab.training.comparison import compare

    strategies = cast(tuple[Strategy, ...], tuple(_names(args.strategies)))  # `compare` checks each
    backbones = _names(args.backbones) if args.backbones else None
    sizes = _integers("batch_sizes", args.batch_sizes) if args.batch_sizes else None
    result = compare(config_from_args(args), strategies, args.seeds, backbones=backbones, batch_sizes=sizes, cv=args.cv,
                     ensemble=not args.no_ensemble)  # fmt: skip
    return _print_comparison(result)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from transferlab.analysis.evaluate import confusion_table, evaluate_run, evaluation_dir, per_class_table
    from transferlab.runs import resolve_run

    evaluation = evaluate_run(args.run, args.data, tta=args.tta, quiet=args.quiet)
    print(evaluation.summary_line())
    print(per_class_table(evaluation))
    print(confusion_table(evaluation))
    print(f"plots and evaluation.md in {evaluation_dir(resolve_run(args.run), args.data)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import warnings

    from transferlab.inference.export import ParityError, export_run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream; the export still works
        try:
            samples = expand_images([args.images]) if args.images else None
            if args.images and not samples:
                raise UsageError(f"no photos in {args.images}")
            if args.int8 and args.heatmap:
                raise UsageError("--heatmap is for the float model: export it without --int8")
            if args.int8:
                return _export_int8(args, samples)
            result = export_run(args.run, args.format, args.out, samples, heatmap=args.heatmap)
        except ParityError as error:
            print(f"error: parity check FAILED: {error}", file=sys.stderr)
            return 1
    print(
        f"exported {result.path} (+ {result.metadata_path.name}); parity on {result.images} images: "
        f"max |difference| from transferlab's own answers = {result.max_abs_diff:.2e} (tolerance 1e-4) OK"
    )
    return 0


def _export_int8(args: argparse.Namespace, samples: list[Path] | None) -> int:
    from transferlab.analysis.quantize import QuantizationRefused, export_int8

    if args.format != "onnx":
        raise UsageError("--int8 makes an ONNX file: leave out --format torchscript")
    try:
        report, max_abs_diff = export_int8(args.run, args.out, samples)
    except QuantizationRefused as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    print(f"exported {report.path} (int8; the float32 export matched transferlab's answers to {max_abs_diff:.1e})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from transferlab.inference.serve import serve

    serve(args.run, args.host, args.port)
    return 0


def cmd_studio(args: argparse.Namespace) -> int:
    from transferlab.data.layout import check_out_folder
    from transferlab.studio.app import studio

    check_out_folder(args.out, args.data)
    studio(args.data, args.out, args.host, args.port)
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    for name, spec in sorted(REGISTRY.items()):
        print(
            f"{name:20s} input {spec.input_size}px, {spec.feature_dim}-d features, weights: {', '.join(spec.variants)}"
        )
    return 0


COMMANDS = {
    **CURATE_COMMANDS,
    "train": cmd_train,
    "compare": cmd_compare,
    "fit": cmd_fit,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "serve": cmd_serve,
    "studio": cmd_studio,
    "backbones": cmd_backbones,
    **CACHE_COMMANDS,
    **SUGGEST_COMMANDS,
    **PREDICT_COMMANDS,
}
