"""Checkpoints while training: the resume state (`last.pt`) and `CheckpointSaver`, which owns the best-so-far.

`CheckpointSaver` is what training calls after each epoch (as timm's does): it writes the metrics line, the best
weights and the resume state through the run-folder contract (`runs`), in an order that survives a kill at any
moment.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from transferlab import runs
from transferlab.errors import DamagedFile, first_line
from transferlab.runs import LAST_STATE, EpochRecord, ModelMeta, StageName
from transferlab.training.engine import EarlyStopping
from transferlab.utils.storage import write_atomically

if TYPE_CHECKING:
    from transferlab.utils.distributed import Dist


def rng_state(generator: torch.Generator) -> dict:
    """Every random generator training draws from: torch (CPU and CUDA), Python, NumPy, the shuffling generator."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached),
    }


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))


@dataclass(kw_only=True)
class Best:
    """The best epoch so far and its validation accuracy (`epoch` None: no epoch has finished)."""

    epoch: int | None = None
    acc: float = -1.0


@dataclass(kw_only=True)
class TrainingState:
    """last.pt read back (`load_training_state`): everything needed to continue after `epoch`."""

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict | None
    scheduler: dict | None
    scaler: dict | None
    rng: list[dict]  # one per process
    best: Best
    stage: str | None = None  # the stage whose optimizer is saved (None: written before stages had names)
    stopping: dict | None = None  # the early-stopping count, and why training stopped early ("stopped")

    @property
    def stopped_early(self) -> bool:
        return bool((self.stopping or {}).get("stopped"))

    def in_stage(self, name: str) -> bool:
        """Whether the saved optimizer and stopping count are `name`'s (a state from before stages had names: yes)."""
        return self.stage is None or self.stage == name


def save_training_state(
    run_dir: Path,
    epoch: int,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    rng_per_rank: list[dict],
    *,
    best: Best,
    scaler=None,
    stage: str = "",
    stopping: dict | None = None,
) -> None:
    """Everything needed to continue after `epoch`, written atomically (a kill leaves the previous one intact).

    `stage` names the training stage whose optimizer is saved (two-stage runs change optimizer midway);
    `stopping` is the early-stopping count, and why training stopped early, if it did."""
    state = {
        "epoch": epoch,
        "stage": stage,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_per_rank,
        "best": {"epoch": best.epoch, "acc": best.acc},
        "stopping": stopping,
    }
    write_atomically(run_dir / LAST_STATE, lambda tmp: torch.save(state, tmp))


def load_training_state(run_dir: Path) -> TrainingState:
    """The state saved by `save_training_state` (loaded with weights_only: no code runs from the file)."""
    path = Path(run_dir) / LAST_STATE
    remedy = "the run cannot be resumed from it; its best model is still usable (predict, evaluate, export)"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - torch's words for a cut-short or foreign file vary
        raise DamagedFile(path, f"cannot be read ({first_line(error)})", remedy) from None
    try:
        best = saved["best"]
        return TrainingState(
            epoch=saved["epoch"], model=saved["model"], optimizer=saved["optimizer"], scheduler=saved["scheduler"],
            scaler=saved.get("scaler"), rng=saved["rng"], best=Best(epoch=best["epoch"], acc=best["acc"]),
            stage=saved.get("stage"), stopping=saved.get("stopping"),
        )  # fmt: skip
    except (KeyError, TypeError, AttributeError):  # another shape: another version's, or not ours
        raise DamagedFile(path, "is of another shape", remedy) from None


class CheckpointSaver:
    """Owns best-so-far (as timm's CheckpointSaver does). Called after every epoch: appends the metrics line,
    writes the best weights when the epoch improved on them, then the resume state; returns a reason to stop early
    when the stage's patience has run out, or when another epoch like the last would end past `deadline`.

    Order matters for a Ctrl-C or kill at any point: metrics line, then best weights, then `best`, then the resume
    state; each file is replaced atomically, and `best` never names weights that were not written.
    """

    def __init__(
        self,
        run_dir: Path,
        model: torch.nn.Module,
        metadata: ModelMeta,
        dist: Dist,
        generator: torch.Generator,
        best: Best | None = None,
        *,
        records: list[EpochRecord] | None = None,
    ):
        self.run_dir, self.model, self.metadata, self.dist, self.generator = run_dir, model, metadata, dist, generator
        self.best = best or Best()
        self.records = list(records or [])
        self.stage, self.optimizer, self.scheduler, self.scaler = "", None, None, None
        self.stopping = EarlyStopping(None)
        self.deadline: float | None = None  # time.monotonic() by which training must end (`fit --budget`)

    def begin_stage(
        self, stage: StageName, *, optimizer=None, scheduler=None, scaler=None, patience: int | None = None
    ) -> None:
        """The optimizer, schedule and scaler the next epochs' resume state holds; patience counts from here."""
        self.stage, self.optimizer, self.scheduler, self.scaler = stage, optimizer, scheduler, scaler
        self.stopping = EarlyStopping(patience)

    def __call__(self, record: EpochRecord) -> str | None:
        improved = record.val_acc > self.best.acc
        rng = self.dist.gather(rng_state(self.generator))
        if self.dist.main:
            runs.append_metrics(self.run_dir, record.as_dict())
            if improved:
                best = dataclasses.replace(self.metadata, best_epoch=record.epoch, val_acc=record.val_acc)
                runs.save_checkpoint(self.run_dir, self.model, best)
        self.records.append(record)
        if improved:
            self.best = Best(epoch=record.epoch, acc=record.val_acc)
        stop = self.stopping.update(record.val_acc)
        if stop is None and self.deadline is not None and time.monotonic() + record.seconds > self.deadline:
            stop = "the time budget would run out during another epoch"
        if self.deadline is not None:
            stop = self.dist.broadcast(stop)  # each process's clock differs: rank 0 decides for all
        if self.dist.main:
            save_training_state(
                self.run_dir,
                record.epoch,
                self.model,
                self.optimizer,
                self.scheduler,
                rng,
                best=self.best,
                scaler=self.scaler,
                stage=self.stage,
                stopping={**self.stopping.state(), "stopped": stop},
            )
        self.dist.barrier()
        return stop
