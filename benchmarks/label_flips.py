"""Does `doctor --labels` find wrong labels? Flip the labels of N images in a copy of a photo folder and count how
many of them the label check ranks in its first 20 suspects.

For each draw (a seed): the folder is copied with hard links (nothing is duplicated on disk), N images chosen at
random (seeded) are moved to another class folder of the same split, chosen at random, and the check runs on the
copy exactly as `transferlab doctor COPY --labels` does (same backbone default, 5 folds). The folder's own suspects
(real mistakes and odd photos) compete with the flipped ones for the first places, as they would for a user.

    python benchmarks/label_flips.py ../shared/datasets/animals4 --draws 5 --flips 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from transferlab.curate.label_issues import check_labels  # noqa: E402
from transferlab.data.images import is_image_file  # noqa: E402


def flipped_copy(source: Path, target: Path, flips: int, seed: int) -> list[str]:
    """Hard-linked copy of `source` with `flips` images moved to another class; their new relative paths."""
    shutil.copytree(source, target, copy_function=os.link)
    files = sorted(p for p in target.rglob("*") if p.is_file() and is_image_file(p))
    rng = random.Random(seed)
    moved = []
    for path in rng.sample(files, flips):
        classes = sorted(d.name for d in path.parent.parent.iterdir() if d.is_dir() and d != path.parent)
        new = path.parent.parent / rng.choice(classes) / f"flipped_{path.name}"
        path.rename(new)
        moved.append(str(new.relative_to(target)))
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--flips", type=int, default=10)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--backbone", default="auto")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    rows = []
    for seed in range(args.draws):
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "photos"
            moved = flipped_copy(args.data, copy, args.flips, seed)
            start = time.perf_counter()
            check = check_labels(copy, args.backbone, quiet=True)
            seconds = time.perf_counter() - start
        top = [issue.path for issue in check.issues[: args.top]]
        ranks = sorted(check.ranking.index(path) + 1 for path in moved)
        found = sum(path in top for path in moved)
        listed = [issue.path for issue in check.issues if issue.kind == "label"]
        listed_flipped = sum(path in listed for path in moved)
        rows.append(
            {
                "seed": seed,
                "found_in_top": found,
                "listed_wrong": len(listed),  # the "likely wrong label" list: its length
                "listed_flipped": listed_flipped,  # ... the flipped photos in it (recall)
                "precision_lower_bound": round(listed_flipped / max(len(listed), 1), 3),  # the folder's own errors
                "ambiguous": sum(issue.kind == "ambiguous" for issue in check.issues),  # count as misses here
                "estimated_errors": check.estimated_errors,
                "ranks": ranks,
                "seconds": round(seconds, 1),
                "backbone": check.backbone,
                "cv_accuracy": round(check.cv_accuracy, 4),
            }
        )
        print(
            f"draw {seed}: {found} of {args.flips} flipped labels in the first {args.top} suspects "
            f"(their ranks: {ranks}); 'likely wrong label' lists {len(listed)}, {listed_flipped} of them flipped; "
            f"estimated errors {check.estimated_errors}; {check.backbone}, {seconds:.0f} s",
            flush=True,
        )
    found = [row["found_in_top"] for row in rows]
    mean = sum(found) / len(found)
    print(
        f"mean {mean:.1f} of {args.flips} in the first {args.top} (min {min(found)}, max {max(found)}) over "
        f"{len(rows)} draws; the 'likely wrong label' list held {sum(r['listed_flipped'] for r in rows)} of "
        f"{args.flips * len(rows)} flipped photos in {sum(r['listed_wrong'] for r in rows)} listed"
    )
    if args.out:
        args.out.write_text(
            json.dumps({"draws": rows, "mean_found": mean, "flips": args.flips, "top": args.top}, indent=2)
        )


if __name__ == "__main__":
    main()
