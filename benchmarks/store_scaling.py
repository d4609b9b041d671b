"""Does the first pass grow linearly with the photos, within memory, and is a pass after 1% of them changed cheap?

    python benchmarks/store_scaling.py ../shared/datasets/animals4 ../shared/datasets/flowers5 [--sizes 2000,8000,20000]

A folder of the largest size is made once (in --work): every photo of the given folders copied at 800x600 (JPEG
quality 90) with a different crop each copy, its class kept (9 classes for animals4 + flowers5), until there are
enough; each folder's first 25 validation photos a class stay validation photos (not copied). Each size is a folder
of hard links to the validation photos and the first N of the copies (copy 0 of every photo, then copy 1, ...).

For each size, `transferlab train FOLDER --strategy extract --backbone efficientnet_lite0` runs as a user runs it,
in a fresh process (under GNU time for its peak memory), on an empty store (the backbone's ONNX export is made
before and kept); then 1% of the training photos are moved to another class and it runs again. For each run: wall
seconds, peak resident memory (the largest process), what the run recorded (decoding, features, the probe), and
the store's size on disk after the first pass.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

from PIL import Image

from transferlab.data.layout import load_dataset

SIZE = (800, 600)
VAL_PER_CLASS = 25


def _copy(job: tuple[str, str, int]) -> None:
    source, out, seed = job
    rng = random.Random(seed)
    with Image.open(source) as image:
        picture = image.convert("RGB")
    w, h = picture.size
    cut = rng.uniform(0.8, 1.0)  # a different crop each copy: no two copies are the same photo
    cw, ch = int(w * cut), int(h * cut)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    size = SIZE if cw >= ch else SIZE[::-1]
    picture.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BICUBIC).save(out, quality=90)


def make_pool(sources: list[str], root: Path, photos: int) -> tuple[list[Path], list[Path]]:
    """(validation photos, training copies in order) of a folder of `photos` photos, made once."""
    listing = root / "listing.json"
    if listing.exists():
        made = json.loads(listing.read_text())
        return [Path(p) for p in made["val"]], [Path(p) for p in made["train"]]
    val, originals = [], []
    for source in sources:
        given = load_dataset(source)
        left: dict[str, int] = {}
        for sample in given.train + given.val:
            cls = given.classes[sample.label]
            is_val = sample in given.val and left.get(cls, 0) < VAL_PER_CLASS
            if is_val:
                left[cls] = left.get(cls, 0) + 1
                out = root / "all" / "val" / cls / sample.path.name
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(sample.path, out)
                val.append(out)
            else:
                originals.append((sample.path, cls))
    copies = -(-(photos - len(val)) // len(originals))
    jobs, train = [], []
    for copy in range(copies):
        for n, (path, cls) in enumerate(originals):
            out = root / "all" / "train" / cls / f"c{copy:02d}-{path.stem}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(path), str(out), copy * 100_003 + n))
            train.append(out)
    with Pool(os.cpu_count()) as pool:
        pool.map(_copy, jobs, chunksize=64)
    listing.write_text(json.dumps({"val": [str(p) for p in val], "train": [str(p) for p in train]}))
    return val, train


def folder_of(root: Path, val: list[Path], train: list[Path], size: int) -> Path:
    """A folder of hard links: every validation photo and the first training copies, `size` photos in all."""
    folder = root / f"photos-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    for path in val + train[: size - len(val)]:
        out = folder / path.relative_to(root / "all")
        out.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, out)
    return folder


def train_once(folder: Path, out: Path, cache: Path) -> dict:
    env = {**os.environ, "TRANSFERLAB_CACHE": str(cache), "TRANSFERLAB_CACHE_LIMIT": "100GB"}
    env.pop("TRANSFERLAB_FEATURES", None)
    shutil.rmtree(out, ignore_errors=True)
    peak_file = out.parent / "peak.txt"
    # GNU time: the largest resident set of the command (its own, or a worker process's)
    command = ["/usr/bin/time", "-f", "%M", "-o", str(peak_file), sys.executable, "-m", "transferlab", "train"]
    command += [str(folder), "--strategy", "extract", "--backbone", "efficientnet_lite0", "--out", str(out)]
    command += ["--name", "run", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"exit {done.returncode}\n{done.stderr[-3000:]}")
    summary = json.loads((out / "run" / "summary.json").read_text())
    return {
        "seconds": seconds,
        "peak_gb": int(peak_file.read_text().split()[-1]) * 1024 / 1e9,  # KB
        **{
            k: summary.get(k)
            for k in (
                "decode_seconds",
                "feature_seconds",
                "fit_seconds",
                "best_val_acc",
                "photos_decoded",
                "features_computed",
                "train_images",
            )
        },  # fmt: skip
    }


def du(path: Path) -> float:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--sizes", default="2000,8000,20000")
    parser.add_argument("--work", default="/tmp/transferlab-store-scaling")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = Path(args.work)
    start = time.perf_counter()
    val, train = make_pool(args.folders, work, sizes[-1])
    print(f"{len(val)} validation photos, {len(train)} training copies ({time.perf_counter() - start:.0f} s)")
    warm = folder_of(work, val, train, sizes[0])
    train_once(warm, work / "runs", work / "cache")  # the ONNX export, made once per machine
    rng = random.Random(0)
    for size in sizes:
        folder = folder_of(work, val, train, size)
        shutil.rmtree(work / "cache" / "store", ignore_errors=True)
        first = train_once(folder, work / "runs", work / "cache")
        stored = du(work / "cache" / "store")
        photos = sorted((folder / "train").rglob("*.jpg"))
        classes = sorted(p.name for p in (folder / "train").iterdir())
        for photo in rng.sample(photos, len(photos) // 100):
            target = rng.choice([c for c in classes if c != photo.parent.name])
            photo.rename(folder / "train" / target / photo.name)
        again = train_once(folder, work / "runs", work / "cache")
        for name, run in (("first pass", first), ("1% moved", again)):
            print(
                f"{size:6d} photos, {name:10s}: {run['seconds']:7.1f} s, peak memory {run['peak_gb']:.2f} GB; decode "
                f"{run['decode_seconds']:.1f} s, features {run['feature_seconds']:.1f} s, "
                f"probe {run['fit_seconds']:.1f} s; decoded {run['photos_decoded']}, "
                f"vectors computed {run['features_computed']}; "
                f"accuracy {100 * run['best_val_acc']:.1f}%",
                flush=True,
            )
        print(f"{size:6d} photos: the store holds {stored:.2f} GB after the first pass", flush=True)


if __name__ == "__main__":
    main()
