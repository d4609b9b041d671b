"""Compare strategies on the same data: the Python API behind `transferlab compare`.

The photos are prepared once (`prepare.prepare_data`) and every strategy trains on the same split, decoded pictures
and recipe, `seeds` times each; every run is evaluated, then the report is written (`report.write_report`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig, to_dict
from .distributed import setup as setup_distributed
from .engine import resolve_device
from .prepare import prepare_data
from .runs import new_run_dir
from .storage import save_json
from .training import RunResult, TrainingInterrupted, train


@dataclass
class Comparison:
    out_dir: Path
    results: list[RunResult]
    report: Path
    interrupted: bool = False


def compare(config: TrainConfig, strategies: tuple[str, ...] = ("finetune", "extract"), seeds: int = 1,
            evaluate: bool = True) -> Comparison:
    """Train every strategy on the same split, decoded pictures and recipe, `seeds` times each (training seeds
    config.seed, config.seed + 1, ...); evaluate every run; then write the report.

    Each run gets its own folder inside one compare folder. Ctrl-C stops the comparison, keeps every finished
    run and the interrupted run's best checkpoint, and still writes the report.
    """
    from .evaluate import evaluate_decoded
    from .report import write_report

    if seeds < 1:
        raise ValueError("--seeds must be at least 1")
    dist = setup_distributed(resolve_device(config.device))
    out_dir = Path(dist.broadcast(str(new_run_dir(config.out, config.name, f"compare-{config.backbone}"))
                                  if dist.main else None))
    if dist.main:
        save_json({"strategies": list(strategies), "seeds": seeds, "config": to_dict(config)},
                  out_dir / "compare.json")
    prepared = prepare_data(config, dist)
    results, interrupted = [], False
    for k in range(seeds):  # seeds outside, strategies inside: an interruption leaves complete pairs
        for strategy in strategies:
            seed = config.seed + k
            name = strategy if seeds == 1 else f"{strategy}-seed{seed}"
            run_config = dataclasses.replace(config, strategy=strategy, seed=seed, out=str(out_dir), name=name)
            try:
                result = train(run_config, prepared)
            except TrainingInterrupted as stop:
                results.append(stop.result)
                interrupted = True
                break
            results.append(result)
            if evaluate and dist.main:
                evaluate_decoded(result.run_dir, prepared.val, config.device)
        if interrupted:
            break
    report = write_report(out_dir) if dist.main else out_dir / "report.md"
    dist.barrier()
    return Comparison(out_dir, results, report, interrupted)
