"""Speed benchmark: the reference recipe the plain tutorial way vs transferlab, on the same data and machine.

    .venv/bin/python benchmarks/speed.py [DATA] [--backbone efficientnet_lite0] [--epochs 25] [--only a,b,c]

Runs in one process, one after another:
  (a) the reference recipe written the plain tutorial way: torchvision ImageFolder + PIL transforms every epoch,
      DataLoader workers as the tutorial has them; for `extract` the frozen backbone is recomputed every epoch;
  (b) transferlab's strategies and recipes (decode once, cached features, channels-last), each timed from the
      start with an empty feature cache, plus one extract run that reads the features cached by the one before;
  (c) the floor: one decode and one forward pass over every image, in the same process set-up as (b).
Every (a) run comes first, before transferlab's first run tunes the process's allocator (transferlab/machine.py).
Prints wall time, seconds per epoch, best validation accuracy, the epoch it came at, the time each took to reach
(a)'s best accuracy for the same strategy (two-stage is held against fine-tuning), and the ratio of (a)'s time to
each one's. Speed is measured here, never in tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torchvision import datasets
from torchvision import transforms as T

from transferlab import DataConfig, TrainConfig, train
from transferlab.config import RECIPES
from transferlab.data.prepare import prepare_data
from transferlab.data.presets import normalize
from transferlab.models.backbones import get_spec
from transferlab.models.model import build_model
from transferlab.runs import read_metrics

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "animals4"


def plain_tutorial(
    data: Path, backbone: str, strategy: str, epochs: int, seed: int, max_per_class: int | None = None
) -> dict:
    """(a): the PyTorch transfer-learning tutorial's loop: PIL transforms every epoch, frozen backbone re-run every
    epoch for extract (kept in eval mode, as `extract` is defined here; the tutorial itself lets BatchNorm drift)."""
    torch.manual_seed(seed)
    spec = get_spec(backbone)
    normalize_ = T.Normalize(spec.mean, spec.std)
    tfms = {
        "train": T.Compose([T.RandomResizedCrop(spec.input_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize_]),
        "val": T.Compose([T.Resize(spec.resize_size), T.CenterCrop(spec.input_size), T.ToTensor(), normalize_]),
    }
    sets = {split: datasets.ImageFolder(str(data / split), tfms[split]) for split in ("train", "val")}
    if max_per_class:  # a quick trial of the script itself (the first N images of each class)
        for split, dataset in sets.items():
            keep = [
                i
                for i, (_, label) in enumerate(dataset.samples)
                if sum(1 for _, other in dataset.samples[:i] if other == label) < max_per_class
            ]
            sets[split] = torch.utils.data.Subset(dataset, keep)
            sets[split].classes = dataset.classes
    loaders = {
        split: torch.utils.data.DataLoader(sets[split], batch_size=32, shuffle=split == "train", num_workers=4)
        for split in sets
    }
    model, _, _ = build_model(backbone, len(sets["train"].classes), strategy)
    model = model.to(memory_format=torch.contiguous_format)  # the tutorial's default layout
    recipe = RECIPES["reference"]
    params = model.head.parameters() if strategy == "extract" else model.parameters()
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, recipe.step_size, recipe.gamma)
    criterion = torch.nn.CrossEntropyLoss()
    start, history, hits = time.perf_counter(), [], []
    for epoch in range(1, epochs + 1):
        for split in ("train", "val"):
            model.train(split == "train")  # TransferModel keeps a frozen backbone in eval mode
            right = []
            for inputs, labels in loaders[split]:
                with torch.set_grad_enabled(split == "train"):
                    outputs = model(inputs)
                    loss = criterion(outputs, labels)
                    if split == "train":
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                right.append(outputs.argmax(1) == labels)
            right = torch.cat(right)
            if split == "train":
                scheduler.step()
            else:
                # in float64 as transferlab's own accuracy: float32 258/273 is not >= float64 258/273
                history.append((epoch, right.sum().item() / len(right), time.perf_counter() - start))
                hits.append(right.numpy())
    result = _result(f"(a) plain tutorial, {strategy}", history, time.perf_counter() - start)
    # which validation images the best epoch got right (the val loader keeps ImageFolder's order)
    val = sets["val"]
    paths = (
        [val.dataset.samples[i][0] for i in val.indices]
        if isinstance(val, torch.utils.data.Subset)
        else [path for path, _ in val.samples]
    )
    return {**result, "val_correct": dict(zip(paths, hits[result["best_epoch"] - 1].tolist()))}


def transferlab_run(
    data: Path,
    backbone: str,
    strategy: str,
    recipe: str,
    epochs: int | None,
    seed: int,
    out: Path,
    views: int = 1,
    feature_cache: bool = False,
    max_per_class: int | None = None,
    note: str = "",
) -> dict:
    """(b): transferlab's own pipeline, timed from the start (decoding included)."""
    chosen = RECIPES[recipe] if epochs is None or recipe != "reference" else replace(RECIPES[recipe], epochs=epochs)
    config = TrainConfig(
        data=DataConfig(root=str(data), max_per_class=max_per_class),
        strategy=strategy,
        backbone=backbone,
        recipe=chosen,
        seed=seed,
        views=views,
        out=str(out),
        quiet=True,
        feature_cache=feature_cache,
    )
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    prep = result.summary.decode_seconds + result.summary.feature_seconds
    elapsed, history, stages = prep, [], []
    for m in read_metrics(result.run_dir):
        elapsed += m["seconds"]
        history.append((m["epoch"], m["val_acc"], elapsed))
        stages.append(m.get("stage"))
    if strategy == "two-stage":  # its pace is that of its fine-tuning epochs (the head epochs take milliseconds)
        tuned = [h for h, stage in zip(history, stages) if stage == "finetune"]
        return {
            **_result(f"(b) transferlab {strategy}, {recipe} recipe" + note, history, wall),
            "per_epoch": _result("", tuned, 0)["per_epoch"],
        }
    name = f"(b) transferlab {strategy}, {recipe} recipe" + (f", {views} view" if strategy == "extract" else "")
    return _result(name + note, history, wall)


