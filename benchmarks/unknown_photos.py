"""Does "unknown" work? Train on some classes, then show the model photos of classes it never saw.

For each draw (a seed): a hard-linked folder holds the KNOWN classes' training photos and half of their validation
photos (chosen at random: the run's validation set, on which the threshold is fitted); the other half is kept back
as *unseen known photos*. A run is trained on it as a user would (`transferlab train COPY --strategy S`), then
predicts the unseen known photos and every photo (train and val) of the STRANGER classes. Reported: the share of
strangers answered "unknown" and the share of unseen known photos turned away; and, for comparison, the same two
shares when the largest softmax probability is thresholded instead (chosen on the run's validation photos by the
same conformal rule).

    python benchmarks/unknown_photos.py ../shared/datasets/animals4 --known cat,dog --strangers ant,bee --draws 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from transferlab import DataConfig, TrainConfig, train  # noqa: E402
from transferlab.data.images import is_image_file  # noqa: E402
from transferlab.data.layout import load_dataset  # noqa: E402
from transferlab.inference.predict import Classifier  # noqa: E402
from transferlab.inference.unknown import conformal_threshold  # noqa: E402


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def known_copy(data: Path, target: Path, known: list[str], seed: int) -> list[Path]:
    """train/ and half of val/ of the known classes, hard-linked; the other half of val (returned) is held back."""
    rng = random.Random(seed)
    held_back = []
    for name in known:
        for split in ("train", "val"):
            (target / split / name).mkdir(parents=True)
            files = photos(data / split / name)
            if split == "val":
                rng.shuffle(files)
                held_back += files[len(files) // 2 :]
                files = files[: len(files) // 2]
            for path in files:
                os.link(path, target / split / name / path.name)
    return held_back


def answers(classifier: Classifier, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Per readable photo: answered unknown (bool) and the largest softmax probability."""
    unknown, top = [], []
    for _, assessment in classifier.predict_files(files, quiet=True):
        if isinstance(assessment, str):
            continue
        prediction = classifier.rank(assessment)
        unknown.append(not prediction.known)
        top.append(prediction.probability)
    return np.array(unknown), np.array(top)


def one_draw(args: argparse.Namespace, seed: int, strangers: list[Path]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "known"
        held_back = known_copy(args.data, copy, args.known, seed)
        start = time.perf_counter()
        config = TrainConfig(
            data=DataConfig(root=str(copy)),
            strategy=args.strategy,
            backbone=args.backbone,
            seed=seed,
            out=str(Path(tmp) / "runs"),
            quiet=True,
        )
        run = train(config)
        seconds = time.perf_counter() - start
        classifier = Classifier.load(run.run_dir)
        val = [s.path for s in load_dataset(copy).val]
        _, val_top = answers(classifier, val)
        known_unknown, known_top = answers(classifier, held_back)
        stranger_unknown, stranger_top = answers(classifier, strangers)
    softmax_threshold = -conformal_threshold(-val_top)  # the same rule: below it, at most 5% of known photos
    return {
        "seed": seed,
        "strategy": args.strategy,
        "backbone": run.summary.backbone,
        "train_seconds": round(seconds, 1),
        "val_accuracy": run.best_val_acc,
        "threshold": classifier.unknown.threshold,
        "known_rejected_estimate": classifier.unknown.known_rejected,
        "unseen_known": len(known_unknown),
        "strangers": len(stranger_unknown),
        "distance": {
            "strangers_unknown": float(stranger_unknown.mean()),
            "known_rejected": float(known_unknown.mean()),
        },
        "max_softmax": {
            "strangers_unknown": float((stranger_top < softmax_threshold).mean()),
            "known_rejected": float((known_top < softmax_threshold).mean()),
            "strangers_mean_top_probability": float(stranger_top.mean()),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--known", default="cat,dog")
    parser.add_argument("--strangers", default="ant,bee")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--strategy", default="extract")
    parser.add_argument("--backbone", default="auto")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    args.known = args.known.split(",")
    strangers = [
        p for name in args.strangers.split(",") for split in ("train", "val") for p in photos(args.data / split / name)
    ]
    rows = []
    for seed in range(args.draws):
        row = one_draw(args, seed, strangers)
        rows.append(row)
        d, s = row["distance"], row["max_softmax"]
        print(
            f"draw {seed} ({row['backbone']}, {row['strategy']}, val acc {row['val_accuracy']:.1%}, "
            f"{row['train_seconds']:.0f} s): distance: {d['strangers_unknown']:.1%} of {row['strangers']} strangers "
            f"unknown, {d['known_rejected']:.1%} of {row['unseen_known']} unseen known photos turned away "
            f"(estimate at training {row['known_rejected_estimate']:.1%}); max softmax: "
            f"{s['strangers_unknown']:.1%} / {s['known_rejected']:.1%} (strangers' mean top probability "
            f"{s['strangers_mean_top_probability']:.1%})",
            flush=True,
        )
    mean = lambda key, part: float(np.mean([r[key][part] for r in rows]))  # noqa: E731
    print(
        f"mean over {len(rows)} draws: distance {mean('distance', 'strangers_unknown'):.1%} strangers unknown, "
        f"{mean('distance', 'known_rejected'):.1%} known turned away; max softmax "
        f"{mean('max_softmax', 'strangers_unknown'):.1%} / {mean('max_softmax', 'known_rejected'):.1%}"
    )
    if args.out:
        args.out.write_text(json.dumps({"draws": rows, "known": args.known, "strangers": args.strangers}, indent=2))


if __name__ == "__main__":
    main()
