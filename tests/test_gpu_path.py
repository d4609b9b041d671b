"""The GPU path's pieces fall back cleanly on the CPU: precision resolves to float32, loader settings need no
pinned memory or processes, and the same loop runs under bf16 autocast and under an fp16 gradient scaler."""

from __future__ import annotations

import json

import pytest
import torch

from transferlab import DataConfig, Recipe, TrainConfig, train
from transferlab.data.decoding import decode_split
from transferlab.data.layout import load_dataset
from transferlab.data.loaders import ImageLoader, TensorInputs, loader_settings
from transferlab.models.backbones import get_spec
from transferlab.training.engine import TrainStep, autocast_dtype, make_optimizer, make_scaler, train_epochs

CPU = torch.device("cpu")


def test_precision_auto_is_float32_on_cpu_and_explicit_choices_are_honoured():
    assert autocast_dtype("auto", CPU) is None
    assert autocast_dtype("off", torch.device("cuda")) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16 and autocast_dtype("fp16", CPU) is torch.float16
    assert make_scaler(CPU, torch.float16).is_enabled() and not make_scaler(CPU, torch.bfloat16).is_enabled()


def test_unknown_precision_is_a_clear_error(tiny_dataset):
    with pytest.raises(ValueError, match="precision must be one of auto, off, bf16, fp16, got 'fp8'"):
        TrainConfig(data=DataConfig(root=str(tiny_dataset)), precision="fp8")


def test_loader_settings_come_from_the_device_and_cores():
    assert loader_settings(CPU) == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}
    gpu = loader_settings(torch.device("cuda"))
    assert gpu["pin_memory"] and gpu["persistent_workers"] and 1 <= gpu["num_workers"] <= 8
    assert loader_settings(CPU, workers=2)["persistent_workers"]


def test_loader_processes_give_the_same_batches_as_the_main_process(tiny_dataset):
    spec = get_spec("efficientnet_lite0")
    split = decode_split(load_dataset(tiny_dataset).val, spec.resize_size, spec.input_size, workers=0, quiet=True)
    order = [5, 0, 3, 1, 2, 4, 6]
    inline = list(ImageLoader(split, spec, 3, CPU, augment=False, workers=0).batches(order))
    loader = ImageLoader(split, spec, 3, CPU, augment=False, workers=2)
    for _ in range(2):  # persistent workers serve a second epoch with a new order
        pooled = list(loader.batches(order))
        assert len(pooled) == len(inline) == 3
        for (a, la), (b, lb) in zip(inline, pooled):
            assert torch.equal(a, b) and torch.equal(la, lb)
        order = order[::-1]
        inline = list(ImageLoader(split, spec, 3, CPU, augment=False, workers=0).batches(order))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_training_loop_runs_under_autocast_and_gradient_scaling(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    x, y = torch.randn(64, 8), (torch.arange(64) % 2)
    x[y == 1] += 1.5
    recipe = Recipe(epochs=15, lr=0.05)
    optimizer, scheduler = make_optimizer(list(model.parameters()), recipe)
    scaler = make_scaler(CPU, dtype)
    records = []
    train_epochs(
        model,
        TrainStep(
            optimizer=optimizer,
            scheduler=scheduler,
            criterion=torch.nn.CrossEntropyLoss(),
            precision=dtype,
            scaler=scaler,
        ),
        TensorInputs(train=x[None], train_labels=y, val=x, val_labels=y, batch_size=16, device=CPU),
        range(1, recipe.epochs + 1),
        CPU,
        records.append,
        quiet=True,
    )
    assert records[-1].val_acc > 0.8 and records[-1].train_loss < records[0].train_loss
    if dtype is torch.float16:
        assert scaler.get_scale() > 0 and scaler.state_dict()  # the scaler took part and has state to resume


@pytest.mark.parametrize(("precision", "recorded"), [("auto", "float32"), ("bf16", "bfloat16")])
def test_run_records_its_precision(tiny_dataset, tmp_path, precision, recorded):
    config = TrainConfig(
        precision=precision,
        device="cpu",  # "auto" is float32 on the CPU (on a GPU it is bf16 or fp16: this test ran on an H200 once)
        data=DataConfig(root=str(tiny_dataset)),
        strategy="extract",
        backbone="efficientnet_lite0",
        recipe=Recipe(epochs=1, batch_size=8),
        out=str(tmp_path),
        quiet=True,
        workers=0,
    )
    run = train(config)
    assert run.summary.precision == recorded
    assert json.loads((run.run_dir / "summary.json").read_text())["precision"] == recorded


def test_training_loop_accepts_a_compiled_module():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    compiled = torch.compile(model, backend="eager")  # the wrapper --compile uses, without the compiler's cost
    x, y = torch.randn(32, 8), (torch.arange(32) % 2)
    recipe = Recipe(epochs=2, lr=0.05)
    optimizer, scheduler = make_optimizer(list(model.parameters()), recipe)
    records = []
    train_epochs(
        compiled,
        TrainStep(optimizer=optimizer, scheduler=scheduler, criterion=torch.nn.CrossEntropyLoss()),
        TensorInputs(train=x[None], train_labels=y, val=x, val_labels=y, batch_size=16, device=CPU),
        range(1, recipe.epochs + 1),
        CPU,
        records.append,
        quiet=True,
        eval_module=compiled,
    )
    assert [r.epoch for r in records] == [1, 2]
