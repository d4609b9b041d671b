"""Which device a command runs on."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def resolve_device(name: str) -> torch.device:
    """ "auto" -> the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Mixed-precision context for forward passes on `device` (a no-op for float32: `dtype` None)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
