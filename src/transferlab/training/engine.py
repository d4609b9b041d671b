"""The epoch loop: train, validate, time where the seconds go, and report each epoch to a callback.

`fit` knows nothing about files or strategies. It gets a module, a `TrainStep` (optimizer, schedule, loss,
precision), the stage's inputs (`loaders.StageInputs`: training batches per epoch, validation batches) and the
epochs to run; after each epoch it hands an `EpochRecord` to a callback, which may answer with a reason to stop
(`EarlyStopping`). Each epoch's time is split into waiting for data (producing the next batch: cropping, flipping,
stacking, copying) and computing (forward, backward, optimizer step), plus validation.

On a GPU the same loop runs in mixed precision (`autocast_dtype`: bf16 where the GPU has it, else fp16 with a
gradient scaler); the loaders make batches in pinned memory beside it.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from transferlab.config import Recipe
from transferlab.data.loaders import Batches, StageInputs
from transferlab.errors import UsageError
from transferlab.runs import EpochRecord, StageName
from transferlab.utils.device import autocast
from transferlab.utils.progress import report


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision type for `precision` on `device`; None = full float32.

    "auto" means bf16 on GPUs that support it, fp16 on older GPUs, and float32 on the CPU (where bf16 autocast is
    slower than float32 on most processors, and much slower on these cores).
    """
    if precision == "off" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def make_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def make_optimizer(parameters, recipe: Recipe, epochs: int | None = None):
    """The recipe's optimizer and per-epoch learning-rate schedule over `epochs` (default: the recipe's).

    `parameters` is a list of parameters or of parameter groups (dicts with their own "lr").
    """
    epochs = recipe.epochs if epochs is None else epochs
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            parameters, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    elif recipe.optimizer == "adamw":
        optimizer = torch.optim.AdamW(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        raise UsageError(f"unknown optimizer '{recipe.optimizer}' (sgd or adamw)")
    if recipe.schedule == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    elif recipe.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    else:
        raise UsageError(f"unknown schedule '{recipe.schedule}' (step or cosine)")
    return optimizer, scheduler


@dataclass(kw_only=True)
class TrainStep:
    """What one optimisation step uses: the optimizer and its per-epoch schedule, the loss, and the precision
    (autocast type, None = float32) with its gradient scaler (fp16 only)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    precision: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None


class EarlyStopping:
    """Counts epochs without a better validation accuracy; `update` returns the reason to stop once `patience`
    epochs in a row brought nothing (never, with `patience` None)."""

    def __init__(self, patience: int | None):
        self.patience, self.best, self.since_best = patience, -1.0, 0

    def state(self) -> dict:
        return {"best": self.best, "since_best": self.since_best}

    def load(self, state: dict) -> None:
        self.best, self.since_best = state["best"], state["since_best"]

    def update(self, val_acc: float) -> str | None:
        self.best, self.since_best = (val_acc, 0) if val_acc > self.best else (self.best, self.since_best + 1)
        if self.patience is not None and self.since_best >= self.patience:
            return f"no better validation accuracy for {self.patience} epochs"
        return None


def _no_reduce(values: list[float]) -> list[float]:
    return values


def train_epochs(
    module: nn.Module,
    step: TrainStep,
    inputs: StageInputs,
    epochs: range,
    device: torch.device,
    on_epoch: Callable[[EpochRecord], str | None],
    *,
    eval_module: nn.Module | None = None,
    reduce: Callable[[list[float]], list[float]] = _no_reduce,
    desc: str = "train",
    quiet: bool = False,
    stage: StageName = "",
) -> None:
    """Train `module` for `epochs` (numbered over the whole run, e.g. range(4, 11) when resuming after epoch 3);
    call `on_epoch` after each epoch with its record. `on_epoch` returns a reason to stop early, or None.

    `reduce` sums per-process counts across processes (distributed training); `eval_module` is what validates
    (the unwrapped model under DistributedDataParallel, so ranks with different shares never wait on each other).
    """
    bar = tqdm(epochs, desc=desc, unit="epoch", disable=quiet, initial=epochs.start - 1, total=epochs.stop - 1)
    for epoch in bar:
        report("training", stage or desc, epoch - 1, epochs.stop - 1)
        lr = step.optimizer.param_groups[0]["lr"]
        epoch_start = time.perf_counter()
        train_sums, data_seconds, compute_seconds = train_one_epoch(
            module, step, inputs.train_batches(epoch), device, f"epoch {epoch}", quiet
        )
        step.scheduler.step()
        val_start = time.perf_counter()
        with autocast(device, step.precision):  # plain cross-entropy, comparable across recipes
            val_sums = evaluate_sums(eval_module if eval_module is not None else module, inputs.val_batches())
        loss_sum, correct, seen, val_loss_sum, val_correct, val_seen = reduce([*train_sums, *val_sums])
        now = time.perf_counter()
        record = EpochRecord(
            epoch=epoch,
            lr=lr,
            train_loss=loss_sum / max(seen, 1),
            train_acc=correct / max(seen, 1),
            val_loss=val_loss_sum / max(val_seen, 1),
            val_acc=val_correct / max(val_seen, 1),
            seconds=now - epoch_start,
            data_seconds=data_seconds,
            compute_seconds=compute_seconds,
            val_seconds=now - val_start,
            train_samples=int(seen),
            val_samples=int(val_seen),
            stage=stage,
        )
        bar.set_postfix(val_acc=f"{record.val_acc:.3f}", loss=f"{record.train_loss:.3f}")
        stop = on_epoch(record)
        if stop:
            bar.write(f"early stop: {stop}") if not quiet else None
            break


def train_one_epoch(
    module: nn.Module, step: TrainStep, batches: Batches, device: torch.device, desc: str = "epoch", quiet: bool = False
) -> tuple[list[float], float, float]:
    """One pass over `batches`: ([summed loss, correct, images], seconds waiting for data, seconds computing)."""
    module.train()
    scaler = step.scaler if step.scaler is not None else torch.amp.GradScaler(device.type, enabled=False)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    loss_sum, correct, seen = 0.0, 0, 0
    data_seconds = compute_seconds = 0.0
    tick = time.perf_counter()
    with _join_uneven(module):
        for inputs, targets in tqdm(batches, desc=desc, unit="batch", leave=False, disable=quiet):
            got_batch = time.perf_counter()
            data_seconds += got_batch - tick
            step.optimizer.zero_grad(set_to_none=True)
            with autocast(device, step.precision):
                logits = module(inputs)
                loss = step.criterion(logits, targets)
            scaler.scale(loss).backward()
            scaler.step(step.optimizer)
            scaler.update()
            loss_sum += loss.item() * len(targets)
            correct += (logits.argmax(1) == targets).sum().item()
            seen += len(targets)
            sync()
            tick = time.perf_counter()
            compute_seconds += tick - got_batch
    return [loss_sum, correct, seen], data_seconds, compute_seconds


def _join_uneven(module: nn.Module):
    """Under DistributedDataParallel, let ranks with one batch fewer finish the epoch without a hang."""
    from torch.nn.parallel import DistributedDataParallel

    module = getattr(module, "_orig_mod", module)  # torch.compile wraps the DDP module: Join needs the DDP inside
    if isinstance(module, DistributedDataParallel):
        from torch.distributed.algorithms.join import Join

        return Join([module])
    return nullcontext()


@torch.inference_mode()
def evaluate_sums(module: nn.Module, batches: Batches, criterion: nn.Module | None = None) -> list[float]:
    """[summed loss, correct predictions, images] of `module` (in eval mode) over `batches`."""
    criterion = criterion or nn.CrossEntropyLoss()
    was_training = module.training
    module.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for inputs, targets in batches:
        logits = module(inputs).float()
        loss_sum += criterion(logits, targets).item() * len(targets)
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
    module.train(was_training)
    return [loss_sum, correct, seen]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed every generator; with `deterministic`, also forbid non-deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(deterministic, warn_only=False)  # also sets the compiler's flag
    else:  # the same switch for the kernels, without importing the compiler to set its flag (about 3 s of start-up)
        torch.set_deterministic_debug_mode("default")
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
