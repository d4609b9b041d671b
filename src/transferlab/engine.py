"""The epoch loop: train, validate, time where the seconds go, and report each epoch to a callback.

`fit` knows nothing about files or strategies. It gets a module, the parameters to optimise, a function that
yields training batches for an epoch and one that yields validation batches. Each epoch's time is split into
waiting for data (producing the next batch: cropping, flipping, stacking, copying) and computing (forward,
backward, optimizer step), plus validation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from .cache import DecodedSplit
from .config import Recipe
from .presets import TrainPreset, normalize

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class SizedBatches:
    """A one-pass batch iterator that knows how many batches it will yield (for progress bars)."""

    def __init__(self, iterator: Iterator[tuple[torch.Tensor, torch.Tensor]], count: int):
        self.iterator, self.count = iterator, count

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterator

    def __len__(self) -> int:
        return self.count


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float  # the whole epoch: training and validation
    data_seconds: float  # training time spent waiting for the next batch
    compute_seconds: float  # training time spent in forward, backward and the optimizer step
    val_seconds: float
    train_samples: int = 0  # images trained on this epoch, over all processes
    val_samples: int = 0  # images validated this epoch, over all processes

    def as_dict(self) -> dict:
        return asdict(self)


def image_batches(split: DecodedSplit, spec, batch_size: int, device: torch.device, augment: bool,
                  order: list[int] | None = None) -> SizedBatches:
    """Batches of normalized images from decoded tensors, in `order` (default: all, in turn); augmented for
    training, centre crops as stored for evaluation."""
    order = torch.tensor(order if order is not None else range(len(split)), dtype=torch.long)
    return SizedBatches(_image_batches(split, spec, batch_size, device, augment, order), -(-len(order) // batch_size))


def _image_batches(split, spec, batch_size, device, augment, order):
    preset = TrainPreset(spec.input_size) if augment else None
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        pictures = [split.images[i] for i in index.tolist()]
        batch = torch.stack([preset(p) for p in pictures] if preset else pictures)
        batch = batch.to(device, non_blocking=True)
        yield normalize(batch, spec), split.labels[index].to(device, non_blocking=True)


def tensor_batches(features: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device,
                   order: list[int] | None = None) -> SizedBatches:
    """Batches of cached feature vectors, in `order` (default: all, in turn)."""
    order = torch.tensor(order if order is not None else range(len(labels)), dtype=torch.long)
    return SizedBatches(_tensor_batches(features, labels, batch_size, device, order), -(-len(order) // batch_size))


def _tensor_batches(features, labels, batch_size, device, order):
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield features[index].to(device, non_blocking=True), labels[index].to(device, non_blocking=True)


def resolve_device(name: str) -> torch.device:
    """"auto" -> the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(parameters: list[nn.Parameter], recipe: Recipe):
    """The recipe's optimizer and per-epoch learning-rate schedule."""
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(parameters, lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "adamw":
        optimizer = torch.optim.AdamW(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        raise ValueError(f"unknown optimizer '{recipe.optimizer}' (sgd or adamw)")
    if recipe.schedule == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    elif recipe.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(recipe.epochs, 1))
    else:
        raise ValueError(f"unknown schedule '{recipe.schedule}' (step or cosine)")
    return optimizer, scheduler


def _no_reduce(values: list[float]) -> list[float]:
    return values


def fit(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    train_batches: Callable[[int], Batches],
    val_batches: Callable[[], Batches],
    epochs: int,
    device: torch.device,
    on_epoch: Callable[[EpochRecord], None],
    quiet: bool = False,
    desc: str = "train",
    start_epoch: int = 1,
    reduce: Callable[[list[float]], list[float]] = _no_reduce,
    eval_module: nn.Module | None = None,
    label_smoothing: float = 0.0,
    patience: int | None = None,
) -> None:
    """Train `module` from `start_epoch` to `epochs`; call `on_epoch` after each epoch with its record.

    `reduce` sums per-process counts across processes (distributed training); `eval_module` is what validates
    (the unwrapped model under DistributedDataParallel, so ranks with different shares never wait on each other).
    With `patience`, training stops once validation accuracy has not improved for that many epochs.
    """
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    best_acc, since_best = -1.0, 0
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    bar = tqdm(range(start_epoch, epochs + 1), desc=desc, unit="epoch", disable=quiet, initial=start_epoch - 1,
               total=epochs)
    for epoch in bar:
        module.train()
        lr = optimizer.param_groups[0]["lr"]
        loss_sum, correct, seen = 0.0, 0, 0
        data_seconds = compute_seconds = 0.0
        epoch_start = tick = time.perf_counter()
        batches = train_batches(epoch)
        with _join_uneven(module):
            for inputs, targets in tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, disable=quiet):
                got_batch = time.perf_counter()
                data_seconds += got_batch - tick
                optimizer.zero_grad(set_to_none=True)
                logits = module(inputs)
                loss = criterion(logits, targets)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(targets)
                correct += (logits.argmax(1) == targets).sum().item()
                seen += len(targets)
                sync()
                tick = time.perf_counter()
                compute_seconds += tick - got_batch
        scheduler.step()
        val_start = time.perf_counter()
        val_sums = evaluate_sums(eval_module or module, val_batches())  # plain cross-entropy, comparable across recipes
        loss_sum, correct, seen, val_loss_sum, val_correct, val_seen = reduce(
            [loss_sum, correct, seen, *val_sums])
        now = time.perf_counter()
        record = EpochRecord(epoch, lr, loss_sum / max(seen, 1), correct / max(seen, 1),
                             val_loss_sum / max(val_seen, 1), val_correct / max(val_seen, 1),
                             now - epoch_start, data_seconds, compute_seconds, now - val_start,
                             int(seen), int(val_seen))
        bar.set_postfix(val_acc=f"{record.val_acc:.3f}", loss=f"{record.train_loss:.3f}")
        on_epoch(record)
        best_acc, since_best = (record.val_acc, 0) if record.val_acc > best_acc else (best_acc, since_best + 1)
        if patience is not None and since_best >= patience:
            bar.write(f"early stop: no better validation accuracy for {patience} epochs") if not quiet else None
            break


def _join_uneven(module: nn.Module):
    """Under DistributedDataParallel, let ranks with one batch fewer finish the epoch without a hang."""
    from contextlib import nullcontext

    from torch.nn.parallel import DistributedDataParallel

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
        logits = module(inputs)
        loss_sum += criterion(logits, targets).item() * len(targets)
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
    module.train(was_training)
    return [loss_sum, correct, seen]

