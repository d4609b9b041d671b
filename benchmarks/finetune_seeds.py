"""Fine-tuning accuracy over several seeds: the tutorial loop vs transferlab, and how large training pictures are kept.

    .venv/bin/python benchmarks/finetune_seeds.py [DATA] [--seeds 0,1,2] [--epochs 6] [--sides 448,256]

A single seed's best validation accuracy moves by a point or more from seed to seed (one point is under 3 of
animals4's 273 validation images), so one run each cannot say which fine-tuning is better. This runs the reference
recipe's fine-tuning over several seeds:
  (a) the plain tutorial loop (benchmarks/speed.py): RandomResizedCrop cut from the full-size photo every epoch;
  (b) transferlab, with training pictures kept at a short side of at most S, for each S in --sides (the default,
      2x the input size, is 448 for EfficientNet-Lite0; 256, the evaluation resize size, is what transferlab kept
      before, so its small random crops were blown up from ~72-pixel patches).
Each run's best epoch gives the validation images it got right; variants are compared with a paired bootstrap over
validation images and seeds (transferlab.stats). The default 6 epochs are the first 6 of the 25-epoch recipe
(StepLR(7) has not stepped yet); the 25-epoch fine-tuning runs measured here peaked at epochs 4 to 7.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from speed import DEFAULT_DATA, plain_tutorial
from transferlab import DataConfig, TrainConfig, train
from transferlab.analysis.evaluate import evaluate_decoded
from transferlab.analysis.stats import paired_bootstrap
from transferlab.config import RECIPES
from transferlab.data.prepare import prepare_data
from transferlab.data.presets import train_side
from transferlab.models.backbones import get_spec
from transferlab.runs import read_metrics


def _key(path: str | Path) -> str:
    """class/file: the same picture's name in ImageFolder's list and in transferlab's."""
    return "/".join(Path(path).parts[-2:])


def transferlab_runs(data: Path, backbone: str, side: int, seeds: list[int], epochs: int, out: Path) -> list[dict]:
    """(b) at one training-picture size: decode once, then one fine-tuning run per seed on those pictures."""
    config = TrainConfig(
        data=DataConfig(root=str(data), train_side=side),
        strategy="finetune",
        backbone=backbone,
        recipe=replace(RECIPES["reference"], epochs=epochs),
        out=str(out),
        quiet=True,
        feature_cache=False,
    )
    prepared = prepare_data(config)
    runs = []
    for seed in seeds:
        result = train(replace(config, seed=seed), prepared)
        evaluation = evaluate_decoded(result.run_dir, prepared.val, write=False)
        seconds = [m["seconds"] for m in read_metrics(result.run_dir)]
        run = {
            "name": f"(b) transferlab, train pictures <= {side} px",
            "seed": seed,
            "best": result.summary.best_val_acc,
            "best_epoch": result.summary.best_epoch,
            "per_epoch": float(np.mean(seconds)),
            "val_correct": {_key(p): bool(c) for p, c in zip(evaluation.paths, evaluation.correct)},
        }
        if abs(evaluation.accuracy - run["best"]) > 1e-9:
            print(
                f"note: the best checkpoint re-evaluated gives {evaluation.accuracy:.1%}, training logged "
                f"{run['best']:.1%}",
                flush=True,
            )
        print(f"done: {run['name']}, seed {seed}: best {run['best']:.1%} at epoch {run['best_epoch']}", flush=True)
        runs.append(run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--sides", help="training-picture short sides to try (default: 2x the input size, 256)")
    parser.add_argument("--json", help="also write every run's results here")
    args = parser.parse_args()
    data, seeds = Path(args.data), [int(s) for s in args.seeds.split(",")]
    sides = (
        [int(s) for s in args.sides.split(",")]
        if args.sides
        else [train_side(get_spec(args.backbone)), get_spec(args.backbone).resize_size]
    )
    out = Path(tempfile.mkdtemp(prefix="transferlab-seeds-"))

    variants: dict[str, list[dict]] = {}
    name = "(a) tutorial loop (crops from the full-size photo)"
    for seed in seeds:  # first, before transferlab tunes this process's allocator (as in speed.py)
        run = plain_tutorial(data, args.backbone, "finetune", args.epochs, seed)
        variants.setdefault(name, []).append(
            {
                "name": name,
                "seed": seed,
                "best": run["best"],
                "best_epoch": run["best_epoch"],
                "per_epoch": run["per_epoch"],
                "val_correct": {_key(p): c for p, c in run["val_correct"].items()},
            }
        )
    for side in sides:
        runs = transferlab_runs(data, args.backbone, side, seeds, args.epochs, out)
        variants[runs[0]["name"]] = runs

    print(f"\n{args.backbone}, reference recipe, fine-tuning, {args.epochs} epochs, seeds {args.seeds}, data {data}")
    print("| variant | best val acc per seed | mean ± sd | best epochs | s/epoch |")
    print("|---|---|---|---|---|")
    for name, runs in variants.items():
        accs = np.array([r["best"] for r in runs])
        spread = accs.std(ddof=1) if len(accs) > 1 else 0.0
        print(
            f"| {name} | {', '.join(f'{a:.1%}' for a in accs)} | {accs.mean():.1%} ± {spread:.1%} | "
            f"{', '.join(str(r['best_epoch']) for r in runs)} | {np.mean([r['per_epoch'] for r in runs]):.1f} |"
        )

    names = list(variants)
    shared = sorted(set.intersection(*(set(r["val_correct"]) for runs in variants.values() for r in runs)))
    print(f"\npaired comparisons over the {len(shared)} validation pictures every run evaluated:")
    matrix = {n: np.array([[r["val_correct"][k] for k in shared] for r in variants[n]]) for n in names}
    for first, second in [(names[1], names[0])] + [(names[1], other) for other in names[2:]]:
        print("- " + paired_bootstrap(matrix[first], matrix[second], first, second).sentence())
    if args.json:
        Path(args.json).write_text(json.dumps(variants, indent=1))


if __name__ == "__main__":
    main()
