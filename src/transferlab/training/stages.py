"""The stages of a strategy and what each trains on.

`plan_stages` turns a strategy into stages (finetune: pictures; extract: features; two-stage: features, then
pictures); `stage_inputs` gives a stage its inputs (cached frozen features, or decoded pictures through the loaders)
and the module and parameters that train; `probe_stage` fits a probe head in one step; `wrap` adds
DistributedDataParallel and torch.compile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from transferlab.config import Recipe, TrainConfig
from transferlab.data.loaders import ImageLoader, PictureInputs, StageInputs, TensorInputs
from transferlab.data.prepare import PreparedData
from transferlab.models.model import TransferModel
from transferlab.runs import (
    EpochRecord,
    RunSummary,
    StageName,
)
from transferlab.training.costs import costed
from transferlab.training.feature_cache import FeatureRequest
from transferlab.training.features import features_for
from transferlab.training.probe import fit_probe_head
from transferlab.utils.distributed import Dist

log = logging.getLogger("transferlab")


@dataclass(frozen=True, kw_only=True)
class Stage:
    """A stretch of epochs (numbered over the whole run) that trains one part of the model on one kind of input:
    "probe" fits the head on cached features in one step, "head" trains the head on cached features by epochs,
    "finetune" trains the whole network on pictures."""

    name: StageName
    first: int
    last: int

    @property
    def epochs(self) -> int:
        return self.last - self.first + 1

    @property
    def one_step(self) -> bool:
        """The head fitted in one step (a cross-validated probe), not trained by epochs."""
        return self.name == "probe"

    @property
    def on_features(self) -> bool:
        """It trains the head alone, on the frozen backbone's cached features."""
        return self.name in ("probe", "head")

    @property
    def trains_backbone(self) -> bool:
        """It trains the whole network, backbone included, on decoded pictures."""
        return self.name == "finetune"


@dataclass(frozen=True, kw_only=True)
class StageSetup:
    """What a stage trains and on what: its inputs, the module that trains, its parameters (or parameter groups)."""

    inputs: StageInputs
    module: nn.Module
    parameters: list


def plan_stages(strategy: str, recipe: Recipe) -> list[Stage]:
    """finetune: all epochs on pictures; extract: all on features; two-stage: `head_epochs` on features, then
    `epochs` on pictures. With the recipe's "probe" head solver, the head is fitted in one step ("probe", one
    epoch) instead of trained on features by epochs."""
    if strategy == "finetune":
        return [Stage(name="finetune", first=1, last=recipe.epochs)]
    head = (
        Stage(name="probe", first=1, last=1)
        if recipe.head_solver == "probe"
        else Stage(name="head", first=1, last=recipe.head_epochs)
    )
    if strategy == "extract":
        return [head] if head.one_step else [Stage(name="head", first=1, last=recipe.epochs)]
    stages = [head, Stage(name="finetune", first=head.last + 1, last=head.last + recipe.epochs)]
    return [stage for stage in stages if stage.epochs > 0]


def probe_stage(
    model: TransferModel,
    prepared: PreparedData,
    config: TrainConfig,
    dist: Dist,
    precision: torch.dtype | None,
    summary: RunSummary,
) -> EpochRecord:
    """The "probe" stage: frozen features (centre crops and/or views), then the head fitted by cross-validated
    logistic regression (`probe.fit_probe_head`); its one record."""
    recipe = config.recipe
    views = config.views if recipe.probe_features in ("views", "both") else 0
    request = FeatureRequest(
        backbone=model.backbone, spec=prepared.spec, train=prepared.train, val=prepared.val, views=views,
        centre=recipe.probe_features in ("centre", "both"), batch_size=recipe.batch_size, precision=precision,
    )  # fmt: skip
    features = features_for(request, dist=dist, use_cache=config.feature_cache, quiet=config.quiet)
    summary.add_features(costed(features, model.backbone, prepared.spec, prepared.val, precision, dist.device))
    record, probe = fit_probe_head(cast(nn.Linear, model.head[-1]), features, recipe.probe_features, seed=config.seed)
    summary.probe_C, summary.probe_cv_accuracy = probe.C, probe.cv_accuracy
    log.info(
        "probe: C=%g chosen by %d-fold cross-validation (%.1f%% there); val accuracy %.1f%%",
        probe.C,
        probe.folds,
        100 * probe.cv_accuracy,
        100 * record.val_acc,
    )
    return record


def stage_inputs(
    stage: Stage,
    model: TransferModel,
    prepared: PreparedData,
    config: TrainConfig,
    dist: Dist,
    precision: torch.dtype | None,
    *,
    order,
    summary: RunSummary,
) -> StageSetup:
    """What `stage` trains and on what.

    On features ("head"): the frozen backbone's features (computed once or read from the cache) and the head alone.
    Training the backbone ("finetune"; the model unfrozen first, `TransferModel.unfreeze_backbone`): decoded
    pictures, augmented each epoch, and the whole network (two-stage: the backbone at `backbone_lr_scale` x the
    head's learning rate).
    """
    recipe, val_share = config.recipe, dist.shard(len(prepared.val))
    if stage.on_features:
        request = FeatureRequest(
            backbone=model.backbone, spec=prepared.spec, train=prepared.train, val=prepared.val, views=config.views,
            batch_size=recipe.batch_size, precision=precision,
        )  # fmt: skip
        features = features_for(request, dist=dist, use_cache=config.feature_cache, quiet=config.quiet)
        summary.add_features(costed(features, model.backbone, prepared.spec, prepared.val, precision, dist.device))
        inputs = TensorInputs(
            train=features.train,
            train_labels=features.train_labels,
            val=features.val,
            val_labels=features.val_labels,
            batch_size=recipe.batch_size,
            device=dist.device,
            order=order,
            val_share=val_share,
        )
        return StageSetup(inputs=inputs, module=model.head, parameters=model.trainable_parameters())
    parameters = (
        model.parameter_groups(recipe.lr, recipe.backbone_lr_scale)
        if config.strategy == "two-stage"
        else model.trainable_parameters()
    )
    train_loader = ImageLoader(
        prepared.train,
        prepared.spec,
        recipe.batch_size,
        dist.device,
        augment=True,
        workers=config.loader_workers,
        seed=config.seed,
    )
    val_loader = ImageLoader(
        prepared.val, prepared.spec, recipe.batch_size, dist.device, augment=False, workers=config.loader_workers
    )
    pictures = PictureInputs(train=train_loader, val=val_loader, order=order, val_share=val_share)
    return StageSetup(inputs=pictures, module=model, parameters=parameters)


def wrap(module: nn.Module, config: TrainConfig, stage: Stage, dist: Dist) -> nn.Module:
    """DistributedDataParallel under torchrun; torch.compile for fine-tuning stages with --compile."""
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [dist.device.index] if dist.device.type == "cuda" else None
        module = DistributedDataParallel(module, device_ids=device_ids)
    if config.compile and stage.trains_backbone:
        module = cast(nn.Module, torch.compile(module))
    return module
