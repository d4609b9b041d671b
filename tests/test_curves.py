"""Learning curves per class (`training.curves`): a class made of many distinct kinds of photo keeps gaining from
more of them (each new photo may be a kind not seen yet), a class that is one tight cluster does not."""

from __future__ import annotations

import numpy as np
import torch

from transferlab.training.curves import class_curves


def test_a_class_of_many_kinds_is_still_rising_and_a_tight_one_is_flat():
    rng = np.random.default_rng(0)
    kinds = np.repeat(rng.normal(0, 1.0, (30, 20)) * 3, 2, axis=0) + rng.normal(0, 0.2, (60, 20))  # 30 kinds, 2 each
    tight = rng.normal(0, 0.05, (60, 20)) + np.eye(20)[0] * 3  # one tight cluster: a few photos say it all
    blob = rng.normal(0, 1.5, (60, 20))
    x = torch.from_numpy(np.concatenate([kinds, tight, blob]).astype(np.float32))
    y = torch.from_numpy(np.repeat([0, 1, 2], 60))
    by = {c.name: c for c in class_curves(x, y, ["kinds", "tight", "blob"], c=1.0)}
    assert by["kinds"].rising and by["kinds"].recall[-1] > by["kinds"].recall[0] + 0.1
    assert not by["tight"].rising and by["tight"].recall[0] > 0.9
    assert all(len(c.recall) == 3 and c.photos == 60 for c in by.values())
    assert "tight (60 photos): recall with 25% of them: 100%" in by["tight"].sentence()
    assert by["kinds"].sentence().endswith("more photos would likely still help")


def test_curves_from_the_live_models_standardised_features_are_those_of_the_raw_features():
    """The live model hands its standardised features (`Design.z`) rather than keeping a raw copy beside them."""
    from transferlab.training._solver import Design

    rng = np.random.default_rng(1)
    x = torch.from_numpy(
        (rng.normal(0, 1, (90, 12)) * 4 + 7 + np.repeat(np.eye(12)[:3] * 5, 30, axis=0)).astype(np.float32)
    )
    y = torch.from_numpy(np.repeat([0, 1, 2], 30))
    raw = class_curves(x, y, ["a", "b", "c"], c=0.5)
    laid_out = class_curves(Design(x).z, y, ["a", "b", "c"], c=0.5, standardised=True)
    assert [c.recall for c in raw] == [c.recall for c in laid_out]
