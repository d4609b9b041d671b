"""Pooled head features alone against head + the last stages' pooled outputs, for single backbones and side by side.

    python benchmarks/stage_features.py ../shared/datasets/animals4 ../shared/datasets/flowers5 [--draws 5]

Every photo of each folder (train/ and val/ pooled) is decoded at each Lite backbone's own view and run once through
it with hooks on the last block of each of its last four stages. On the re-splits of `extract_protocol.draw_split`
("all", 25 and 10 training photos a class; 5 draws each), transferlab's probe (C by 5-fold cross-validation on the
training photos only) is fitted on: each backbone's head features ("lite0"), with its last two stages appended
("lite0 +2"), the three backbones' head features side by side ("concat"), with each one's last stage ("concat +1")
and last two stages ("concat +2"). Prints each split's accuracies, then per group and over all groups the means.
This is what chose the ensemble members' `member_features` (two stages); each member decodes its own view here,
where the ensemble resizes the largest member's crop (benchmarks/ensemble_protocol.py measures the ensemble as built).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from extract_protocol import draw_split  # noqa: E402
from transferlab.data.decoding import decode_split  # noqa: E402
from transferlab.data.layout import load_dataset  # noqa: E402
from transferlab.data.presets import normalize  # noqa: E402
from transferlab.models.backbones import get_spec  # noqa: E402
from transferlab.models.model import create_backbone  # noqa: E402
from transferlab.training.probe import fit_probe  # noqa: E402

LEVELS = ("0", "1", "2")


def stage_features(folder: str, level: str, cache: Path) -> dict[str, torch.Tensor]:
    """{"final": (N, 1280), "block<i>": (N, width) for the last four stage ends, "labels": (N,)}."""
    path = cache / f"{Path(folder).name}-lite{level}.pt"
    if path.exists():
        return torch.load(path)
    given = load_dataset(folder)
    spec = get_spec(f"efficientnet_lite{level}")
    decoded = decode_split(given.train + given.val, spec.resize_size, spec.input_size, quiet=True)
    backbone, _, _ = create_backbone(spec.name)
    blocks = backbone.eval().net._blocks
    widths = [b._block_args.output_filters for b in blocks] + [None]
    ends = [i for i in range(len(blocks)) if widths[i + 1] != widths[i]][-4:]
    pooled: dict[int, list[torch.Tensor]] = {i: [] for i in ends}
    for i in ends:
        blocks[i].register_forward_hook(lambda m, a, out, i=i: pooled[i].append(out.mean((2, 3))))
    final = []
    with torch.inference_mode():
        for start in range(0, len(decoded), 32):
            final.append(backbone(normalize(torch.stack(decoded.images[start : start + 32]), spec)))
    result = {"final": torch.cat(final), **{f"block{i}": torch.cat(v) for i, v in pooled.items()}}
    result["labels"] = decoded.labels
    torch.save(result, path)
    return result


def with_stages(feats: dict[str, torch.Tensor], stages: int) -> torch.Tensor:
    """The head features, then the pooled outputs of the last `stages` stages (in network order)."""
    blocks = [k for k in feats if k.startswith("block")]
    return torch.cat([feats["final"], *(feats[k] for k in blocks[len(blocks) - stages :] if stages)], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--cache", default="/tmp/transferlab-stage-features", help="features of every photo")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for folder in args.folders:
        given = load_dataset(folder)
        share = len(given.val) / (len(given.train) + len(given.val))
        feats = {level: stage_features(folder, level, cache) for level in LEVELS}
        y = feats["0"]["labels"]

        variants = {f"lite{v}": with_stages(feats[v], 0) for v in LEVELS}
        variants.update({f"lite{v} +2": with_stages(feats[v], 2) for v in LEVELS})
        for stages, label in ((0, "concat"), (1, "concat +1"), (2, "concat +2")):
            variants[label] = torch.cat([with_stages(feats[v], stages) for v in LEVELS], 1)
        for per_class in (None, 25, 10):
            group = f"{Path(folder).name} {per_class or 'all'}"
            for draw in range(args.draws):
                train, val = draw_split(y.numpy(), share, per_class, seed=1000 * draw + (per_class or 0))
                line = []
                for name, x in variants.items():
                    probe = fit_probe(x[train], y[train], len(given.classes))
                    accuracy = float((probe.logits(x[val]).argmax(1) == y[val]).double().mean())
                    results[group][name].append(accuracy)
                    line.append(f"{name} {accuracy:.1%}")
                print(f"[{group}] draw {draw}: " + ", ".join(line), flush=True)
    names = list(next(iter(results.values())))
    print("\n| group | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for group, by_name in results.items():
        print(f"| {group} | " + " | ".join(f"{np.mean(by_name[n]):.2%}" for n in names) + " |")
    means = {n: np.mean([np.mean(r[n]) for r in results.values()]) for n in names}
    print("| **mean of the groups** | " + " | ".join(f"{means[n]:.2%}" for n in names) + " |")


if __name__ == "__main__":
    main()
