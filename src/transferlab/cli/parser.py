"""The `transferlab` command line's grammar: every command and option, with its help. Imports nothing heavy, so
`--help` and argument errors answer at once."""

from __future__ import annotations

import argparse

from transferlab.config import (
    COMPARED,
    DECODE_CACHES,
    DEFAULT_RECIPE,
    PRECISIONS,
    RECIPES,
    STRATEGIES,
    DataConfig,
    TrainConfig,
    default_of,
)
from transferlab.errors import UsageError
from transferlab.models.backbones import AUTO, REGISTRY, get_spec

DESCRIPTION = (
    "transferlab: build an image classifier from a folder of photos by transfer learning, and find out which\n"
    "transfer strategy (fine-tuning, feature extraction or two-stage) to use, with evidence."
)


def backbone_name(text: str) -> str:
    """A registry name, "auto", or registry names joined by "+" (an ensemble)."""
    if text == AUTO:
        return text
    try:
        return get_spec(text).name
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    """The data, model and schedule options every training command takes."""
    parser.add_argument(
        "data",
        nargs="?",
        help="photo folder: DATA/train/<class>/* + DATA/val/<class>/*, or "
        "DATA/<class>/* (split automatically). Omitted: download the ants/bees demo set",
    )
    parser.add_argument(
        "--backbone",
        default=default_of(TrainConfig, "backbone"),
        type=backbone_name,
        metavar="NAME",
        help=f"pretrained network: {', '.join(sorted(REGISTRY))}, several joined by '+' (an ensemble, "
        "for extract), or auto (resnet50 when its weights are on this machine, else the most accurate one whose "
        "weights are; never downloads)",
    )
    parser.add_argument("--weights", help="weights file (.pth/.safetensors) or variant name (e.g. IMAGENET1K_V2)")
    parser.add_argument(
        "--recipe",
        default=DEFAULT_RECIPE,
        choices=sorted(RECIPES),
        help=f"training schedule preset (default {DEFAULT_RECIPE}; reference = the PyTorch tutorial's)",
    )
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--lr", type=float, help="override the recipe's learning rate")
    parser.add_argument(
        "--seed",
        type=int,
        default=default_of(TrainConfig, "seed"),
        help="training seed (initialisation, shuffling, augmentation)",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        default=default_of(DataConfig, "split_seed"),
        help="seed of the train/val split of a single folder",
    )
    parser.add_argument("--deterministic", action="store_true", help="bit-reproducible runs (CPU; slower on GPU)")
    parser.add_argument(
        "--views",
        type=int,
        default=default_of(TrainConfig, "views"),
        help="extract: augmented views per training image whose features are cached (default 1)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=default_of(DataConfig, "val_fraction"),
        help="validation share when splitting one folder",
    )
    parser.add_argument("--max-per-class", type=int, help="use at most N images per class and split (quick trials)")
    _machine_options(parser)


def _machine_options(parser: argparse.ArgumentParser) -> None:
    """Where and how fast a run computes, and where it is written."""
    parser.add_argument("--device", default=default_of(TrainConfig, "device"), help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--precision",
        default=default_of(TrainConfig, "precision"),
        choices=PRECISIONS,
        help="mixed precision (auto: bf16 on GPUs that have it, else fp16; float32 on the CPU)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (GPU, long runs)")
    parser.add_argument("--workers", type=int, help="image-decoding processes (default: one per CPU core, max 8)")
    parser.add_argument(
        "--loader-workers",
        type=int,
        help="batch-making processes while fine-tuning (default: GPU one per spare core, CPU none)",
    )
    parser.add_argument(
        "--decode-cache",
        default=default_of(TrainConfig, "decode_cache"),
        choices=DECODE_CACHES,
        help="keep decoded pictures in memory, or in the store on disk, read as used (auto: the store)",
    )
    parser.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="compute frozen features again instead of reading them from ~/.cache/transferlab",
    )
    out = default_of(TrainConfig, "out")
    parser.add_argument("--out", default=out, help=f"folder for run directories (default {out}/)")
    parser.add_argument("--name", help="run folder name (default: strategy/compare + backbone + time)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars (for logs and CI)")


