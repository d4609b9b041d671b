"""Compare cells on the same data: the Python API behind `transferlab compare`.

A cell is one backbone, one strategy and one batch size. Backbones whose weights cannot be had are skipped before
any photo is decoded, with their reason. For each remaining backbone the photos are prepared once
(`prepare.prepare_data`); every strategy and batch size trains on the same split, decoded pictures and recipe,
`seeds` times each; every run is evaluated; then the report is written (`report.write_report`), and with it the
recommendation (`recommendation`), kept as data in the compare folder's `summary.json` (`runs.CompareSummary`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

from transferlab.config import COMPARED, STRATEGIES, Strategy, TrainConfig
from transferlab.data.layout import check_out_folder, load_dataset
from transferlab.data.prepare import prepare_data
from transferlab.errors import InvalidSetting, WeightsUnavailable, at_least, one_of
from transferlab.models.backbones import ensemble_of
from transferlab.runs import ComparePlan, add_cross_validation
from transferlab.training.driver import Comparison, open_folder, run_plan, train_and_evaluate, usable_backbones
from transferlab.training.run_folder import RunResult
from transferlab.utils.device import resolve_device
from transferlab.utils.distributed import Dist
from transferlab.utils.distributed import setup as setup_distributed

log = logging.getLogger("transferlab")


def compare(
    config: TrainConfig,
    strategies: tuple[Strategy, ...] = COMPARED,
    seeds: int = 1,
    evaluate: bool = True,
    backbones: list[str] | None = None,
    batch_sizes: list[int] | None = None,
    *,
    cv: int | None = None,
    ensemble: bool = True,
) -> Comparison:
    """Train every cell (backbone x strategy x batch size) on the same split, `seeds` times each (training seeds
    config.seed, config.seed + 1, ...); evaluate every run; then write the report and the recommendation. With
    `cv` K, also cross-validate the probe (extract's head) over every image of each backbone, K folds. With several
    backbones and `extract` among the strategies, the backbones together (`ensemble_of`) are one more extract cell
    (unless `ensemble` is False).

    Each run gets its own folder inside one compare folder. Ctrl-C stops the comparison, keeps every finished
    run and the interrupted run's best checkpoint, and still writes the report.
    """
    _check_settings(strategies, seeds, batch_sizes, cv)
    data = config.data
    load_dataset(data.root, data.val_fraction, data.split_seed, data.max_per_class)  # a bad folder: no run folder
    check_out_folder(config.out, data.root)
    names, sizes = backbones or [config.backbone], batch_sizes or [config.recipe.batch_size]
    usable, skipped = usable_backbones(names, config.weights)
    if not usable:
        raise WeightsUnavailable("no backbone to compare: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    joined = ensemble_of(usable) if ensemble and "extract" in strategies and config.weights is None else None
    dist = setup_distributed(resolve_device(config.device))
    tag = usable[0] if len(usable) == 1 else f"{len(usable)}backbones"
    out_dir = open_folder(
        config,
        dist,
        f"compare-{tag}",
        ComparePlan(
            kind="compare",
            strategies=list(strategies),
            seeds=seeds,
            backbones=usable + ([joined] if joined else []),
            batch_sizes=sizes,
            skipped_backbones=skipped,
        ),
    )
    grid = len(usable) > 1 or len(sizes) > 1

    def every_backbone() -> Iterator[RunResult]:
        for backbone in usable:
            base = dataclasses.replace(config, backbone=backbone, out=str(out_dir))
            yield from _compare_backbone(base, strategies, seeds, sizes, grid, evaluate, dist=dist, cv=cv)
        if joined:
            base = dataclasses.replace(config, backbone=joined, out=str(out_dir))
            yield from _compare_backbone(base, ("extract",), seeds, sizes, grid, evaluate, dist=dist)

    return run_plan(out_dir, dist, every_backbone(), skipped)


def _check_settings(strategies: tuple[str, ...], seeds: int, batch_sizes: list[int] | None, cv: int | None) -> None:
    """`compare`'s own settings (the config checks the rest), named as the caller wrote them."""
    if not strategies:
        raise InvalidSetting("strategies", "must name at least one strategy")
    for strategy in strategies:
        one_of("strategies", strategy, STRATEGIES)
    at_least("seeds", seeds, 1)
    at_least("cv", cv, 2)
    for size in batch_sizes or []:
        at_least("batch_sizes", size, 1)


def _compare_backbone(
    config: TrainConfig,
    strategies: tuple[Strategy, ...],
    seeds: int,
    sizes: list[int],
    grid: bool,
    evaluate: bool,
    *,
    dist: Dist,
    cv: int | None = None,
) -> Iterator[RunResult]:
    """Every strategy and batch size of one backbone on its prepared data, each run as it finishes."""
    prepared = prepare_data(config, dist)
    if cv and dist.main:
        cross_validate(config, prepared, cv, Path(config.out))
    for k in range(seeds):  # seeds outside, cells inside: an interruption leaves complete sets
        for batch in sizes:
            for strategy in strategies:
                seed = config.seed + k
                name = (f"{config.backbone}-{strategy}-b{batch}" if grid else strategy) + (
                    f"-seed{seed}" if seeds > 1 else ""
                )
                run_config = dataclasses.replace(
                    config,
                    strategy=strategy,
                    seed=seed,
                    name=name,
                    recipe=dataclasses.replace(config.recipe, batch_size=batch),
                )
                yield train_and_evaluate(run_config, prepared, dist, evaluate)


def cross_validate(config: TrainConfig, prepared, folds: int, out_dir: Path) -> dict:
    """K-fold cross-validation of the probe over every image (train and val) on centre-crop features: each image
    judged by a head that never saw it. Added to `cv.json` in the compare folder, one entry per backbone."""
    from transferlab.training.features import every_image_features
    from transferlab.training.probe import cross_val_probabilities

    x, y, paths = every_image_features(config, prepared)
    probabilities = cross_val_probabilities(x, y, len(prepared.dataset.classes), folds, config.seed)
    correct = (probabilities.argmax(1) == y).tolist()
    entry = {
        "folds": folds,
        "images": len(y),
        "accuracy": sum(correct) / len(y),
        "paths": [str(p) for p in paths],
        "correct": correct,
    }
    add_cross_validation(out_dir, config.backbone, entry)
    log.info(
        "cross-validated probe, %s: %.1f%% over %d images (%d folds)",
        config.backbone,
        100 * entry["accuracy"],
        len(y),
        folds,
    )
    return entry
