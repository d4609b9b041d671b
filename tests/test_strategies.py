"""`extract` trains only the head and leaves the backbone (weights and BatchNorm statistics) bit-identical;
`finetune` trains everything."""

from __future__ import annotations

import copy

import torch

from transferlab.models.model import build_model


def _step(model, parameters, steps: int = 2):
    optimizer = torch.optim.SGD(parameters, lr=0.1, momentum=0.9)
    model.train()
    torch.manual_seed(0)
    for _ in range(steps):
        x = torch.randn(4, 3, 64, 64)
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return optimizer


def _states(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_extract_leaves_backbone_weights_and_batchnorm_stats_bit_identical():
    model, _, _ = build_model("resnet18", 3, "extract", pretrained=False)
    before_backbone, before_head = _states(model.backbone), _states(model.head)
    optimizer = _step(model, model.trainable_parameters())
    after = _states(model.backbone)
    assert after.keys() == before_backbone.keys()
    for name, tensor in before_backbone.items():  # includes running_mean, running_var, num_batches_tracked
        assert torch.equal(tensor, after[name]), name
    assert not torch.equal(before_head["1.weight"], model.head[1].weight)
    assert model.backbone.training is False  # model.train() keeps a frozen backbone in eval mode
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in model.head.parameters()}


def test_finetune_changes_backbone_weights_and_batchnorm_stats():
    model, _, _ = build_model("resnet18", 3, "finetune", pretrained=False)
    before = _states(model.backbone)
    _step(model, model.trainable_parameters())
    after = model.backbone.state_dict()
    assert not torch.equal(before["conv1.weight"], after["conv1.weight"])
    assert not torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])
    assert model.backbone.training is True


def test_efficientnet_lite_extract_is_frozen_too():
    model, spec, info = build_model("efficientnet_lite0", 2, "extract", pretrained=True)
    assert info.pretrained and info.source == "package"
    backbone = copy.deepcopy(model.backbone.state_dict())
    model.train()
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    loss = model(torch.randn(2, 3, spec.input_size, spec.input_size)).sum()
    loss.backward()
    optimizer.step()
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone.items())
