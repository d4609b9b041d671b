"""Configuration as plain dataclasses: what to train on, with what, and how (saved as JSON with every run by
`runs`). Imports nothing heavy: the command line builds these before any library loads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError

STRATEGIES = ("finetune", "extract", "two-stage")
PRECISIONS = ("auto", "off", "bf16", "fp16")
HEAD_SOLVERS = ("sgd", "probe")
PROBE_FEATURES = ("centre", "views", "both")


@dataclass
class Recipe:
    """Optimisation schedule. The default is the reference project's (PyTorch transfer-learning tutorial) recipe."""

    name: str = "reference"
    epochs: int = 25
    batch_size: int = 32
    optimizer: str = "sgd"  # "sgd" (with momentum) or "adamw"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "step"  # "step" (StepLR) or "cosine" (cosine annealing to zero over `epochs`)
    step_size: int = 7  # StepLR: multiply the learning rate by `gamma` every `step_size` epochs
    gamma: float = 0.1
    label_smoothing: float = 0.0
    patience: int | None = None  # early stopping: stop after this many epochs without a better val accuracy
    # two-stage only: `head_epochs` epochs of the head on cached features first, then `epochs` epochs of the
    # whole network with the backbone's learning rate scaled by `backbone_lr_scale` (the head keeps `lr`)
    head_epochs: int = 5
    backbone_lr_scale: float = 0.1
    # extract, and two-stage's first stage: "sgd" trains the head by epochs with the optimizer above; "probe" fits
    # it in one go (L2 logistic regression, strength chosen by cross-validation on the training images; `probe`)
    # on the frozen features of `probe_features`: "centre" (centre crops), "views" (`--views` augmented views) or
    # "both"
    head_solver: str = "sgd"
    probe_features: str = "centre"

    def __post_init__(self) -> None:
        for name, least in (("epochs", 0), ("batch_size", 1), ("head_epochs", 0), ("step_size", 1)):
            if getattr(self, name) < least:
                raise UsageError(f"--{name.replace('_', '-')} must be at least {least}, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be more than 0, got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise UsageError(f"patience must be at least 1 epoch, got {self.patience}")
        if self.head_solver not in HEAD_SOLVERS:
            raise UsageError(f"unknown head solver '{self.head_solver}'; choose one of {', '.join(HEAD_SOLVERS)}")
        if self.probe_features not in PROBE_FEATURES:
            raise UsageError(f"unknown probe features '{self.probe_features}'; "
                             f"choose one of {', '.join(PROBE_FEATURES)}")


RECIPES: dict[str, Recipe] = {
    "reference": Recipe(),
    # Aims at the reference recipe's accuracy in far less time: a few epochs of AdamW with a cosine schedule,
    # label smoothing, and early stopping once validation accuracy stops improving; the head of a frozen backbone
    # (extract, and two-stage's first stage) fitted as a cross-validated linear probe on centre-crop features.
    "fast": Recipe(name="fast", epochs=8, optimizer="adamw", lr=0.001, weight_decay=0.05, schedule="cosine",
                   label_smoothing=0.1, patience=3, head_epochs=5, backbone_lr_scale=0.1, head_solver="probe",
                   probe_features="centre"),
}
DEFAULT_RECIPE = "fast"  # measured by benchmarks/extract_protocol.py (README: "Recipes and strategies")


@dataclass
class DataConfig:
    root: str
    val_fraction: float = 0.2  # used only when the folder has no train/ and val/ sub-folders
    split_seed: int = 0  # seeds that split; kept apart from the training seed so every run sees the same split
    max_per_class: int | None = None  # keep at most this many images per class and split (quick trials)
    background: tuple[int, int, int] = (255, 255, 255)  # transparent pixels are composited onto this colour
    train_side: int | None = None  # training pictures keep at most this short side; None = 2x the input size

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise UsageError(f"--max-per-class must be at least 1, got {self.max_per_class}")
        if self.train_side is not None and self.train_side < 1:
            raise UsageError("train_side must be a positive number of pixels")


@dataclass
class TrainConfig:
    data: DataConfig
    strategy: str = "finetune"
    backbone: str = "auto"  # a registry name, or "auto" (backbones.resolve_backbone)
    weights: str | None = None  # weights file, or a variant name such as IMAGENET1K_V2; None = default
    recipe: Recipe = field(default_factory=lambda: dataclasses.replace(RECIPES[DEFAULT_RECIPE]))
    seed: int = 0  # training seed: head initialisation, shuffling, augmentation
    deterministic: bool = False  # bit-reproducible on CPU (torch deterministic algorithms)
    views: int = 1  # extract: augmented views per training image whose features are cached (see README)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # mixed precision: "auto" (bf16 on GPUs that have it, else fp16; off on CPU), "off", ...
    compile: bool = False  # torch.compile the trained network (worth it on a GPU for long runs)
    workers: int | None = None  # image-decoding processes; None = one per CPU core (at most 8)
    loader_workers: int | None = None  # batch-making processes while training; None = chosen from the machine
    feature_cache: bool = True  # keep frozen features on disk, keyed by backbone + weights + pictures + views
    decode_cache: str = "auto"  # decoded pictures: "memory", "disk" (memory-mapped) or "auto" (from sizes)
    out: str = "runs"
    name: str | None = None  # run folder name; None = "<strategy>-<backbone>-<timestamp>"
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}")
        if self.recipe.epochs < 1 and self.strategy != "two-stage":  # two-stage with 0: its head stage alone
            raise UsageError(f"--epochs must be at least 1, got {self.recipe.epochs}")
        if self.views < 1:
            raise UsageError("--views must be at least 1")
        for name in ("workers", "loader_workers"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} cannot be negative")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}")
        if self.decode_cache not in ("auto", "memory", "disk"):
            raise UsageError(f"unknown decode cache '{self.decode_cache}'; choose auto, memory or disk")


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def train_config_from_dict(data: dict) -> TrainConfig:
    """Rebuild a TrainConfig from the JSON saved in a run directory."""
    data = dict(data)
    data["data"] = DataConfig(**{**data["data"], "background": tuple(data["data"]["background"])})
    data["recipe"] = Recipe(**data["recipe"])
    return TrainConfig(**data)
