"""How many decisions does sorting a pile take with `transferlab suggest`? Sorting by hand is one a photo.

    python benchmarks/sort_pile.py ../shared/datasets/animals4 --start 5 --seed 0,1,2

Every photo of DATA (train and val) is copied: K photos a class (seeded) into PHOTOS/<class>/, the rest into one
flat PILE/ under neutral names (the class is not in the name). Each round runs `transferlab suggest PHOTOS PILE
--format csv --rejected REJECTED` as a user runs it; then, for each class, a page of up to 30 pile photos suggested
as that class, most probable first; a simulated person (the true labels) unticks each wrong one (1 decision each;
that class is written to REJECTED for it, so it is not offered for it again) and accepts the page (1 decision): the
rest of the page is moved into PHOTOS/<class>/. Once a round accepts nothing, the rest of the pile is labelled one
by one (1 decision each). Prints, per seed, the decisions per pile photo, the rounds and each round's `suggest`
wall time; then the mean and spread over the seeds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from transferlab.data.layout import load_dataset

PAGE = 30


def make_folders(data: Path, work: Path, start: int, seed: int) -> tuple[Path, Path, dict[str, str]]:
    """PHOTOS (K a class), PILE (the rest, neutral names) and the pile's true classes by file name."""
    dataset = load_dataset(data)
    classes, samples = dataset.classes, dataset.train + dataset.val
    rng = random.Random(seed)
    photos, pile = work / "photos", work / "pile"
    shutil.rmtree(work, ignore_errors=True)
    truth: dict[str, str] = {}
    for label, name in enumerate(classes):
        mine = sorted(s.path for s in samples if s.label == label)
        rng.shuffle(mine)
        (photos / name).mkdir(parents=True)
        for path in mine[:start]:
            shutil.copy(path, photos / name / path.name)
        pile.mkdir(parents=True, exist_ok=True)
        for path in mine[start:]:
            neutral = hashlib.sha1(f"{seed}/{path}".encode()).hexdigest()[:16] + path.suffix.lower()
            shutil.copy(path, pile / neutral)
            truth[neutral] = name
    return photos, pile, truth


def suggestions(photos: Path, pile: Path, rejected: Path, backbone: str | None) -> tuple[list[dict], float]:
    command = [sys.executable, "-m", "transferlab", "suggest", str(photos), str(pile), "--format", "csv"]
    command += ["--rejected", str(rejected), "--quiet"] + (["--backbone", backbone] if backbone else [])
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"suggest failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return list(csv.DictReader(io.StringIO(done.stdout))), seconds


def sort_once(data: Path, work: Path, start: int, seed: int, backbone: str | None) -> dict:
    photos, pile, truth = make_folders(data, work, start, seed)
    rejected = work / "rejected.csv"
    rejected.write_text("path,class\n")
    total = len(truth)
    decisions, rounds, times = 0, 0, []
    while any(pile.iterdir()):
        rows, seconds = suggestions(photos, pile, rejected, backbone)
        rounds += 1
        times.append(seconds)
        accepted = 0
        for name in sorted({row["class"] for row in rows}):
            page = sorted((r for r in rows if r["class"] == name), key=lambda r: -float(r["probability"]))[:PAGE]
            wrong = [r for r in page if truth[Path(r["path"]).name] != name]
            decisions += len(wrong) + 1
            with rejected.open("a") as out:
                for row in wrong:
                    out.write(f"{row['path']},{name}\n")
            for row in page:
                if row not in wrong:
                    Path(row["path"]).rename(photos / name / Path(row["path"]).name)
                    accepted += 1
        print(f"  round {rounds}: {accepted} accepted, {decisions} decisions so far, suggest {seconds:.1f} s")
        if not accepted:
            break
    left = sum(1 for _ in pile.iterdir())
    decisions += left
    return {"per_photo": decisions / total, "decisions": decisions, "photos": total, "rounds": rounds,
            "by_hand": left, "seconds": times}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--start", type=int, default=5, help="labelled photos a class to start with (default 5)")
    parser.add_argument("--seed", default="0,1,2", help="seeds, comma-separated (default 0,1,2)")
    parser.add_argument("--work", default="/tmp/transferlab-sort-pile")
    parser.add_argument("--backbone", help="suggest's --backbone (default: its own default)")
    args = parser.parse_args()
    results = []
    for seed in (int(s) for s in args.seed.split(",")):
        print(f"{args.data}, K={args.start}, seed {seed}:", flush=True)
        result = sort_once(Path(args.data), Path(args.work), args.start, seed, args.backbone)
        results.append(result)
        print(
            f"seed {seed}: {result['per_photo']:.3f} decisions a photo ({result['decisions']} for "
            f"{result['photos']} pile photos), {result['rounds']} rounds, {result['by_hand']} labelled by hand; "
            f"suggest median {statistics.median(result['seconds']):.1f} s, worst {max(result['seconds']):.1f} s",
            flush=True,
        )
    values = [r["per_photo"] for r in results]
    spread = ""
    if len(values) > 1:
        spread = f" (sd {statistics.stdev(values):.3f}, min {min(values):.3f}, max {max(values):.3f})"
    print(f"mean {statistics.mean(values):.3f} decisions a photo over {len(values)} seeds{spread}")


if __name__ == "__main__":
    main()
