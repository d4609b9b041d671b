"""Which device a command runs on."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """ "auto" -> the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
