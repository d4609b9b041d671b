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
