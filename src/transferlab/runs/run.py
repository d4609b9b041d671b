"""One run folder: everything one training run leaves behind, written so an interruption loses nothing.

    <run>/config.json     the resolved configuration, dataset description, weights source, versions (`RunConfig`)
    <run>/metrics.jsonl   one JSON line per finished epoch (`EpochRecord`)
    <run>/model.safetensors + model.json   the best weights so far, and what is needed to use them
    <run>/summary.json    status (running / completed / interrupted), best epoch, timings (`RunSummary`)
    <run>/last.pt         the state to resume from after the last finished epoch

Every file is written atomically (temporary file + rename), but metrics.jsonl, which is appended a line per epoch
(a last line cut short by a kill is dropped when read: that epoch never finished). Weights are safetensors: loading
a run never unpickles anything.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file

from transferlab.config import Strategy, TrainConfig, to_dict, train_config_from_dict
from transferlab.errors import DamagedFile, RunNotFound, UsageError, first_line
from transferlab.utils.storage import read_json_object, save_json, write_atomically

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
CONFIG_REMEDY = "resume it with the version that wrote it, or train it again"
WEIGHTS_REMEDY = "the run's model is damaged; copy the run folder again from where it was trained, or train it again"
SUMMARY_REMEDY = "the run's summary is damaged; copy the run folder again, or train it again"
METRICS_REMEDY = "the run's epoch records are damaged; copy the run folder again, or train it again"


Status = Literal["running", "completed", "interrupted"]
StageName = Literal["head", "probe", "finetune", ""]  # "" in metrics written before stages had names


@dataclass(kw_only=True)
class EpochRecord:
    """One line of metrics.jsonl: a finished epoch (or a probe's one fit) of one training stage."""

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
    stage: StageName = ""  # "head" (head on cached features) or "finetune" (whole network on pictures)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(kw_only=True)
class RunSummary:
    """summary.json: what a run did and where its time went. Written by `write_summary`, read by `read_summary`."""

    status: Status
    strategy: Strategy
    backbone: str
    processes: int = 1
    train_images: int = 0
    val_images: int = 0
    skipped_files: int = 0
    decode_seconds: float = 0.0  # decoding every photo once
    feature_seconds: float = 0.0  # frozen-backbone features (computed or read from the store)
    photos_decoded: int = 0  # photos this run decoded (the rest were in the per-photo store)
    features_computed: int = 0  # feature vectors this run computed (the rest were read from the store)
    trainable_params: int = 0
    total_params: int = 0
    best_epoch: int | None = None
    best_val_acc: float | None = None
    precision: str = "float32"
    features_from_cache: bool | None = None  # None: the run used no cached features
    epochs_completed: int = 0
    fit_seconds: float = 0.0  # the epochs: training and validation
    total_seconds: float | None = None  # decode + features + epochs
    seconds_per_epoch: float | None = None
    data_seconds: float = 0.0  # training time spent waiting for batches
    compute_seconds: float = 0.0  # training time in forward, backward and the optimizer step
    val_seconds: float = 0.0
    data_share: float | None = None  # share of the whole run spent producing input rather than computing
    feature_compute_seconds: float = 0.0  # what computing the features took, also when read from the cache
    probe_C: float | None = None  # a probe head: the L2 strength cross-validation chose
    probe_cv_accuracy: float | None = None  # ... and its mean accuracy over the folds of the training images
    unknown_threshold: float | None = None  # predict answers "unknown" above it (see unknown.py)
    unknown_known_rejected: float | None = None  # share of known photos it turns away (cross-validated on val)
    unknown_seconds: float = 0.0  # fitting it (features of every photo with the best weights)

    @property
    def fresh_seconds(self) -> float | None:
        """The time a run of its own would take: as total_seconds, but with the features computed, not read."""
        if self.total_seconds is None:
            return None
        return self.total_seconds - self.feature_seconds + max(self.feature_compute_seconds, self.feature_seconds)

    def add_features(self, features) -> None:
        """Count a stage's frozen features (`features.FeatureCache`): seconds spent, seconds computing them cost,
        whether they came from the cache."""
        self.feature_seconds += features.seconds
        self.feature_compute_seconds += features.compute_seconds
        self.features_from_cache = features.from_cache
        self.features_computed += features.computed

    def add_timings(self, records: list[EpochRecord], fit_seconds: float) -> None:
        """Fill in the timing fields from the epochs' records and the seconds spent in them."""
        self.epochs_completed = len(records)
        self.fit_seconds = fit_seconds
        self.total_seconds = self.decode_seconds + self.feature_seconds + fit_seconds
        self.seconds_per_epoch = fit_seconds / len(records) if records else None
        self.data_seconds = sum(r.data_seconds for r in records)
        self.compute_seconds = sum(r.compute_seconds for r in records)
        self.val_seconds = sum(r.val_seconds for r in records)
        total = self.total_seconds
        self.data_share = (self.decode_seconds + self.data_seconds) / total if total else None


def write_summary(run_dir: Path, summary: RunSummary) -> None:
    save_json(dataclasses.asdict(summary), Path(run_dir) / SUMMARY_FILE)


def read_summary(run_dir: str | Path) -> RunSummary:
    """summary.json; keys written by another version are ignored, a damaged file is a `DamagedFile`."""
    path = Path(run_dir) / SUMMARY_FILE
    data = read_json_object(path, SUMMARY_REMEDY)
    known = {f.name for f in dataclasses.fields(RunSummary)}
    try:
        return RunSummary(**{k: v for k, v in data.items() if k in known})
    except TypeError:  # a field it must have is missing
        raise DamagedFile(path, "is damaged (a field is missing)", SUMMARY_REMEDY) from None


@dataclass(kw_only=True)
class Resolved:
    """What a run found when it started (config.json's "resolved"): where the photos were, what was in them, the
    weights and versions, what was skipped."""

    device: str = ""
    processes: int = 1
    classes: list[str] = field(default_factory=list)
    data_root: str = ""  # absolute
    layout: str = ""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> photos
    weights: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    skipped_files: list[list[str]] = field(default_factory=list)  # [path, why]
    duplicate_problems: list[list[str]] = field(default_factory=list)  # [path, path, finding kind]


@dataclass(kw_only=True)
class RunConfig:
    """config.json: the run's settings (a `TrainConfig`) and what it found (`Resolved`). Written by
    `write_run_config`, read by `read_run_config`."""

    config: TrainConfig
    resolved: Resolved

    @property
    def data_root(self) -> Path:
        """The photo folder the run was trained on: absolute where the run recorded it, else as it was written."""
        return Path(self.resolved.data_root or self.config.data.root).expanduser()


def write_run_config(run_dir: Path, config: TrainConfig, resolved: Resolved) -> None:
    save_json({**to_dict(config), "resolved": asdict(resolved)}, Path(run_dir) / CONFIG_FILE)


def read_run_config(run_dir: str | Path) -> RunConfig:
    """config.json; a setting this version does not know, or a damaged file, is a `DamagedFile` naming it."""
    path = Path(run_dir) / CONFIG_FILE
    saved = read_json_object(path, CONFIG_REMEDY)
    resolved = saved.pop("resolved", None) or {}
    try:
        config = train_config_from_dict(saved)
        known = {f.name for f in dataclasses.fields(Resolved)}
        return RunConfig(config=config, resolved=Resolved(**{k: v for k, v in resolved.items() if k in known}))
    except (UsageError, TypeError, KeyError, AttributeError, ValueError) as error:  # another version's, or damaged
        problem = f"cannot be read by this version of transferlab ({first_line(error)})"
        raise DamagedFile(path, problem, CONFIG_REMEDY) from None


def read_model_backbone(run_dir: str | Path) -> str | None:
    """The backbone model.json says the saved weights are (None when no weights are saved yet)."""
    path = Path(run_dir) / META_FILE
    if not path.exists():
        return None
    backbone = read_json_object(path, WEIGHTS_REMEDY).get("backbone")
    return backbone if isinstance(backbone, str) else None


def new_run_dir(out: str | Path, name: str | None, default_name: str) -> Path:
    """Create a fresh run folder under `out` (adding -2, -3, ... if the name is taken)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = name or f"{default_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = out / base, 1
    while True:  # mkdir either creates the folder or fails: two commands in the same second never share one
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = out / f"{base}-{n}"


def torchvision_version() -> str:
    """torchvision's `__version__`, read from its version.py where it is not imported yet: importing torchvision
    imports torch's compiler too (about 3 s), which a probe command otherwise never needs."""
    if "torchvision" not in sys.modules:
        spec = importlib.util.find_spec("torchvision")
        try:
            text = (Path(spec.origin).parent / "version.py").read_text()  # type: ignore[union-attr, arg-type]
            found = re.search(r"^__version__ = ['\"]([^'\"]+)['\"]", text, re.MULTILINE)
            if found:
                return found.group(1)
        except (OSError, TypeError, AttributeError):
            pass
    import torchvision

    return str(torchvision.__version__)


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision_version(),
        "transferlab": _own_version(),
    }


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
    """Every finished epoch's line; a last line cut short (killed while appending) is dropped, a damaged one before
    it is a `DamagedFile`."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DamagedFile(path, "is damaged (not text)", METRICS_REMEDY) from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break  # the line being written when the run was killed: that epoch never finished
            raise DamagedFile(path, f"is damaged (line {number} is not JSON)", METRICS_REMEDY) from None
        if not isinstance(record, dict):
            raise DamagedFile(path, f"is damaged (line {number} is not a record)", METRICS_REMEDY)
        records.append(record)
    return records


@dataclass(kw_only=True)
class ModelMeta:
    """model.json: what the saved weights are (backbone, classes, strategy), how to feed them, and the epoch they
    come from. Written with the weights by `save_checkpoint`, read by `load_checkpoint`."""

    backbone: str
    classes: list[str]
    strategy: Strategy
    input_size: int | None = None
    resize_size: int | None = None
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    background: list[int] = field(default_factory=lambda: [255, 255, 255])  # transparency composited onto it
    weights: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    revision: int = 0  # how its features are computed (ensembles; written only when not 0)
    best_epoch: int | None = None
    val_acc: float | None = None


def save_checkpoint(run_dir: Path, model: torch.nn.Module, meta: ModelMeta) -> None:
    """Write the weights (safetensors) and their metadata (JSON), each atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    about = {"backbone": meta.backbone, "classes": json.dumps(meta.classes)}
    write_atomically(run_dir / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata=about))
    saved = {k: v for k, v in asdict(meta).items() if v is not None and (k != "revision" or v)}
    save_json(saved, run_dir / META_FILE)


