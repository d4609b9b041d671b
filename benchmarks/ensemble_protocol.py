"""Single-backbone probes against their ensemble, on seeded re-splits and subsets of photo folders.

    python benchmarks/ensemble_protocol.py ../shared/datasets/animals4 ../shared/datasets/flowers5 [--draws 5]

Every photo of each folder (train/ and val/ pooled) is decoded once per view and its centre-crop features computed
once per backbone (EfficientNet-Lite0, 1, 2, and their ensemble as transferlab builds it: `get_spec("a+b+c")`), each
also on the mirrored picture. Groups of splits, drawn with seeds: "all" (stratified re-splits keeping the folder's
share of validation photos), "25/class" and "10/class" (the same re-splits, then that many training photos a class).
On each split, transferlab's probe (`fit_probe`: C by 5-fold cross-validation on the training photos only) on:
- each single backbone's features ("lite0", "lite1", "lite2"), and with mirror-averaged features ("... +mirror");
- the ensemble's concatenated features ("concat"), and mirror-averaged ("concat +mirror");
- "avg-prob": the mean of the three single probes' probabilities;
- "stacked": a probe on the single probes' out-of-fold log-probabilities (each from its own 5-fold cross-validation);
- "fit's pick": what `fit` answers among its probe cells (lite0, lite1, lite2, concat): the most accurate on the
  validation photos, ties to the cheaper (an optimistic figure: chosen on the photos it is scored on).
It prints per group each variant's mean accuracy and its paired difference (95% interval: bootstrap over validation
photos and draws) from every single-backbone probe, then the means over all groups of all folders.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from extract_protocol import draw_split  # noqa: E402
from transferlab.analysis.stats import paired_bootstrap  # noqa: E402
from transferlab.data.decoding import decode_split  # noqa: E402
from transferlab.data.layout import load_dataset  # noqa: E402
from transferlab.data.presets import normalize  # noqa: E402
from transferlab.models.backbones import get_spec  # noqa: E402
from transferlab.models.model import create_backbone  # noqa: E402
from transferlab.training.probe import cross_val_probabilities, fit_probe  # noqa: E402

SINGLES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
ENSEMBLE = "+".join(SINGLES)
SHORT = {SINGLES[0]: "lite0", SINGLES[1]: "lite1", SINGLES[2]: "lite2", ENSEMBLE: "concat"}
VARIANTS = ("lite0", "lite1", "lite2", "lite0 +mirror", "lite1 +mirror", "lite2 +mirror", "concat",
            "concat +mirror", "avg-prob", "stacked", "fit's pick")  # fmt: skip


def features(root: str, samples, name: str, cache: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """(plain, mirrored, labels, seconds per photo) of every photo's centre crop through backbone `name`."""
    path = cache / f"{Path(root).name}-{SHORT[name]}.pt"
    if path.exists():
        return torch.load(path)
    spec = get_spec(name)
    decoded = decode_split(samples, spec.resize_size, spec.input_size, quiet=True)
    backbone, _, _ = create_backbone(name)
    backbone.eval()
    plain, mirrored = [], []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(decoded), 32):
            batch = normalize(torch.stack(decoded.images[i : i + 32]), spec)
            plain.append(backbone(batch))
            mirrored.append(backbone(batch.flip(-1)))
    seconds = (time.perf_counter() - start) / (2 * len(decoded))
    result = (torch.cat(plain), torch.cat(mirrored), decoded.labels, seconds)
    torch.save(result, path)
    return result


