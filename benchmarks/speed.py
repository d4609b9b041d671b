"""Speed benchmark: the reference recipe the plain tutorial way vs transferlab, on the same data and machine.

    .venv/bin/python benchmarks/speed.py [DATA] [--backbone efficientnet_lite0] [--epochs 25] [--only a,b,c]

Runs in one process, one after another:
  (a) the reference recipe written the plain tutorial way: torchvision ImageFolder + PIL transforms every epoch,
      DataLoader workers as the tutorial has them; for `extract` the frozen backbone is recomputed every epoch;
  (b) transferlab's strategies and recipes (decode once, cached features, channels-last);
  (c) the floor: one decode and one forward pass over every image.
Prints wall time, best validation accuracy, the epoch it came at, the time each took to reach (a)'s best
accuracy for the same strategy, and the ratio of (a)'s time to each one's. Speed is measured here, never in tests.
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
from transferlab.backbones import get_spec
from transferlab.config import RECIPES
from transferlab.model import build_model
from transferlab.presets import normalize
from transferlab.runs import read_metrics
from transferlab.training import prepare_data

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "animals4"


def plain_tutorial(data: Path, backbone: str, strategy: str, epochs: int, seed: int) -> dict:
    """(a): the PyTorch transfer-learning tutorial's loop: PIL transforms every epoch, frozen backbone re-run every
    epoch for extract (kept in eval mode, as `extract` is defined here; the tutorial itself lets BatchNorm drift)."""
    torch.manual_seed(seed)
    spec = get_spec(backbone)
    normalize_ = T.Normalize(spec.mean, spec.std)
    tfms = {"train": T.Compose([T.RandomResizedCrop(spec.input_size), T.RandomHorizontalFlip(), T.ToTensor(),
                                normalize_]),
            "val": T.Compose([T.Resize(spec.resize_size), T.CenterCrop(spec.input_size), T.ToTensor(), normalize_])}
    sets = {split: datasets.ImageFolder(str(data / split), tfms[split]) for split in ("train", "val")}
    loaders = {split: torch.utils.data.DataLoader(sets[split], batch_size=32, shuffle=split == "train",
                                                  num_workers=4) for split in sets}
    model, _, _ = build_model(backbone, len(sets["train"].classes), strategy)
    model = model.to(memory_format=torch.contiguous_format)  # the tutorial's default layout
    recipe = RECIPES["reference"]
    params = model.head.parameters() if strategy == "extract" else model.parameters()
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, recipe.step_size, recipe.gamma)
    criterion = torch.nn.CrossEntropyLoss()
    start, history = time.perf_counter(), []
    for epoch in range(1, epochs + 1):
        for split in ("train", "val"):
            model.train(split == "train")  # TransferModel keeps a frozen backbone in eval mode
            correct = total = 0
            for inputs, labels in loaders[split]:
                with torch.set_grad_enabled(split == "train"):
                    outputs = model(inputs)
                    loss = criterion(outputs, labels)
                    if split == "train":
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                correct += (outputs.argmax(1) == labels).sum().item()
                total += len(labels)
            if split == "train":
                scheduler.step()
            else:
                history.append((epoch, correct / total, time.perf_counter() - start))
    return _result(f"(a) plain tutorial, {strategy}", history, time.perf_counter() - start)


def transferlab_run(data: Path, backbone: str, strategy: str, recipe: str, epochs: int | None, seed: int,
                    out: Path, views: int = 1) -> dict:
    """(b): transferlab's own pipeline, timed from the start (decoding included)."""
    chosen = RECIPES[recipe] if epochs is None or recipe != "reference" else replace(RECIPES[recipe], epochs=epochs)
    config = TrainConfig(DataConfig(str(data)), strategy=strategy, backbone=backbone, recipe=chosen, seed=seed,
                         views=views, out=str(out), quiet=True)
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    prep = result.summary["decode_seconds"] + result.summary["feature_seconds"]
    elapsed, history = prep, []
    for m in read_metrics(result.run_dir):
        elapsed += m["seconds"]
        history.append((m["epoch"], m["val_acc"], elapsed))
    return _result(f"(b) transferlab {strategy}, {recipe} recipe" + (f", {views} views" if strategy == "extract" else ""),
                   history, wall)


@torch.inference_mode()
def floor(data: Path, backbone: str, out: Path) -> dict:
    """(c): decode every image once and run one forward pass over each: no training at all."""
    start = time.perf_counter()
    prepared = prepare_data(TrainConfig(DataConfig(str(data)), backbone=backbone, out=str(out), quiet=True))
    model, spec, _ = build_model(backbone, len(prepared.dataset.classes), "extract")
    model.eval()
    crops = [T.functional.center_crop(img, [spec.input_size] * 2) for img in prepared.train.images] + prepared.val.images
    for i in range(0, len(crops), 32):
        model.backbone(normalize(torch.stack(crops[i:i + 32]), spec))
    return {"name": "(c) floor: one decode + one forward pass", "wall": time.perf_counter() - start,
            "best": None, "best_epoch": None, "history": []}


def _result(name: str, history: list[tuple[int, float, float]], wall: float) -> dict:
    best_epoch, best, _ = max(history, key=lambda h: (h[1], -h[0])) if history else (None, None, None)
    return {"name": name, "wall": wall, "best": best, "best_epoch": best_epoch, "history": history}


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
    parser.add_argument("--strategies", default="extract,finetune", help="which strategies (extract, finetune)")
    args = parser.parse_args()
    data, parts = Path(args.data), set(args.only.split(","))
    out = Path(tempfile.mkdtemp(prefix="transferlab-bench-"))
    results: list[tuple[str, dict]] = []
    for strategy in args.strategies.split(","):
        if "a" in parts:
            results.append((strategy, plain_tutorial(data, args.backbone, strategy, args.epochs, args.seed)))
        if "b" in parts:
            results.append((strategy, transferlab_run(data, args.backbone, strategy, "reference", args.epochs,
                                                      args.seed, out)))
            results.append((strategy, transferlab_run(data, args.backbone, strategy, "fast", None, args.seed, out)))
    if "c" in parts:
        results.append(("-", floor(data, args.backbone, out)))

    plain = {s: r for s, r in results if r["name"].startswith("(a)")}
    floor_wall = next((r["wall"] for _, r in results if r["name"].startswith("(c)")), None)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; "
          f"{args.backbone}, data {data}")
    header = ("run", "wall time", "best val acc", "best epoch", "time to (a)'s best", "(a) time / this", "x floor")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for strategy, r in results:
        reference = plain.get(strategy)
        reach = time_to_reach(r, reference["best"]) if reference else None
        ratio = reference["wall"] / r["wall"] if reference and r is not reference else None
        print(" | ".join([
            r["name"], f"{r['wall']:.0f} s", f"{r['best']:.1%}" if r["best"] is not None else "-",
            str(r["best_epoch"] or "-"), f"{reach:.0f} s" if reach is not None else "-",
            f"{ratio:.2f}x" if ratio else "-", f"{r['wall'] / floor_wall:.2f}" if floor_wall else "-"]))


if __name__ == "__main__":
    main()
