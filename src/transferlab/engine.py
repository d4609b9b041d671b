"""The epoch loop: train, validate, time where the seconds go, and report each epoch to a callback.

`fit` knows nothing about files or strategies. It gets a module, the parameters to optimise, a function that
yields training batches for an epoch and one that yields validation batches. Each epoch's time is split into
waiting for data (producing the next batch: cropping, flipping, stacking, copying) and computing (forward,
backward, optimizer step), plus validation.

On a GPU the same loop runs in mixed precision (`autocast_dtype`: bf16 where the GPU has it, else fp16 with a
gradient scaler), with batches made by loader processes into pinned memory and copied without blocking
(`ImageLoader`, settings from `loader_settings`).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from .cache import DecodedSplit
from .config import Recipe
from .parallel import cpu_cores
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
    stage: str = ""  # "head" (head on cached features) or "finetune" (whole network on pictures)

    def as_dict(self) -> dict:
        return asdict(self)


def loader_settings(device: torch.device, workers: int | None = None) -> dict:
    """DataLoader settings for training batches, chosen from the machine.

    On a GPU: one loader process per spare CPU core (at most 8), pinned memory, workers kept across epochs, so
    cropping runs beside the GPU and copies overlap compute. On the CPU: none of that; the network already uses
    every core, cropping decoded tensors is ~2% of an epoch there, and extra processes would compete for cores.
    """
    if workers is None:
        workers = min(8, max(1, cpu_cores() - 1)) if device.type == "cuda" else 0
    return {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": workers > 0}


class _Pictures(torch.utils.data.Dataset):
    def __init__(self, split: DecodedSplit, input_size: int, augment: bool):
        self.split, self.preset = split, TrainPreset(input_size) if augment else None

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        picture = self.split.images[index]
        return (self.preset(picture) if self.preset else picture), self.split.labels[index]


class _Order(torch.utils.data.Sampler):
    """Yields whatever order it was last given; lets one (persistent) DataLoader serve every epoch."""

    def __init__(self):
        self.order: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class ImageLoader:
    """Batches of normalized pictures from a decoded split, in the order given per epoch: augmented (random
    resized crop + flip) for training, the stored centre crops for evaluation."""

    def __init__(self, split: DecodedSplit, spec, batch_size: int, device: torch.device, augment: bool,
                 workers: int | None = None, seed: int = 0):
        self.spec, self.device, self.batch_size, self.order = spec, device, batch_size, _Order()
        settings = loader_settings(device, workers)
        self.loader = torch.utils.data.DataLoader(
            _Pictures(split, spec.input_size, augment), batch_size=batch_size, sampler=self.order,
            generator=torch.Generator().manual_seed(seed), **settings)

    def batches(self, order: list[int]) -> SizedBatches:
        self.order.order = list(order)
        return SizedBatches(self._batches(), -(-len(order) // self.batch_size))

    def _batches(self):
        for pictures, labels in self.loader:
            pictures = pictures.to(self.device, non_blocking=True)
            yield normalize(pictures, self.spec), labels.to(self.device, non_blocking=True)


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for forward passes (a no-op for float32)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def make_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def make_optimizer(parameters, recipe: Recipe, epochs: int | None = None):
    """The recipe's optimizer and per-epoch learning-rate schedule over `epochs` (default: the recipe's).

    `parameters` is a list of parameters or of parameter groups (dicts with their own "lr").
    """
    epochs = recipe.epochs if epochs is None else epochs
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
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
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
    precision: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    stage: str = "",
) -> None:
    """Train `module` from `start_epoch` to `epochs`; call `on_epoch` after each epoch with its record.

    `reduce` sums per-process counts across processes (distributed training); `eval_module` is what validates
    (the unwrapped model under DistributedDataParallel, so ranks with different shares never wait on each other).
    With `patience`, training stops once validation accuracy has not improved for that many epochs.
    `precision` is the autocast type (None = float32); `scaler` scales fp16 gradients.
    """
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    scaler = scaler if scaler is not None else torch.amp.GradScaler(device.type, enabled=False)
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
                with autocast(device, precision):
                    logits = module(inputs)
                    loss = criterion(logits, targets)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.item() * len(targets)
                correct += (logits.argmax(1) == targets).sum().item()
                seen += len(targets)
                sync()
                tick = time.perf_counter()
                compute_seconds += tick - got_batch
        scheduler.step()
        val_start = time.perf_counter()
        with autocast(device, precision):  # plain cross-entropy, comparable across recipes
            val_sums = evaluate_sums(eval_module if eval_module is not None else module, val_batches())
        loss_sum, correct, seen, val_loss_sum, val_correct, val_seen = reduce(
            [loss_sum, correct, seen, *val_sums])
        now = time.perf_counter()
        record = EpochRecord(epoch, lr, loss_sum / max(seen, 1), correct / max(seen, 1),
                             val_loss_sum / max(val_seen, 1), val_correct / max(val_seen, 1),
                             now - epoch_start, data_seconds, compute_seconds, now - val_start,
                             int(seen), int(val_seen), stage)
        bar.set_postfix(val_acc=f"{record.val_acc:.3f}", loss=f"{record.train_loss:.3f}")
        on_epoch(record)
        best_acc, since_best = (record.val_acc, 0) if record.val_acc > best_acc else (best_acc, since_best + 1)
        if patience is not None and since_best >= patience:
            bar.write(f"early stop: no better validation accuracy for {patience} epochs") if not quiet else None
            break


def _join_uneven(module: nn.Module):
    """Under DistributedDataParallel, let ranks with one batch fewer finish the epoch without a hang."""
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
        logits = module(inputs).float()
        loss_sum += criterion(logits, targets).item() * len(targets)
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
    module.train(was_training)
    return [loss_sum, correct, seen]

