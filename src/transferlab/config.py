"""Configuration as keyword-only dataclasses: what to train on, with what, and how (saved as JSON with every run by
`runs`). Each checks its own settings on creation, so the command line and the Python API share one validation
(`errors.InvalidSetting` names the setting as the caller wrote it). The fixed vocabularies are `Literal`s.
Imports nothing heavy: the command line builds these before any library loads."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from transferlab.errors import InvalidSetting, UsageError, above, at_least, one_of

Strategy = Literal["finetune", "extract", "two-stage"]
Precision = Literal["auto", "off", "bf16", "fp16"]
HeadSolver = Literal["sgd", "probe"]
ProbeFeatures = Literal["centre", "views", "both"]
DecodeCache = Literal["auto", "memory", "disk"]
Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["step", "cosine"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
COMPARED: tuple[Strategy, ...] = ("finetune", "extract")  # what `compare` (and the studio's comparison) weighs
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
HEAD_SOLVERS: tuple[HeadSolver, ...] = get_args(HeadSolver)
PROBE_FEATURES: tuple[ProbeFeatures, ...] = get_args(ProbeFeatures)
DECODE_CACHES: tuple[DecodeCache, ...] = get_args(DecodeCache)


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "5m", "1h30m"."""
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not parts or not any(parts.groups()):
        raise UsageError(f"cannot read the duration '{text}': write e.g. 90s, 5m or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    total = 3600 * hours + 60 * minutes + seconds
    if total <= 0:
        raise UsageError("the budget must be more than 0 seconds")
    return total


@dataclass(kw_only=True)
class Recipe:
    """Optimisation schedule. The default is the reference project's (PyTorch transfer-learning tutorial) recipe."""

    name: str = "reference"
    epochs: int = 25
    batch_size: int = 32
    optimizer: Optimizer = "sgd"  # "sgd" (with momentum) or "adamw"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Schedule = "step"  # "step" (StepLR) or "cosine" (cosine annealing to zero over `epochs`)
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
    head_solver: HeadSolver = "sgd"
    probe_features: ProbeFeatures = "centre"

    def __post_init__(self) -> None:
        for name, least in (("epochs", 0), ("batch_size", 1), ("head_epochs", 0), ("step_size", 1), ("patience", 1)):
            at_least(name, getattr(self, name), least)
        above("lr", self.lr, 0)
        one_of("optimizer", self.optimizer, get_args(Optimizer))
        one_of("schedule", self.schedule, get_args(Schedule))
        one_of("head_solver", self.head_solver, HEAD_SOLVERS)
        one_of("probe_features", self.probe_features, PROBE_FEATURES)


RECIPES: dict[str, Recipe] = {
    "reference": Recipe(),
    # Aims at the reference recipe's accuracy in far less time: a few epochs of AdamW with a cosine schedule,
    # label smoothing, and early stopping once validation accuracy stops improving; the head of a frozen backbone
    # (extract, and two-stage's first stage) fitted as a cross-validated linear probe on centre-crop features.
    "fast": Recipe(
        name="fast",
        epochs=8,
        optimizer="adamw",
        lr=0.001,
        weight_decay=0.05,
        schedule="cosine",
        label_smoothing=0.1,
        patience=3,
        head_epochs=5,
        backbone_lr_scale=0.1,
        head_solver="probe",
        probe_features="centre",
    ),
}
DEFAULT_RECIPE = "fast"  # measured by benchmarks/extract_protocol.py (README: "Recipes and strategies")


@dataclass(kw_only=True)
class DataConfig:
    root: str
    val_fraction: float = 0.2  # used only when the folder has no train/ and val/ sub-folders
    split_seed: int = 0  # seeds that split; kept apart from the training seed so every run sees the same split
    max_per_class: int | None = None  # keep at most this many images per class and split (quick trials)
    background: tuple[int, int, int] = (255, 255, 255)  # transparent pixels are composited onto this colour
    train_side: int | None = None  # training pictures keep at most this short side; None = 2x the input size

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise InvalidSetting("val_fraction", f"must be between 0 and 1, got {self.val_fraction}")
        at_least("max_per_class", self.max_per_class, 1)
        at_least("train_side", self.train_side, 1)


@dataclass(kw_only=True)
class TrainConfig:
    data: DataConfig
    strategy: Strategy = "finetune"
    backbone: str = "auto"  # a registry name, or "auto" (backbones.resolve_backbone)
    weights: str | None = None  # weights file, or a variant name such as IMAGENET1K_V2; None = default
    recipe: Recipe = field(default_factory=lambda: dataclasses.replace(RECIPES[DEFAULT_RECIPE]))
    seed: int = 0  # training seed: head initialisation, shuffling, augmentation
    deterministic: bool = False  # bit-reproducible on CPU (torch deterministic algorithms)
    views: int = 1  # extract: augmented views per training image whose features are cached (see README)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    precision: Precision = (
        "auto"  # mixed precision: "auto" (bf16 on GPUs that have it, else fp16; off on CPU), "off", ...
    )
    compile: bool = False  # torch.compile the trained network (worth it on a GPU for long runs)
    workers: int | None = None  # image-decoding processes; None = one per CPU core (at most 8)
    loader_workers: int | None = None  # batch-making processes while training; None = chosen from the machine
    feature_cache: bool = True  # keep frozen features on disk, keyed by backbone + weights + pictures + views
    decode_cache: DecodeCache = "auto"  # decoded pictures: "memory" (all read in), "disk"/"auto" (the store, as used)
    out: str = "runs"
    name: str | None = None  # run folder name; None = "<strategy>-<backbone>-<timestamp>"
    quiet: bool = False

    def __post_init__(self) -> None:
        one_of("strategy", self.strategy, STRATEGIES)
        if self.strategy != "two-stage":  # two-stage with 0 epochs: its head stage alone
            at_least("epochs", self.recipe.epochs, 1)
        at_least("views", self.views, 1)
        at_least("workers", self.workers, 0)
        at_least("loader_workers", self.loader_workers, 0)
        one_of("precision", self.precision, PRECISIONS)
        one_of("decode_cache", self.decode_cache, DECODE_CACHES)


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def train_config_from_dict(data: dict) -> TrainConfig:
    """Rebuild a TrainConfig from the JSON saved in a run directory; a setting this version does not know is a
    `UsageError` naming it (the file was written by another version, or edited by hand)."""
    data = dict(data)
    for kind, values in ((DataConfig, data.get("data", {})), (Recipe, data.get("recipe", {})), (TrainConfig, data)):
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(kind)})
        if unknown:
            raise UsageError(f"unknown setting(s) {', '.join(unknown)} in {kind.__name__}")
    data["data"] = DataConfig(**{**data["data"], "background": tuple(data["data"]["background"])})
    data["recipe"] = Recipe(**data["recipe"])
    return TrainConfig(**data)


def default_of(kind: type, name: str) -> Any:
    """A setting's default as its dataclass declares it: the command line shows and uses the same value."""
    field_ = next(f for f in dataclasses.fields(kind) if f.name == name)
    if field_.default is not dataclasses.MISSING:
        return field_.default
    factory: Any = field_.default_factory
    return factory()
