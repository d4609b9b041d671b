"""How long does one round of `transferlab suggest` take on a 1,000-photo pile once its features are stored?

    python benchmarks/suggest_round.py ../shared/datasets/animals4 ../shared/datasets/flowers5 --pile 1000 --start 5

Pools the classes of every DATA (train and val), copies START photos a class (seeded) into PHOTOS/<class>/ and PILE
photos of the rest into one flat PILE/, runs `transferlab suggest PHOTOS PILE --format csv` once (the first round:
features computed where the store lacks them), then ROUNDS more times, each a fresh process as a user runs it, and
prints each round's wall time, the median and the worst, and whether the rounds imported torch.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from transferlab.data.layout import load_dataset

PROBE = (
    "import sys; from transferlab.cli import main; code = main(sys.argv[1:]); "
    "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr); sys.exit(code)"
)


def make_folders(datas: list[Path], work: Path, start: int, pile_size: int, seed: int) -> tuple[Path, Path]:
    rng = random.Random(seed)
    photos, pile = work / "photos", work / "pile"
    shutil.rmtree(work, ignore_errors=True)
    pile.mkdir(parents=True)
    rest: list[Path] = []
    for data in datas:
        dataset = load_dataset(data)
        for label, name in enumerate(dataset.classes):
            mine = sorted(s.path for s in dataset.train + dataset.val if s.label == label)
            rng.shuffle(mine)
            (photos / name).mkdir(parents=True)
            for path in mine[:start]:
                shutil.copy(path, photos / name / path.name)
            rest += mine[start:]
    rng.shuffle(rest)
    for n, path in enumerate(rest[:pile_size]):
        shutil.copy(path, pile / f"{n:05d}{path.suffix.lower()}")
    return photos, pile


def one_round(photos: Path, pile: Path, backbone: str | None) -> tuple[float, bool]:
    command = [sys.executable, "-c", PROBE, "suggest", str(photos), str(pile), "--format", "csv", "-q"]
    command += ["--backbone", backbone] if backbone else []
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"suggest failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, "torch imported" in done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+")
    parser.add_argument("--pile", type=int, default=1000, help="pile photos (default 1000)")
    parser.add_argument("--start", type=int, default=5, help="labelled photos a class (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after the first (default 5)")
    parser.add_argument("--backbone", help="suggest's --backbone (default: its own default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/transferlab-suggest-round")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    photos, pile = make_folders([Path(d) for d in args.data], Path(args.work), args.start, args.pile, args.seed)
    labelled = sum(1 for _ in photos.rglob("*.*"))
    first, torch_first = one_round(photos, pile, args.backbone)
    print(f"{labelled} labelled, {args.pile} pile photos: first round {first:.1f} s (torch imported: {torch_first})")
    times = []
    for n in range(args.rounds):
        seconds, imported = one_round(photos, pile, args.backbone)
        times.append(seconds)
        print(f"  round {n + 2}: {seconds:.2f} s{' (torch imported)' if imported else ''}", flush=True)
    print(f"median {statistics.median(times):.2f} s, worst {max(times):.2f} s over {len(times)} rounds")


if __name__ == "__main__":
    main()