@torch.inference_mode()
def floor(data: Path, backbone: str, out: Path, max_per_class: int | None = None) -> dict:
    """(c): decode every image once and run one forward pass over each: no training at all."""
    start = time.perf_counter()
    prepared = prepare_data(
        TrainConfig(
            data=DataConfig(root=str(data), max_per_class=max_per_class), backbone=backbone, out=str(out), quiet=True
        )
    )
    model, spec, _ = build_model(backbone, len(prepared.dataset.classes), "extract")
    model.eval()
    crops = [
        T.functional.center_crop(img, [spec.input_size] * 2) for img in prepared.train.images
    ] + prepared.val.images
    for i in range(0, len(crops), 32):
        model.backbone(normalize(torch.stack(crops[i : i + 32]), spec))
    print(f"done: (c) floor: {time.perf_counter() - start:.0f} s", flush=True)
    return {
        "name": "(c) floor: one decode + one forward pass",
        "wall": time.perf_counter() - start,
        "best": None,
        "best_epoch": None,
        "history": [],
        "per_epoch": None,
    }


def _result(name: str, history: list[tuple[int, float, float]], wall: float) -> dict:
    best_epoch, best, _ = max(history, key=lambda h: (h[1], -h[0])) if history else (None, None, None)
    if name:  # as each run ends, so an interrupted benchmark still leaves its finished runs on the screen
        print(
            f"done: {name}: {wall:.0f} s, best {best:.1%} at epoch {best_epoch}"
            if best is not None
            else f"done: {name}: {wall:.0f} s",
            flush=True,
        )
    # seconds per epoch: the epoch loop alone (from the end of the first epoch to the end of the last, plus one
    # epoch at that pace), so one-time work (decoding, features) is not spread over the epochs
    per_epoch = None
    if len(history) > 1:
        per_epoch = (history[-1][2] - history[0][2]) / (len(history) - 1)
    return {
        "name": name,
        "wall": wall,
        "best": best,
        "best_epoch": best_epoch,
        "history": history,
        "per_epoch": per_epoch,
    }