def _dataset_commands(commands: argparse._SubParsersAction) -> None:
    """The commands that build and check a photo folder: doctor, collect, split."""
    doctor = commands.add_parser("doctor", help="find what is wrong with a photo folder before training")
    doctor.add_argument("data", nargs="?", help="photo folder (same layouts as train)")
    doctor.add_argument("--json", action="store_true", help="the full report as JSON")
    doctor.add_argument("--quarantine", metavar="DIR", help="move problem files into DIR (with a manifest)")
    doctor.add_argument("--restore", metavar="DIR", help="put the files quarantined in DIR back")
    doctor.add_argument(
        "--labels",
        action="store_true",
        help="also find likely mislabeled images and outliers with "
        "a cross-validated probe on pretrained features (never moves them)",
    )
    doctor.add_argument(
        "--backbone",
        default=default_of(TrainConfig, "backbone"),
        type=backbone_name,
        metavar="NAME",
        help="--labels: pretrained network (auto: the best one whose weights are on this machine)",
    )
    doctor.add_argument(
        "--shortcuts",
        action="store_true",
        help="also look for cues that tell a class apart other than its subject (a mark, a frame, black and white, "
        "file format, size, camera, compression)",
    )
    doctor.add_argument("--weights", help="--labels: weights file for the backbone")
    doctor.add_argument("--folds", type=int, default=5, help="--labels: cross-validation folds (default 5)")
    doctor.add_argument("--out", default="runs", help="--labels: the gallery and page go to OUT/labels-<folder>")
    doctor.add_argument("--no-cache", action="store_true", help="inspect every file (and compute features) again")
    doctor.add_argument("--workers", type=int, help="inspecting processes (default: one per CPU core, max 8)")
    doctor.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    collect = commands.add_parser(
        "collect",
        help="download photos from URL lists into FOLDER/<class>/ (resumable; checked by their bytes; copies skipped)",
    )
    collect.add_argument("urls", help="a folder of <class>.txt files (one URL a line) or a CSV with columns url,label")
    collect.add_argument("--out", required=True, help="photo folder to fill (FOLDER/<class>/; sources.csv beside)")
    collect.add_argument("--concurrency", type=int, default=8, help="downloads at once (default 8)")
    collect.add_argument("--timeout", type=float, default=15.0, help="seconds any network wait may take (default 15)")
    collect.add_argument(
        "--retries",
        type=int,
        default=3,
        help="further tries after a failure that may pass (timeouts, 429, 5xx; default 3, with back-off)",
    )
    collect.add_argument("--max-mb", type=float, default=20.0, help="largest file accepted, in MB (default 20)")
    collect.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    split = commands.add_parser(
        "split", help="split SRC/<class>/* into DST/train and DST/val, copies of one picture always on one side"
    )
    split.add_argument("src", help="photo folder with one sub-folder per class")
    split.add_argument("--out", required=True, help="new (or empty) folder for train/ and val/")
    split.add_argument("--val-fraction", type=float, default=0.2, help="validation share per class (default 0.2)")
    split.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    split.add_argument("--link", action="store_true", help="hard links instead of copies (same file system)")
    split.add_argument("--workers", type=int, help="inspecting processes (default: one per CPU core, max 8)")
    split.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _suggest_command(commands: argparse._SubParsersAction) -> None:
    """`suggest`: a class for every photo of a pile."""
    suggest = commands.add_parser(
        "suggest", help="suggest a class for every photo of an unsorted pile, learned from the photos already sorted"
    )
    suggest.add_argument("photos", help="the labelled photos (class folders, or train/ and val/)")
    suggest.add_argument("pile", help="the folder of unsorted photos (searched recursively)")
    suggest.add_argument("--format", choices=("table", "csv", "json"), default="table", help="(default table)")
    suggest.add_argument("--rejected", metavar="CSV", help="path,class rows: classes a photo is known not to be")
    suggest.add_argument(
        "--backbone", type=backbone_name, metavar="NAME[+NAME...]",
        help="pretrained networks whose features are used side by side (default: the three EfficientNet-Lites, "
        "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2: each photo passes through three networks once; "
        "efficientnet_lite0 alone, the studio's live model's, is faster the first time and less accurate)",
    )  # fmt: skip
    suggest.add_argument("--workers", type=int, help="decoding processes (default: one per CPU core, max 8)")
    suggest.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferlab", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    _training_commands(commands)
    _model_commands(commands)
    _dataset_commands(commands)
    _suggest_command(commands)
    studio = commands.add_parser(
        "studio", help="one local page for the whole loop: look at the photos and fix them, train, try, ship"
    )
    studio.add_argument("data", nargs="?", default="photos", help="photo folder (made if missing; default photos/)")
    out = default_of(TrainConfig, "out")
    studio.add_argument("--out", default=out, help=f"folder for run directories (default {out}/)")
    studio.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    studio.add_argument("--port", type=int, default=8000)
    commands.add_parser("backbones", help="list the available backbones")
    cache = commands.add_parser(
        "cache", help="the per-photo store (decoded pictures, fingerprints, features): its size, its limit, clear it"
    )
    cache.add_argument("--clear", action="store_true", help="delete everything in it (it fills again as you train)")
    cache.add_argument("--limit", help="keep it under this size from now on, e.g. 20GB (least recently used go first)")
    return parser


