"""After one photo moves, how long does the same comparison take? The per-photo store's promise, end to end.

    python benchmarks/live_rerun.py ../shared/datasets/animals4 ../shared/datasets/flowers5 [--moves 5]

The given folders are pooled into one folder without a split (every photo, train and val, in one folder per class:
animals4 + flowers5 = 1,588 photos in 9 classes; hard links, so nothing is copied), and
`transferlab compare POOLED --strategies extract --backbone efficientnet_lite0` runs as a user runs it, a fresh
process each time: first on an empty store (the backbone's ONNX export, made once per set of weights, is made
before and kept, as on a user's machine after the first run), then again after each of `--moves` single photos is
moved to another class. Prints each run's seconds and accuracy, what it decoded and computed, and the ratio of the
re-runs (median and worst) to the first run. Run it on an idle machine: two cores are easily disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from transferlab.data.layout import load_dataset


def pool(sources: list[str], root: Path) -> Path:
    """Every photo of `sources` (train and val) in one folder per class, hard-linked (copied across devices)."""
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for source in sources:
        given = load_dataset(source)
        for split, samples in (("train", given.train), ("val", given.val)):
            for sample in samples:
                out = root / given.classes[sample.label] / f"{Path(source).name}-{split}-{sample.path.name}"
                out.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(sample.path, out)
                except OSError:
                    shutil.copy2(sample.path, out)
    (root / "done").touch()
    return root


def compare(photos: Path, out: Path, cache: Path) -> dict:
    """One `transferlab compare` in a fresh process: its wall seconds and what its run's summary says."""
    env = {**os.environ, "TRANSFERLAB_CACHE": str(cache)}
    env.pop("TRANSFERLAB_FEATURES", None)
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "transferlab", "compare", str(photos), "--strategies", "extract"]
    command += ["--backbones", "efficientnet_lite0", "--out", str(out), "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"exit {done.returncode}\n{done.stderr[-3000:]}")
    (summary_path,) = out.glob("*/extract/summary.json")
    summary = json.loads(summary_path.read_text())
    return {"seconds": seconds, **{k: summary.get(k) for k in (
        "best_val_acc", "photos_decoded", "features_computed", "train_images", "val_images", "decode_seconds",
        "feature_seconds", "fit_seconds")}}  # fmt: skip


def show(name: str, run: dict) -> None:
    print(
        f"{name:>10}: {run['seconds']:6.1f} s  accuracy {100 * run['best_val_acc']:.1f}%  "
        f"decoded {run['photos_decoded']}, vectors computed {run['features_computed']} "
        f"({run['train_images']} train / {run['val_images']} val; decode {run['decode_seconds']:.1f} s, "
        f"features {run['feature_seconds']:.1f} s, fit {run['fit_seconds']:.1f} s)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--moves", type=int, default=5)
    parser.add_argument("--work", default="/tmp/transferlab-live-rerun")
    args = parser.parse_args()
    work = Path(args.work)
    photos = pool(args.folders, work / "pooled")
    cache = work / "cache"
    classes = sorted(p.name for p in photos.iterdir() if p.is_dir())
    print(f"{sum(1 for _ in photos.rglob('*.*'))} photos in {len(classes)} classes: {', '.join(classes)}")
    compare(photos, work / "runs", cache)  # the ONNX export and anything else made once per machine
    shutil.rmtree(cache / "store", ignore_errors=True)
    first = compare(photos, work / "runs", cache)
    show("first", first)
    rng = random.Random(0)
    ratios = []
    try:
        moved = []
        for move in range(args.moves):
            source = rng.choice(classes)
            photo = rng.choice(sorted((photos / source).iterdir()))
            target = rng.choice([c for c in classes if c != source])
            photo.rename(photos / target / photo.name)
            moved.append((photos / target / photo.name, photo))
            again = compare(photos, work / "runs", cache)
            show(f"move {move + 1}", again)
            ratios.append(again["seconds"] / first["seconds"])
    finally:
        for now, was in reversed(moved):  # the pooled folder as it was, for the next time
            now.rename(was)
    print(f"re-run / first run: median {statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x")


if __name__ == "__main__":
    main()