def time_to_reach(result: dict, target: float | None) -> float | None:
    for _, acc, elapsed in result["history"]:
        if target is not None and acc >= target:
            return elapsed
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="a,b,c", help="which parts to run (a, b, c)")
    parser.add_argument(
        "--strategies",
        default="extract,finetune,two-stage",
        help="which strategies (extract, finetune, two-stage; (a) has no two-stage)",
    )
    parser.add_argument("--max-per-class", type=int, help="a quick trial of the script on N images per class")
    args = parser.parse_args()
    data, parts, mpc = Path(args.data), set(args.only.split(",")), args.max_per_class
    out = Path(tempfile.mkdtemp(prefix="transferlab-bench-"))
    os.environ["TRANSFERLAB_CACHE"] = str(out / "cache")  # an empty feature cache: every (b) run starts cold
    results: list[tuple[str, dict]] = []
    strategies = args.strategies.split(",")
    # (a) first, before transferlab tunes this process's allocator (see transferlab/machine.py): the tutorial way
    # runs as a user would run it
    for strategy in strategies:
        if "a" in parts and strategy != "two-stage":
            results.append((strategy, plain_tutorial(data, args.backbone, strategy, args.epochs, args.seed, mpc)))
    for strategy in strategies if "b" in parts else []:
        if strategy == "extract":
            results.append(
                (
                    strategy,
                    transferlab_run(
                        data,
                        args.backbone,
                        strategy,
                        "reference",
                        args.epochs,
                        args.seed,
                        out,
                        feature_cache=True,
                        max_per_class=mpc,
                    ),
                )
            )
            results.append(
                (
                    strategy,
                    transferlab_run(
                        data,
                        args.backbone,
                        strategy,
                        "reference",
                        args.epochs,
                        args.seed,
                        out,
                        feature_cache=True,
                        max_per_class=mpc,
                        note=", features from the disk cache",
                    ),
                )
            )
            results.append(
                (
                    strategy,
                    transferlab_run(data, args.backbone, strategy, "fast", None, args.seed, out, max_per_class=mpc),
                )
            )
        elif strategy == "finetune":
            for recipe in ("reference", "fast"):
                results.append(
                    (
                        strategy,
                        transferlab_run(
                            data, args.backbone, strategy, recipe, args.epochs, args.seed, out, max_per_class=mpc
                        ),
                    )
                )
        else:
            results.append(
                (
                    "finetune",
                    transferlab_run(data, args.backbone, strategy, "fast", None, args.seed, out, max_per_class=mpc),
                )
            )
    if "c" in parts:
        results.append(("-", floor(data, args.backbone, out, mpc)))

    plain = {s: r for s, r in results if r["name"].startswith("(a)")}
    floor_wall = next((r["wall"] for _, r in results if r["name"].startswith("(c)")), None)
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; "
        f"{args.backbone}, data {data}" + (f", {mpc} images per class" if mpc else "")
    )
    header = (
        "run",
        "wall time",
        "s/epoch",
        "best val acc",
        "best epoch",
        "time to (a)'s best",
        "(a) time / this",
        "(a) s/epoch / this",
        "x floor",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for strategy, r in results:
        reference = plain.get(strategy)
        reach = time_to_reach(r, reference["best"]) if reference else None
        ratio = reference["wall"] / r["wall"] if reference and r is not reference else None
        pace = (
            reference["per_epoch"] / r["per_epoch"]
            if reference and r is not reference and r["per_epoch"] and reference["per_epoch"]
            else None
        )
        print(
            "| "
            + " | ".join(
                [
                    r["name"],
                    f"{r['wall']:.0f} s",
                    f"{r['per_epoch']:.1f}" if r["per_epoch"] else "-",
                    f"{r['best']:.1%}" if r["best"] is not None else "-",
                    str(r["best_epoch"] or "-"),
                    f"{reach:.0f} s" if reach is not None else "-",
                    f"{ratio:.2f}x" if ratio else "-",
                    f"{pace:.2f}x" if pace else "-",
                    f"{r['wall'] / floor_wall:.2f}" if floor_wall else "-",
                ]
            )
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
