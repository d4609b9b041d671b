"""The run directory: everything one training run leaves behind, written so an interruption loses nothing.

    <run>/config.json     the resolved configuration, dataset description, weights source, versions
    <run>/metrics.jsonl   one JSON line per finished epoch
    <run>/model.safetensors + model.json   the best weights so far, and what is needed to use them
    <run>/summary.json    status (running / completed / interrupted), best epoch, timings, skipped files

Every file is written atomically (temporary file + rename). Weights are safetensors: loading a run never
unpickles anything.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import save_json

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def new_run_dir(out: str | Path, name: str | None, default_name: str) -> Path:
    """Create a fresh run folder under `out` (adding -2, -3, ... if the name is taken)."""
    out = Path(out)
    base = name or f"{default_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = out / base, 1
    while path.exists():
        n += 1
        path = out / f"{base}-{n}"
    path.mkdir(parents=True)
    return path


def versions() -> dict[str, str]:
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "transferlab": _own_version()}


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transferlab")
    except PackageNotFoundError:
        return "unknown"


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_checkpoint(run_dir: Path, model: torch.nn.Module, metadata: dict) -> None:
    """Write the weights (safetensors) and their metadata (JSON), each atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = run_dir / (WEIGHTS_FILE + ".tmp")
    save_file(state, tmp, metadata={"backbone": metadata["backbone"], "classes": json.dumps(metadata["classes"])})
    tmp.replace(run_dir / WEIGHTS_FILE)
    save_json(metadata, run_dir / META_FILE)


def load_checkpoint(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    run_dir = Path(run_dir)
    weights, meta = run_dir / WEIGHTS_FILE, run_dir / META_FILE
    if not weights.exists() or not meta.exists():
        raise FileNotFoundError(f"{run_dir}: no saved model ({WEIGHTS_FILE} and {META_FILE}); "
                                "was the run stopped before its first epoch ended?")
    return load_file(weights), json.loads(meta.read_text())


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


# --- resuming ---------------------------------------------------------------------------------------------

LAST_STATE = "last.pt"


def rng_state(generator: torch.Generator) -> dict:
    """Every random generator training draws from: torch (CPU and CUDA), Python, NumPy, the shuffling generator."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "generator": generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached)}


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


def save_training_state(run_dir: Path, epoch: int, model: torch.nn.Module, optimizer, scheduler,
                        rng_per_rank: list[dict], best: dict, scaler=None, stage: str = "") -> None:
    """Everything needed to continue after `epoch`, written atomically (a kill leaves the previous one intact).

    `stage` names the training stage whose optimizer is saved (two-stage runs change optimizer midway)."""
    state = {"epoch": epoch, "stage": stage, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
             "rng": rng_per_rank, "best": dict(best)}
    tmp = run_dir / (LAST_STATE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(run_dir / LAST_STATE)


def load_training_state(run_dir: Path) -> dict:
    """The state saved by `save_training_state` (loaded with weights_only: no code runs from the file)."""
    return torch.load(Path(run_dir) / LAST_STATE, map_location="cpu", weights_only=True)


def truncate_metrics(run_dir: Path, epochs: int) -> None:
    """Keep the first `epochs` lines of metrics.jsonl (a kill may have left a line past the saved state)."""
    kept = read_metrics(run_dir)[:epochs]
    tmp = run_dir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(run_dir / "metrics.jsonl")