def accuracy_of(probe, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (probe.logits(x).argmax(1) == y).numpy()


def run_split(feats: dict, y: torch.Tensor, train: list[int], val: list[int], classes: int) -> dict[str, np.ndarray]:
    out, probs, oof = {}, [], []
    y_train, y_val = y[train], y[val]
    for name in (*SINGLES, ENSEMBLE):
        plain, mirrored = feats[name]
        for label, x in ((SHORT[name], plain), (SHORT[name] + " +mirror", (plain + mirrored) / 2)):
            probe = fit_probe(x[train], y_train, classes)
            out[label] = accuracy_of(probe, x[val], y_val)
            if name in SINGLES and label == SHORT[name]:
                probs.append(probe.logits(x[val]).softmax(1))
                oof.append(cross_val_probabilities(x[train], y_train, classes).clamp_min(1e-6).log())
                probs[-1] = (probs[-1], probe)
    out["avg-prob"] = (torch.stack([p for p, _ in probs]).mean(0).argmax(1) == y_val).numpy()
    stacker = fit_probe(torch.cat(oof, 1), y_train, classes)
    val_logp = torch.cat([pr.logits(feats[n][0][val]).softmax(1).clamp_min(1e-6).log()
                          for n, (_, pr) in zip(SINGLES, probs)], 1)  # fmt: skip
    out["stacked"] = accuracy_of(stacker, val_logp, y_val)
    cells = ["lite0", "lite1", "lite2", "concat"]  # fit's cells, cheapest first: max takes the first of equals
    out["fit's pick"] = out[max(cells, key=lambda c: out[c].mean())]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--groups", default="all,25,10", help="all and/or training photos per class")
    parser.add_argument("--cache", default="/tmp/transferlab-ensemble-protocol", help="features of every photo")
    parser.add_argument("--json", help="write every per-photo result here")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    group_means: dict[str, list[float]] = defaultdict(list)
    saved: dict = {}
    for folder in args.folders:
        given = load_dataset(folder)
        samples = given.train + given.val
        feats, y, cost = {}, None, {}
        for name in (*SINGLES, ENSEMBLE):
            plain, mirrored, labels, seconds = features(folder, samples, name, cache)
            assert y is None or torch.equal(y, labels), "a photo decoded for one backbone but not another"
            feats[name], y, cost[SHORT[name]] = (plain, mirrored), labels, seconds
        assert y is not None
        val_share = len(given.val) / len(samples)
        print(f"\n## {Path(folder).name}: {len(y)} photos, {len(given.classes)} classes, validation share "
              f"{val_share:.0%}; ms a photo (plain + mirrored averaged): "
              + ", ".join(f"{k} {1000 * v:.0f}" for k, v in cost.items()), flush=True)  # fmt: skip
        for group in args.groups.split(","):
            per_class = None if group == "all" else int(group)
            correct: dict[str, list[np.ndarray]] = defaultdict(list)
            for draw in range(args.draws):
                train, val = draw_split(y.numpy(), val_share, per_class, seed=1000 * draw + (per_class or 0))
                start = time.perf_counter()
                result = run_split(feats, y, train, val, len(given.classes))
                for name in VARIANTS:
                    correct[name].append(result[name])
                print(f"[{group}] draw {draw}: {len(train)} train / {len(val)} val ({time.perf_counter() - start:.0f}"
                      " s): " + ", ".join(f"{n} {result[n].mean():.1%}" for n in VARIANTS), flush=True)  # fmt: skip
            label = f"{Path(folder).name} {group}"
            saved[label] = {n: [c.tolist() for c in correct[n]] for n in VARIANTS}
            print(f"\n| {label} | mean | minus lite0 [95% CI] | minus lite1 | minus lite2 |\n|---|---|---|---|---|")
            for name in VARIANTS:
                mean = float(np.mean([c.mean() for c in correct[name]]))
                group_means[name].append(mean)
                cells = []
                for single in ("lite0", "lite1", "lite2"):
                    d = paired_bootstrap(np.stack(correct[name]), np.stack(correct[single]), resamples=4000)
                    mark = " (worse)" if d.high < 0 else " (better)" if d.low > 0 else ""
                    cells.append(f"{d.diff * 100:+.1f} [{d.low * 100:+.1f}, {d.high * 100:+.1f}]{mark}")
                print(f"| {name} | {mean:.1%} | " + " | ".join(cells) + " |")
            print(flush=True)
    print(f"\n## mean over the {len(group_means['lite0'])} groups\n\n| variant | mean accuracy |\n|---|---|")
    for name in VARIANTS:
        print(f"| {name} | {np.mean(group_means[name]):.2%} |")
    best_single = max(("lite0", "lite1", "lite2"), key=lambda n: np.mean(group_means[n]))
    margin = {n: 100 * (np.mean(group_means[n]) - np.mean(group_means[best_single])) for n in VARIANTS}
    print(f"\nbest single backbone on average: {best_single}; minus it: "
          + ", ".join(f"{n} {margin[n]:+.2f}" for n in VARIANTS if n != best_single) + " points")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(saved))


if __name__ == "__main__":
    main()
