"""Are planted shortcuts found, and is nothing flagged on clean folders? `doctor --shortcuts` as users run it.

    python benchmarks/shortcuts.py ../shared/datasets/animals4 ../shared/datasets/flowers5 [--work DIR]

For each folder, copies of every photo (train and val) are made once per cue, with the cue planted on one class
(chosen by a seeded draw) and the other classes copied untouched (re-encoded the same way, so that re-encoding is
not itself the cue):
- `mark`: a small white watermark-like patch with dark text lines, at the bottom-right;
- `grey`: the class's photos in black and white;
- `frame`: a 6%-wide black frame around the class's photos;
- `png`: the class's photos saved as PNG, the others as JPEG.
Then `transferlab doctor COPY --shortcuts --json` runs in a fresh process on each copy and on the clean folder, and
the script prints, per cue, whether a "shortcut" finding names the planted class (found), any finding naming another
class (extra), and the clean folder's findings; each finding's message ends with what a model made of the cue (its
class's validation photos answered as they are and with the cue hidden), and its seconds are printed.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from transferlab.data.layout import load_dataset

CUES = ("mark", "grey", "frame", "png")


def plant(picture: Image.Image, cue: str) -> Image.Image:
    picture = picture.convert("RGB")
    width, height = picture.size
    if cue == "mark":
        w, h = max(24, width // 6), max(12, height // 12)
        box = (width - w - width // 20, height - h - height // 20)
        patch = Image.new("RGB", (w, h), "white")
        draw = ImageDraw.Draw(patch)
        for line in range(3):
            draw.line((3, 3 + line * h // 3, w - 4, 3 + line * h // 3), fill=(40, 40, 40), width=max(1, h // 8))
        picture.paste(patch, box)
    elif cue == "grey":
        picture = ImageOps.grayscale(picture).convert("RGB")
    elif cue == "frame":
        border = max(4, round(0.06 * min(width, height)))
        picture = ImageOps.expand(picture.crop((border, border, width - border, height - border)), border, "black")
    return picture


def make_copy(source: str, cue: str, target: str, out: Path) -> None:
    if (out / "done").exists():
        return
    given = load_dataset(source)
    for split, samples in (("train", given.train), ("val", given.val)):
        for sample in samples:
            name = given.classes[sample.label]
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            with Image.open(sample.path) as opened:
                picture = opened.convert("RGB")
            planted = name == target
            if planted and cue != "png":
                picture = plant(picture, cue)
            if planted and cue == "png":
                picture.save(folder / f"{sample.path.stem}.png")
            else:
                picture.save(folder / f"{sample.path.stem}.jpg", quality=90)
    (out / "done").touch()


def shortcuts(folder: Path) -> list[dict]:
    command = [sys.executable, "-m", "transferlab", "doctor", str(folder), "--shortcuts", "--json", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr[-2000:])
    print(f"  ({folder.name}: doctor --shortcuts took {time.perf_counter() - start:.1f} s)")
    return [f for f in json.loads(done.stdout)["findings"] if f["kind"] == "shortcut"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--work", default="/tmp/transferlab-shortcuts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    missed = 0
    for source in args.folders:
        classes = load_dataset(source).classes
        clean = shortcuts(Path(source))
        print(f"{Path(source).name} (clean): {len(clean)} finding(s)")
        for finding in clean:
            print(f"    {finding['message']}")
        for cue in CUES:
            target = random.Random(f"{args.seed}-{source}-{cue}").choice(classes)
            copy = Path(args.work) / f"{Path(source).name}-{cue}"
            make_copy(source, cue, target, copy)
            found = shortcuts(copy)
            hit = [f for f in found if f["class_name"] == target]
            extra = [f for f in found if f["class_name"] != target]
            missed += not hit
            print(f"{Path(source).name} + {cue} on '{target}': {'found' if hit else 'MISSED'}"
                  f"{f', {len(extra)} other finding(s)' if extra else ''}")  # fmt: skip
            for finding in hit + extra:
                print(f"    {finding['message']}")
    print(f"{missed} planted cue(s) missed")


if __name__ == "__main__":
    main()
