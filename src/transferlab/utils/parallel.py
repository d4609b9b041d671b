"""Run a function over many files in worker processes, in order, with a progress bar.

torch's DataLoader is the process pool: it is already a dependency, handles worker start-up and shutdown, and
streams results in order. Results cross the process boundary by pickling (return numpy arrays, not tensors, so
no shared-memory handles pile up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
from tqdm.auto import tqdm

from transferlab.utils.machine import cpu_cores

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """One worker per CPU core this process may use, at most 8."""
    return max(1, min(cpu_cores(), 8))


class _Job(torch.utils.data.Dataset):
    def __init__(self, function: Callable, items: Sequence):
        self.function, self.items = function, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.function(self.items[index])


def _as_is(item):
    return item


def parallel_imap(
    function: Callable[[T], R], items: Sequence[T], workers: int | None = None, desc: str = "", quiet: bool = False
) -> Iterator[R]:
    """function(item) for each item, in order, computed by `workers` processes (default: one per core) and
    yielded as they arrive, so the caller need not hold them all."""
    workers = default_workers() if workers is None else workers
    if len(items) < 32:
        workers = 0  # starting processes costs more than a handful of files
    loader = torch.utils.data.DataLoader(
        _Job(function, items), batch_size=None, shuffle=False, num_workers=workers, collate_fn=_as_is
    )
    yield from tqdm(loader, total=len(items), desc=desc, unit="img", disable=quiet or not items, leave=False)


def parallel_map(
    function: Callable[[T], R], items: Sequence[T], workers: int | None = None, desc: str = "", quiet: bool = False
) -> list[R]:
    """[function(item) for item in items], computed by `workers` processes (default: one per core)."""
    return list(parallel_imap(function, items, workers, desc, quiet))
