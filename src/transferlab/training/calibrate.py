"""Fit a finished run's "unknown" detector (`inference.unknown`) from its photos' features: the training side of
the detector, which prediction only loads."""

from __future__ import annotations

from pathlib import Path

import torch

from transferlab.inference.predict import Classifier
from transferlab.inference.unknown import UnknownDetector, fit_and_save
from transferlab.training.feature_cache import FeatureRequest
from transferlab.training.features import extract_features, features_for
from transferlab.utils.distributed import Dist


def calibrate_run(run_dir: Path, prepared, device: torch.device | str = "cpu") -> UnknownDetector:
    """Fit and save the detector of a trained run from its best weights and its decoded photos."""
    classifier = Classifier.load(run_dir, device)
    request = FeatureRequest(
        backbone=classifier.model.backbone, spec=classifier.spec, train=prepared.train, val=prepared.val, centre=True
    )
    features = extract_features(request, device=classifier.device, quiet=True)
    return fit_and_save(features, run_dir)


def fit_unknown_for_run(
    run_dir: Path, prepared, config, backbone: torch.nn.Module, precision: torch.dtype | None, device: torch.device
) -> UnknownDetector:
    """Fit and save a finished run's detector. A frozen backbone (extract) never trained, so its centre-crop
    features are the pretrained ones the probe used: read from the feature cache. Otherwise `calibrate_run`."""
    if config.strategy != "extract":
        return calibrate_run(run_dir, prepared, device)
    alone = Dist(rank=0, world=1, local_rank=0, device=device)  # called by rank 0 alone: no collective calls
    request = FeatureRequest(
        backbone=backbone, spec=prepared.spec, train=prepared.train, val=prepared.val, centre=True,
        batch_size=config.recipe.batch_size, precision=precision,
    )  # fmt: skip
    features = features_for(request, dist=alone, use_cache=config.feature_cache, quiet=True)
    return fit_and_save(features, run_dir)
