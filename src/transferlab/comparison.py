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
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .backbones import resolve_backbone
from .config import TrainConfig, to_dict
from .distributed import setup as setup_distributed
from .engine import resolve_device
from .data import check_out_folder, load_dataset
from .errors import RunNotFound, UsageError, WeightsUnavailable
from .prepare import prepare_data
from .runs import new_run_dir
from .storage import read_json, save_json
from .model import check_weights
from .training import RunResult, TrainingInterrupted, train

log = logging.getLogger("transferlab")


@dataclass
class Comparison:
    out_dir: Path
    results: list[RunResult]
    report: Path
    interrupted: bool = False
    skipped_backbones: dict[str, str] = field(default_factory=dict)  # backbone -> why it was left out


def usable_backbones(names: list[str], weights: str | None) -> tuple[list[str], dict[str, str]]:
    """The backbones whose ImageNet weights can be had (resolving "auto"), and a one-line reason for the others."""
    usable, skipped = [], {}
    for name in names:
        resolved, why = resolve_backbone(name, weights)
        if why:
            log.info("%s", why)
        try:
            check_weights(resolved, weights)
        except WeightsUnavailable as error:
            skipped[resolved] = str(error).split(". ")[0]
            log.warning("skipping %s: %s", resolved, skipped[resolved])
            continue
        if resolved not in usable:
            usable.append(resolved)
    return usable, skipped


def compare(config: TrainConfig, strategies: tuple[str, ...] = ("finetune", "extract"), seeds: int = 1,
            evaluate: bool = True, backbones: list[str] | None = None,
            batch_sizes: list[int] | None = None, cv: int | None = None) -> Comparison:
    """Train every cell (backbone x strategy x batch size) on the same split, `seeds` times each (training seeds
    config.seed, config.seed + 1, ...); evaluate every run; then write the report and the recommendation. With
    `cv` K, also cross-validate the probe (extract's head) over every image of each backbone, K folds.

    Each run gets its own folder inside one compare folder. Ctrl-C stops the comparison, keeps every finished
    run and the interrupted run's best checkpoint, and still writes the report.
    """
    if seeds < 1:
        raise UsageError("--seeds must be at least 1")
    data = config.data
    load_dataset(data.root, data.val_fraction, data.split_seed, data.max_per_class)  # a bad folder: no run folder
    check_out_folder(config.out, data.root)
    names, sizes = backbones or [config.backbone], batch_sizes or [config.recipe.batch_size]
    usable, skipped = usable_backbones(names, config.weights)
    if not usable:
        raise WeightsUnavailable("no backbone to compare: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    dist = setup_distributed(resolve_device(config.device))
    tag = usable[0] if len(usable) == 1 else f"{len(usable)}backbones"
    out_dir = Path(dist.broadcast(str(new_run_dir(config.out, config.name, f"compare-{tag}")) if dist.main else None))
    if dist.main:
        save_json({"strategies": list(strategies), "seeds": seeds, "backbones": usable, "batch_sizes": sizes,
                   "skipped_backbones": skipped, "config": to_dict(config)}, out_dir / "compare.json")
    grid = len(usable) > 1 or len(sizes) > 1
    results, interrupted = [], False
    try:
        for backbone in usable:
            base = dataclasses.replace(config, backbone=backbone, out=str(out_dir))
            interrupted = _compare_backbone(base, strategies, seeds, sizes, grid, evaluate, dist, results, cv)
            if interrupted:
                break
    except KeyboardInterrupt:  # while decoding, computing features or evaluating: keep what finished
        interrupted = True
    except BaseException:
        abandon(out_dir, dist)  # a failed start leaves no folder behind (finished runs are kept)
        raise
    if not _has_runs(out_dir):
        abandon(out_dir, dist)
        raise KeyboardInterrupt if interrupted else RunNotFound(f"no run of {out_dir.name} started")
    report = _write_report(out_dir, dist)
    return Comparison(out_dir, results, report, interrupted, skipped)


def abandon(out_dir: Path, dist) -> None:
    """Remove a compare folder in which no run has started (only its compare.json and caches' leftovers)."""
    if dist.main and out_dir.is_dir() and not _has_runs(out_dir):
        shutil.rmtree(out_dir, ignore_errors=True)


def _has_runs(out_dir: Path) -> bool:
    return any((p / "summary.json").exists() for p in out_dir.iterdir())


def _compare_backbone(config: TrainConfig, strategies: tuple[str, ...], seeds: int, sizes: list[int], grid: bool,
                      evaluate: bool, dist, results: list[RunResult], cv: int | None = None) -> bool:
    """Every strategy and batch size of one backbone on its prepared data; True when interrupted."""
    from .evaluate import evaluate_decoded

    prepared = prepare_data(config, dist)
    if cv and dist.main:
        cross_validate(config, prepared, cv, Path(config.out))
    for k in range(seeds):  # seeds outside, cells inside: an interruption leaves complete sets
        for batch in sizes:
            for strategy in strategies:
                seed = config.seed + k
                name = (f"{config.backbone}-{strategy}-b{batch}" if grid else strategy) + \
                    (f"-seed{seed}" if seeds > 1 else "")
                run_config = dataclasses.replace(config, strategy=strategy, seed=seed, name=name,
                                                 recipe=dataclasses.replace(config.recipe, batch_size=batch))
                try:
                    result = train(run_config, prepared)
                except TrainingInterrupted as stop:
                    results.append(stop.result)
                    return True
                results.append(result)
                if evaluate and dist.main:
                    evaluate_decoded(result.run_dir, prepared.val, config.device)
    return False


def _write_report(out_dir: Path, dist) -> Path:
    from .report import write_report

    report = write_report(out_dir) if dist.main else out_dir / "report.md"
    dist.barrier()
    return report


def cross_validate(config: TrainConfig, prepared, folds: int, out_dir: Path) -> dict:
    """K-fold cross-validation of the probe over every image (train and val) on centre-crop features: each image
    judged by a head that never saw it. Added to `cv.json` in the compare folder, one entry per backbone."""
    from .features import every_image_features
    from .probe import cross_val_probabilities

    x, y, paths = every_image_features(config, prepared)
    probabilities = cross_val_probabilities(x, y, len(prepared.dataset.classes), folds, config.seed)
    correct = (probabilities.argmax(1) == y).tolist()
    entry = {"folds": folds, "images": len(y), "accuracy": sum(correct) / len(y),
             "paths": [str(p) for p in paths], "correct": correct}
    path = out_dir / "cv.json"
    saved = read_json(path) if path.exists() else {}
    save_json({**saved, config.backbone: entry}, path)
    log.info("cross-validated probe, %s: %.1f%% over %d images (%d folds)", config.backbone,
             100 * entry["accuracy"], len(y), folds)
    return entry