def load_checkpoint(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], ModelMeta]:
    run_dir = Path(run_dir)
    weights, meta = run_dir / WEIGHTS_FILE, run_dir / META_FILE
    if not weights.exists() or not meta.exists():
        raise RunNotFound(
            f"{run_dir}: no saved model ({WEIGHTS_FILE} and {META_FILE}); "
            "was the run stopped before its first epoch ended?"
        )
    try:
        state = load_file(weights)
    except Exception as error:  # noqa: BLE001 - safetensors says "invalid header", "incomplete", ... in its words
        raise DamagedFile(weights, f"cannot be read ({first_line(error)})", WEIGHTS_REMEDY) from None
    data = read_json_object(meta, WEIGHTS_REMEDY)
    known = {f.name for f in dataclasses.fields(ModelMeta)}
    try:
        return state, ModelMeta(**{k: v for k, v in data.items() if k in known})
    except TypeError:  # a field it must have is missing
        raise DamagedFile(meta, "is damaged (a field is missing)", WEIGHTS_REMEDY) from None


LAST_STATE = "last.pt"  # the resume state, written by `training.checkpoint`


def truncate_metrics(run_dir: Path, epochs: int) -> None:
    """Keep the first `epochs` lines of metrics.jsonl (a kill may have left a line past the saved state)."""
    text = "".join(json.dumps(r) + "\n" for r in read_metrics(run_dir)[:epochs])
    write_atomically(run_dir / "metrics.jsonl", lambda tmp: tmp.write_text(text))
