"""Does the probe scale as the features do? `extract` (the default recipe) on 500, 2,000 and 8,000 training photos.

    python benchmarks/probe_scaling.py ../shared/datasets/animals4 ../shared/datasets/flowers5 [--sizes 500,2000,8000]

A synthetic-large folder is made once (in --work): every photo of the given folders, its class kept, copied at phone
size (2016x1512, JPEG quality 90) with a different crop each copy, until there are enough training photos; each
folder's first 25 validation photos a class stay validation photos (not copied). Each size trains `extract` on
the first N training copies (copy 0 of every photo, then copy 1, ...) with the feature cache off, and prints the
seconds spent computing features and fitting the probe (cross-validation included), as the run recorded them.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from PIL import Image

from transferlab import DataConfig, TrainConfig, train
from transferlab.data.layout import load_dataset

PHONE = (2016, 1512)
VAL_PER_CLASS = 25


def make_folder(sources: list[str], work: Path, copies: int) -> Path:
    root = work / f"phone-{copies}"
    if (root / "done").exists():
        return root
    rng = random.Random(0)
    for source in sources:
        given = load_dataset(source)
        val_left: dict[str, int] = {}
        photos = [(s, "train") for s in given.train]
        for sample in given.val:
            cls = given.classes[sample.label]
            val_left[cls] = val_left.get(cls, 0) + 1
            photos.append((sample, "val" if val_left[cls] <= VAL_PER_CLASS else "train"))
        for sample, split in photos:
            cls = f"{Path(source).name}-{given.classes[sample.label]}"
            with Image.open(sample.path) as image:
                picture = image.convert("RGB")
            for copy in range(1 if split == "val" else copies):
                w, h = picture.size
                cut = rng.uniform(0.8, 1.0)  # a different crop each copy: no two copies are the same photo
                cw, ch = int(w * cut), int(h * cut)
                x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
                big = picture.crop((x, y, x + cw, y + ch)).resize(PHONE if cw >= ch else PHONE[::-1], Image.BICUBIC)
                out = root / split / cls / f"c{copy:02d}-{Path(sample.path).stem}.jpg"
                out.parent.mkdir(parents=True, exist_ok=True)
                big.save(out, quality=90)
    (root / "done").touch()
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--sizes", default="500,2000,8000")
    parser.add_argument("--work", default="/tmp/transferlab-probe-scaling")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    originals = sum(len(load_dataset(f).train) + len(load_dataset(f).val) for f in args.folders)
    root = make_folder(args.folders, Path(args.work), copies=-(-max(sizes) // max(1, originals - 200)))
    classes = len(load_dataset(str(root)).classes)
    print(f"{root}: {classes} classes\n\n| training photos | features (s) | probe (s) | probe / features | val acc | |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        config = TrainConfig(
            data=DataConfig(root=str(root), max_per_class=-(-size // classes)),
            strategy="extract",
            backbone=args.backbone,
            out=str(Path(args.work) / "runs"),
            feature_cache=False,
            quiet=True,
        )
        start = time.perf_counter()
        summary = train(config).summary
        features = summary.feature_compute_seconds
        probe = summary.compute_seconds  # the probe's one step: cross-validation and the final fit
        print(f"| {summary.train_images} | {features:.1f} | {probe:.1f} | {probe / features:.2f} | "
              f"{summary.best_val_acc:.1%} | decode {summary.decode_seconds:.0f} s, wall "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
