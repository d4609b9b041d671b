"""The `transferlab` command: argument parsing and printing only; the work is done by the Python API.

It starts at once: this module imports nothing heavy, and each command imports the libraries it needs when it
runs (`--help`, `backbones` and argument errors load no torch).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
import logging
import os
import sys
from pathlib import Path

from .backbones import REGISTRY
from .config import DEFAULT_RECIPE, PRECISIONS, RECIPES, STRATEGIES, DataConfig, TrainConfig
from .errors import TransferlabError

log = logging.getLogger("transferlab")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="?", help="photo folder: DATA/train/<class>/* + DATA/val/<class>/*, or "
                        "DATA/<class>/* (split automatically). Omitted: download the ants/bees demo set")
    parser.add_argument("--backbone", default="auto", choices=["auto", *sorted(REGISTRY)],
                        help="pretrained network (auto: resnet50 when its weights are on this machine, else the "
                             "most accurate one whose weights are; never downloads)")
    parser.add_argument("--weights", help="weights file (.pth/.safetensors) or variant name (e.g. IMAGENET1K_V2)")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES),
                        help=f"training schedule preset (default {DEFAULT_RECIPE}; reference = the PyTorch tutorial's)")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--lr", type=float, help="override the recipe's learning rate")
    parser.add_argument("--seed", type=int, default=0, help="training seed (initialisation, shuffling, augmentation)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/val split of a single folder")
    parser.add_argument("--deterministic", action="store_true", help="bit-reproducible runs (CPU; slower on GPU)")
    parser.add_argument("--views", type=int, default=1,
                        help="extract: augmented views per training image whose features are cached (default 1)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="validation share when splitting one folder")
    parser.add_argument("--max-per-class", type=int, help="use at most N images per class and split (quick trials)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="mixed precision (auto: bf16 on GPUs that have it, else fp16; float32 on the CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (GPU, long runs)")
    parser.add_argument("--workers", type=int, help="image-decoding processes (default: one per CPU core, max 8)")
    parser.add_argument("--loader-workers", type=int,
                        help="batch-making processes while fine-tuning (default: GPU one per spare core, CPU none)")
    parser.add_argument("--decode-cache", default="auto", choices=("auto", "memory", "disk"),
                        help="keep decoded pictures in memory or memory-mapped on disk (auto: from their size)")
    parser.add_argument("--no-feature-cache", action="store_true",
                        help="compute frozen features again instead of reading them from ~/.cache/transferlab")
    parser.add_argument("--out", default="runs", help="folder for run directories (default runs/)")
    parser.add_argument("--name", help="run folder name (default: strategy/compare + backbone + time)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars (for logs and CI)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferlab", description=__import__("transferlab").__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one strategy")
    _common(train)
    train.add_argument("--strategy", default="finetune", choices=STRATEGIES)
    train.add_argument("--resume", metavar="RUN", help="continue RUN from its last completed epoch (its own settings)")
    compare = commands.add_parser("compare", help="train several strategies on the same data and compare them")
    _common(compare)
    compare.add_argument("--strategies", default="finetune,extract",
                         help=f"comma-separated, from {', '.join(STRATEGIES)} (default: finetune,extract)")
    compare.add_argument("--backbones", help="comma-separated backbones to compare as well (e.g. "
                         "efficientnet_lite0,efficientnet_lite2); those without weights are skipped, with the reason")
    compare.add_argument("--batch-sizes", help="comma-separated batch sizes to compare (e.g. 32,64)")
    compare.add_argument("--seeds", type=int, default=1,
                         help="train each strategy N times (seeds --seed, --seed+1, ...) and test the difference")
    evaluate = commands.add_parser("evaluate", help="accuracy with its confidence interval, per-class scores, "
                                   "confusion matrix, calibration, top losses, prediction grid")
    evaluate.add_argument("run", help="a run directory (one strategy's folder)")
    evaluate.add_argument("data", nargs="?", help="photo folder to evaluate on (default: the run's own validation set)")
    evaluate.add_argument("--tta", action="store_true", help="average with horizontally flipped images")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    predict = commands.add_parser("predict", help="classify images with a trained run")
    predict.add_argument("run", help="a run directory (one strategy's folder)")
    predict.add_argument("images", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    predict.add_argument("--topk", type=int, default=3)
    predict.add_argument("--format", choices=("table", "json", "csv"), default="table",
                         help="table (default), json (one object per line) or csv")
    predict.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    predict.add_argument("--batch-size", type=int, default=32)
    doctor = commands.add_parser("doctor", help="find what is wrong with a photo folder before training")
    doctor.add_argument("data", nargs="?", help="photo folder (same layouts as train)")
    doctor.add_argument("--json", action="store_true", help="the full report as JSON")
    doctor.add_argument("--quarantine", metavar="DIR", help="move problem files into DIR (with a manifest)")
    doctor.add_argument("--restore", metavar="DIR", help="put the files quarantined in DIR back")
    doctor.add_argument("--no-cache", action="store_true", help="inspect every file again")
    doctor.add_argument("--workers", type=int, help="inspecting processes (default: one per CPU core, max 8)")
    doctor.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    export = commands.add_parser("export", help="export a run to ONNX or TorchScript, with a parity check")
    export.add_argument("run", help="a run directory (one strategy's folder)")
    export.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    export.add_argument("--out", help="output file (default: inside the run directory)")
    serve = commands.add_parser("serve", help="a local web app: drop a photo, see the classes")
    serve.add_argument("run", help="a run directory (one strategy's folder)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    commands.add_parser("backbones", help="list the available backbones")
    return parser


def config_from_args(args: argparse.Namespace, strategy: str = "finetune") -> TrainConfig:
    recipe = RECIPES[args.recipe]
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr))
                 if v is not None}
    data = args.data
    if data is None:
        from .demo import demo_dataset

        data = str(demo_dataset())
    return TrainConfig(
        data=DataConfig(root=data, val_fraction=args.val_fraction, split_seed=args.split_seed,
                        max_per_class=args.max_per_class),
        strategy=strategy, backbone=args.backbone, weights=args.weights, recipe=replace(recipe, **overrides),
        seed=args.seed, deterministic=args.deterministic, views=args.views, device=args.device,
        precision=args.precision, compile=args.compile, workers=args.workers, loader_workers=args.loader_workers,
        feature_cache=not args.no_feature_cache, decode_cache=args.decode_cache, out=args.out, name=args.name,
        quiet=args.quiet)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="transferlab: %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except (TransferlabError, FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        distributed = sys.modules.get("torch.distributed")  # only if a command loaded torch
        if distributed is not None and distributed.is_available() and distributed.is_initialized():
            distributed.destroy_process_group()


def cmd_train(args: argparse.Namespace) -> int:
    from .training import TrainingInterrupted, resume, train

    try:
        result = resume(args.resume) if args.resume else train(config_from_args(args, args.strategy))
    except TrainingInterrupted as stop:
        print(f"interrupted; {stop.result.run_dir} keeps the best checkpoint (epoch {stop.result.best_epoch})")
        return 130
    s = result.summary
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    print(f"{result.strategy}: best val accuracy {s.best_val_acc:.1%} at epoch {s.best_epoch}, "
          f"{s.total_seconds:.0f}s in all; run saved in {result.run_dir}")
    return 0


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def cmd_compare(args: argparse.Namespace) -> int:
    from .comparison import compare
    from .results import load_runs, text_table
    from .runs import read_compare_summary

    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ValueError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    backbones = _names(args.backbones) if args.backbones else None
    sizes = [int(b) for b in _names(args.batch_sizes)] if args.batch_sizes else None
    result = compare(config_from_args(args), strategies, args.seeds, backbones=backbones, batch_sizes=sizes)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    print(text_table(load_runs(result.out_dir)))
    for name, why in result.skipped_backbones.items():
        print(f"skipped {name}: {why}")
    summary = read_compare_summary(result.out_dir)
    answer = summary.recommendation if summary else None
    print("\n" + (answer["sentence"] if answer else "No run finished: nothing to recommend.")
          + (f"\n{answer['settle']}" if answer and answer["settle"] else ""))
    print(f"report: {result.report} (and {result.report.with_suffix('.html').name})")
    return 130 if result.interrupted else 0


def expand_images(patterns: list[str]) -> list[Path]:
    """Files as given, image files under folders (recursively), and glob patterns (also when quoted)."""
    import glob

    from .images import is_image_file

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

    from .predict import Classifier

    classifier = Classifier.load(args.run)
    files = expand_images(args.images)
    if not files:
        raise ValueError(f"no images matched {' '.join(args.images)}")
    writer = csv.writer(sys.stdout) if args.format == "csv" else None
    if writer:
        writer.writerow(["file", "label", "probability", "topk", "error"])
    failed = 0
    for path, result in classifier.predict_files(files, args.batch_size, args.tta):
        if isinstance(result, str):
            failed += 1
            row = {"file": str(path), "error": result}
        else:
            prediction = classifier.rank(result, args.topk)
            ranked = [(label, round(p, 6)) for label, p in prediction.topk]
            row = {"file": str(path), "label": prediction.label, "probability": ranked[0][1], "topk": ranked}
        if args.format == "json":
            print(json.dumps(row))
        elif writer:
            topk = " ".join(f"{label}:{p:.4f}" for label, p in row.get("topk", []))
            writer.writerow([row["file"], row.get("label", ""), row.get("probability", ""), topk, row.get("error", "")])
        elif "error" in row:
            print(f"{path}: error: {row['error']}")
        else:
            print(f"{path}: {row['label']} ({', '.join(f'{label} {p:.1%}' for label, p in row['topk'])})")
        sys.stdout.flush()
    if failed:
        print(f"{failed} of {len(files)} file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import confusion_table, evaluate_run, per_class_table

    evaluation = evaluate_run(args.run, args.data, tta=args.tta, quiet=args.quiet)
    print(evaluation.summary_line())
    print(per_class_table(evaluation))
    print(confusion_table(evaluation))
    print(f"plots and evaluation.md in {Path(args.run) / 'evaluation'}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose, format_report
    from .quarantine_folder import quarantine, restore

    if args.restore:
        restored, left = restore(args.restore)
        print(f"restored {len(restored)} file(s)" + (f"; {len(left)} left (place taken or file gone): "
                                                   + ", ".join(left) if left else ""))
        return 1 if left else 0
    if not args.data:
        raise ValueError("give a photo folder (or --restore DIR)")
    report = diagnose(args.data, args.workers, args.quiet, use_cache=not args.no_cache)
    print(report.to_json() if args.json else format_report(report))
    if args.quarantine:
        moved = quarantine(report, args.quarantine)
        print(f"moved {len(moved)} file(s) to {args.quarantine} (manifest.json says why; --restore puts them back)",
              file=sys.stderr if args.json else sys.stdout)
    return 1 if any(f.severity == "error" for f in report.findings) else 0


def cmd_export(args: argparse.Namespace) -> int:
    import warnings

    from .export import ParityError, export_run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream; the export still works
        try:
            result = export_run(args.run, args.format, args.out)
        except ParityError as error:
            print(f"error: parity check FAILED: {error}", file=sys.stderr)
            return 1
    print(f"exported {result.path} (+ {result.metadata_path.name}); parity on {result.images} images: "
          f"max |logit difference| = {result.max_abs_diff:.2e} (tolerance 1e-4) OK")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.run, args.host, args.port)
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    for name, spec in sorted(REGISTRY.items()):
        print(f"{name:20s} input {spec.input_size}px, {spec.feature_dim}-d features, weights: {', '.join(spec.variants)}")
    return 0


COMMANDS = {"train": cmd_train, "compare": cmd_compare, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "doctor": cmd_doctor, "export": cmd_export, "serve": cmd_serve,
            "backbones": cmd_backbones}
