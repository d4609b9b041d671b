"""Feature extraction against the best simple method, on seeded re-splits and subsets of a photo folder.

    python benchmarks/extract_protocol.py ../shared/datasets/animals4 [--draws 5] [--backbone efficientnet_lite0]

Every photo of DATA (train/ and val/ pooled) is decoded once. Groups of splits, each drawn with its own seed:
- "all": stratified re-splits of every photo, keeping DATA's own share of validation photos;
- "25/class", "10/class": the same re-splits, then only that many training photos per class (validation unchanged).
On each split:
- (a) transferlab's default `extract` (`train()` itself: the default recipe, features cached per split),
- (b) `extract` with `--recipe reference` (the tutorial's SGD head, best epoch kept: the default before),
- (c) an independent probe: scikit-learn StandardScaler + LogisticRegression, C from 5-fold GridSearchCV on the
  training images, on centre-crop features of the photos decoded the validation way,
- (d) transferlab's probe on other features: the augmented views, and centre crops plus views.
It prints every accuracy, and per group each variant's mean paired difference from (c) with its 95% interval
(paired bootstrap over validation images and draws). Then it times `extract` on DATA as given, reference recipe
against the default, features computed (no cache), in this one process.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from transferlab import DataConfig, TrainConfig, train
from transferlab.analysis.evaluate import evaluate_decoded
from transferlab.analysis.stats import paired_bootstrap
from transferlab.config import DEFAULT_RECIPE, RECIPES
from transferlab.data.decoding import decode_split
from transferlab.data.layout import Dataset, load_dataset
from transferlab.data.prepare import PreparedData
from transferlab.data.presets import normalize, train_side
from transferlab.models.backbones import get_spec
from transferlab.models.model import create_backbone

VARIANTS = ("a default extract", "b reference extract", "c sklearn probe", "d probe on views", "d probe centre+views")


def centre_features(decoded, backbone_name: str) -> torch.Tensor:
    backbone, spec, _ = create_backbone(backbone_name)
    backbone.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(decoded), 64):
            out.append(backbone(normalize(torch.stack(decoded.images[i : i + 64]), spec)).float())
    return torch.cat(out)


def sklearn_probe(x: np.ndarray, y: np.ndarray, x_val: np.ndarray) -> np.ndarray:
    """The 'best simple method': standardise, L2 logistic regression, C by 5-fold cross-validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(5, int(np.bincount(y).min()))
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        {"logisticregression__C": np.logspace(-4, 2, 13)},
        cv=StratifiedKFold(folds, shuffle=True, random_state=0),
    )
    return search.fit(x, y).predict(x_val)


def draw_split(labels: np.ndarray, val_share: float, per_class: int | None, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(set(labels.tolist())):
        members = [i for i in range(len(labels)) if labels[i] == label]
        rng.shuffle(members)
        n_val = round(len(members) * val_share)
        val += members[:n_val]
        rest = members[n_val:]
        train += rest[:per_class] if per_class else rest
    return sorted(train), sorted(val)


def run_split(data, decoded_train, decoded_val, centre, labels, idx_train, idx_val, backbone, out) -> dict:
    dataset = Dataset(
        root=data.root,
        classes=data.classes,
        train=[data.samples[i] for i in idx_train],
        val=[data.samples[i] for i in idx_val],
        layout="re-split",
        ignored_files=[],
    )
    prepared = PreparedData(
        dataset=dataset, spec=get_spec(backbone), train=decoded_train.subset(idx_train), val=decoded_val.subset(idx_val)
    )
    results = {}
    recipes = {
        "a default extract": RECIPES[DEFAULT_RECIPE],
        "b reference extract": RECIPES["reference"],
        "d probe on views": dataclasses.replace(RECIPES[DEFAULT_RECIPE], head_solver="probe", probe_features="views"),
        "d probe centre+views": dataclasses.replace(
            RECIPES[DEFAULT_RECIPE], head_solver="probe", probe_features="both"
        ),
    }
    for name, recipe in recipes.items():
        config = TrainConfig(
            data=DataConfig(root=str(data.root)),
            strategy="extract",
            backbone=backbone,
            recipe=recipe,
            out=str(out),
            quiet=True,
        )
        run = train(config, prepared)
        results[name] = evaluate_decoded(run.run_dir, prepared.val, write=False).correct
    predicted = sklearn_probe(centre[idx_train].numpy(), labels[idx_train], centre[idx_val].numpy())
    results["c sklearn probe"] = predicted == labels[idx_val]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--groups", default="all,25,10", help="all and/or training photos per class")
    args = parser.parse_args()
    os.environ["TRANSFERLAB_CACHE"] = tempfile.mkdtemp(prefix="transferlab-protocol-")
    out = Path(tempfile.mkdtemp(prefix="transferlab-protocol-runs-"))
    given = load_dataset(args.data)
    samples = given.train + given.val
    spec = get_spec(args.backbone)
    decoded_train = decode_split(samples, train_side(spec), None, quiet=True)
    decoded_val = decode_split(samples, spec.resize_size, spec.input_size, quiet=True)
    assert decoded_train.paths == decoded_val.paths, "a photo decoded one way but not the other"
    kept = set(decoded_train.paths)
    data = argparse.Namespace(root=given.root, classes=given.classes, samples=[s for s in samples if s.path in kept])
    labels = decoded_train.labels.numpy()
    centre = centre_features(decoded_val, args.backbone)
    val_share = len(given.val) / len(samples)
    print(
        f"{len(data.samples)} photos, {len(given.classes)} classes, validation share {val_share:.0%}; "
        f"backbone {args.backbone}; default recipe '{DEFAULT_RECIPE}'"
    )
    for group in args.groups.split(","):
        per_class = None if group == "all" else int(group)
        correct = defaultdict(list)
        for draw in range(args.draws):
            idx_train, idx_val = draw_split(labels, val_share, per_class, seed=1000 * draw + (per_class or 0))
            results = run_split(
                data, decoded_train, decoded_val, centre, labels, idx_train, idx_val, args.backbone, out
            )
            for name in VARIANTS:
                correct[name].append(results[name])
            print(
                f"[{group}] draw {draw}: {len(idx_train)} train / {len(idx_val)} val: "
                + ", ".join(f"{name[0]} {results[name].mean():.1%}" for name in VARIANTS),
                flush=True,
            )
        print("\n| group | variant | accuracy per draw | mean | minus (c): mean [95% CI] |\n|---|---|---|---|---|")
        for name in VARIANTS:
            per_draw = ", ".join(f"{c.mean():.1%}" for c in correct[name])
            diff = paired_bootstrap(np.stack(correct[name]), np.stack(correct["c sklearn probe"]))
            print(
                f"| {group} | {name} | {per_draw} | {np.mean([c.mean() for c in correct[name]]):.1%} | "
                f"{diff.diff * 100:+.2f} [{diff.low * 100:+.2f}, {diff.high * 100:+.2f}] |"
            )
        print(flush=True)
    print("extract on the folder as given, features computed (no cache), one process:")
    for name in ("reference", DEFAULT_RECIPE):
        config = TrainConfig(
            data=DataConfig(root=args.data),
            strategy="extract",
            backbone=args.backbone,
            recipe=RECIPES[name],
            out=str(out),
            quiet=True,
            feature_cache=False,
        )
        start = time.perf_counter()
        result = train(config)
        print(
            f"  recipe {name}: total {result.summary.total_seconds:.1f} s (wall {time.perf_counter() - start:.1f} s),"
            f" val accuracy {result.best_val_acc:.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
