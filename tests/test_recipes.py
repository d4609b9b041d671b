"""Recipes: the reference preset is the tutorial's; `fast` builds AdamW + cosine; early stopping stops."""

from __future__ import annotations

import torch

from transferlab.config import RECIPES, Recipe
from transferlab.data.loaders import TensorInputs
from transferlab.training.engine import EarlyStopping, TrainStep, fit, make_optimizer


def test_reference_recipe_is_the_tutorials():
    r = RECIPES["reference"]
    assert (r.epochs, r.batch_size, r.optimizer, r.lr, r.momentum, r.schedule, r.step_size, r.gamma) == (
        25,
        32,
        "sgd",
        0.001,
        0.9,
        "step",
        7,
        0.1,
    )
    optimizer, scheduler = make_optimizer([torch.nn.Parameter(torch.zeros(1))], r)
    assert isinstance(optimizer, torch.optim.SGD) and isinstance(scheduler, torch.optim.lr_scheduler.StepLR)


def test_fast_recipe_uses_adamw_with_a_cosine_schedule():
    optimizer, scheduler = make_optimizer([torch.nn.Parameter(torch.zeros(1))], RECIPES["fast"])
    assert isinstance(optimizer, torch.optim.AdamW)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 2)
    features, labels = torch.randn(16, 4), torch.randint(0, 2, (16,))
    recipe = Recipe(epochs=20, patience=2)
    optimizer, scheduler = make_optimizer(list(head.parameters()), recipe)
    seen = []
    stopping = EarlyStopping(recipe.patience)

    def on_epoch(record):
        seen.append(record)
        return stopping.update(record.val_acc)

    inputs = TensorInputs(features[None], labels, features[:0], labels[:0], 8, torch.device("cpu"))  # val acc stays 0
    fit(
        head,
        TrainStep(optimizer, scheduler, torch.nn.CrossEntropyLoss()),
        inputs,
        range(1, recipe.epochs + 1),
        torch.device("cpu"),
        on_epoch,
        quiet=True,
    )
    assert [r.epoch for r in seen] == [1, 2, 3]  # epoch 1 is the best; 2 and 3 bring nothing; stop