def _training_commands(commands: argparse._SubParsersAction) -> None:
    """The commands that train: train, compare, fit."""
    train = commands.add_parser("train", help="train one strategy")
    _common(train)
    train.add_argument("--strategy", default=default_of(TrainConfig, "strategy"), choices=STRATEGIES)
    train.add_argument("--resume", metavar="RUN", help="continue RUN from its last completed epoch (its own settings)")
    compare = commands.add_parser("compare", help="train several strategies on the same data and compare them")
    _common(compare)
    compare.add_argument(
        "--strategies",
        default=",".join(COMPARED),
        help=f"comma-separated, from {', '.join(STRATEGIES)} (default: {','.join(COMPARED)})",
    )
    compare.add_argument(
        "--backbones",
        help="comma-separated backbones to compare as well (e.g. "
        "efficientnet_lite0,efficientnet_lite2); those without weights are skipped, with the reason. With two or "
        "more and extract among the strategies, their ensemble (all their features, one probe) is a cell too",
    )
    compare.add_argument("--no-ensemble", action="store_true", help="no ensemble cell with --backbones")
    compare.add_argument("--batch-sizes", help="comma-separated batch sizes to compare (e.g. 32,64)")
    compare.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="also cross-validate extract's probe over every "
        "image (train and val), K folds, per backbone: choices that rest on every image",
    )
    compare.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train each strategy N times (seeds --seed, --seed+1, ...) and test the difference",
    )
    fit = commands.add_parser(
        "fit",
        help="the best model within a time budget: probes on every backbone at hand, "
        "then two-stage on the most promising",
    )
    _common(fit)
    fit.add_argument(
        "--budget", required=True, help="time budget, e.g. 90s, 5m or 1h30m (exceeded by at most one epoch)"
    )


def _model_commands(commands: argparse._SubParsersAction) -> None:
    """The commands that use a trained run: evaluate, predict, export, serve."""
    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy with its confidence interval, per-class scores, "
        "confusion matrix, calibration, top losses, prediction grid",
    )
    evaluate.add_argument("run", help="a run directory (one strategy's folder)")
    evaluate.add_argument("data", nargs="?", help="photo folder to evaluate on (default: the run's own validation set)")
    evaluate.add_argument("--tta", action="store_true", help="average with horizontally flipped images")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    predict = commands.add_parser("predict", help="classify images with a trained run")
    predict.add_argument(
        "run", help="a run or compare folder, or an exported MODEL.onnx (run with onnxruntime alone: no torch)"
    )
    predict.add_argument("images", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    predict.add_argument("--topk", type=int, default=3)
    predict.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table (default), json (one object per line) or csv",
    )
    predict.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument(
        "--explain",
        metavar="OUT",
        help="also write each photo's heat map (where its answer comes from) over the crop the model saw, into OUT",
    )
    export = commands.add_parser("export", help="export a run to ONNX or TorchScript, with a parity check")
    export.add_argument("run", help="a run directory (one strategy's folder)")
    export.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    export.add_argument(
        "--int8",
        action="store_true",
        help="ONNX quantized to int8 (calibrated on training photos), checked against float32 on the validation "
        "photos; refused (nothing written) when shown worse by more than 1 point",
    )
    export.add_argument("--out", help="output file (default: inside the run directory)")
    export.add_argument(
        "--heatmap", action="store_true",
        help="the model also outputs its class activation maps (`heatmap`: where each answer comes from)",
    )  # fmt: skip
    export.add_argument(
        "--images", metavar="DIR", help="photos to check the export on (default: the run's validation images)"
    )
    serve = commands.add_parser("serve", help="a local web app: drop a photo, see the classes")
    serve.add_argument("run", help="a run or compare folder, or an exported MODEL.onnx (no torch)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
