"""Distributed set-up kept in one place: `torchrun --nproc-per-node N -m transferlab train ...` just works.

`setup(device)` reads torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK) and starts PyTorch's own process
group (nccl on GPU, gloo on CPU); without torchrun it returns a single-process `Dist` and nothing else changes.
Work is split with `shard` (rank r takes items r, r+N, r+2N, ...: every item exactly once), and results are put
back together with `gather` or summed with `reduce_sums`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass(kw_only=True, frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, count: int) -> list[int]:
        """This rank's share of `count` items: every item exactly once across ranks, no padding."""
        return list(range(self.rank, count, self.world))

    def reduce_sums(self, values: list[float]) -> list[float]:
        """Sum each value over all ranks."""
        if not self.enabled:
            return values
        device = self.device if torch_dist.get_backend() == "nccl" else torch.device("cpu")
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world
        torch_dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()


def is_main_process() -> bool:
    """Whether this process is the one that reports: rank 0 under torchrun, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def setup(device: torch.device) -> Dist:
    """Join torchrun's process group when launched by torchrun; otherwise a single process on `device`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(rank=0, world=1, local_rank=0, device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device)
