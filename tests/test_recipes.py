"""Recipes: the reference preset is the tutorial's; `fast` builds AdamW + cosine; early stopping stops."""

from __future__ import annotations

import torch

from transferlab.config import RECIPES, Recipe
from transferlab.data.loaders import TensorInputs
from transferlab.training.engine import EarlyStopping, TrainStep, make_optimizer, train_epochs


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
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.001, 0.9, 0.0)
    assert (scheduler.step_size, scheduler.gamma) == (7, 0.1)
    lrs = []
    for _ in range(15):  # the tutorial's schedule: 0.001 for epochs 1-7, 0.0001 for 8-14, then 1e-5
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:7] == [0.001] * 7 and all(abs(x - 1e-4) < 1e-12 for x in lrs[7:14]) and abs(lrs[14] - 1e-5) < 1e-12


def test_fast_recipe_uses_adamw_with_a_cosine_schedule():
    fast = RECIPES["fast"]
    optimizer, scheduler = make_optimizer([torch.nn.Parameter(torch.zeros(1))], fast)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (fast.lr, fast.weight_decay)
    assert scheduler.T_max == fast.epochs  # annealed to zero over the recipe's own epochs
    for _ in range(fast.epochs):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] < 1e-9


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

    inputs = TensorInputs(
        train=features[None],
        train_labels=labels,
        val=features[:0],
        val_labels=labels[:0],
        batch_size=8,
        device=torch.device("cpu"),
    )  # val acc stays 0
    train_epochs(
        head,
        TrainStep(optimizer=optimizer, scheduler=scheduler, criterion=torch.nn.CrossEntropyLoss()),
        inputs,
        range(1, recipe.epochs + 1),
        torch.device("cpu"),
        on_epoch,
        quiet=True,
    )
    assert [r.epoch for r in seen] == [1, 2, 3]  # epoch 1 is the best; 2 and 3 bring nothing; stop
