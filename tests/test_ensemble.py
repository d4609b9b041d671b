"""Several frozen backbones as one extract cell: built from a "+" name, trained, compared, saved and loaded."""

from __future__ import annotations

import pytest
import torch

from transferlab import DataConfig, TrainConfig, train
from transferlab.cli import main
from transferlab.errors import UsageError
from transferlab.inference.predict import load_run
from transferlab.models.backbones import ensemble_of, get_spec, short_name
from transferlab.models.model import create_backbone

PAIR = "efficientnet_lite0+efficientnet_lite1"


def test_an_ensemble_takes_the_largest_view_and_puts_the_features_side_by_side():
    spec = get_spec(PAIR)
    assert (spec.input_size, spec.resize_size, spec.feature_dim) == (240, 274, 2 * (1280 + 192 + 320))
    assert short_name(PAIR) == "lite0+lite1" and ensemble_of(["efficientnet_lite0", "efficientnet_lite1"]) == PAIR
    assert ensemble_of(["efficientnet_lite0"]) is None and ensemble_of([PAIR, "efficientnet_lite2"]) is None


def test_each_member_sees_its_own_view_and_the_largest_sees_exactly_what_it_sees_alone():
    ensemble, spec, info = create_backbone(PAIR)
    lite1, _, _ = create_backbone("efficientnet_lite1")
    lite0, _, _ = create_backbone("efficientnet_lite0")
    ensemble.eval(), lite1.eval(), lite0.eval()
    x = torch.rand(2, 3, 240, 240) * 2 - 1  # normalized for the ensemble (all Lite members scale the same way)
    with torch.inference_mode():
        both = ensemble(x)
        assert both.shape == (2, get_spec(PAIR).feature_dim)
        # each member: its pooled head features (what it gives alone), then its last two stages' pooled outputs
        assert torch.allclose(both[:, 1792 : 1792 + 1280], lite1(x), atol=1e-4)  # the largest: the same picture
        assert torch.allclose(both[:, 1792 + 1280 :], _stages(lite1, x), atol=1e-4)
        lite = get_spec("efficientnet_lite0")
        mean, std = torch.tensor(lite.mean).view(1, 3, 1, 1), torch.tensor(lite.std).view(1, 3, 1, 1)
        pixels = torch.nn.functional.interpolate(x * std + mean, size=(224, 224), mode="bicubic").clamp(0, 1)
        small = (pixels - mean) / std  # the other: its pixels resized bicubic to its input size, kept in [0, 1]
        assert torch.allclose(both[:, :1280], lite0(small), atol=1e-4)
        assert torch.allclose(both[:, 1280:1792], _stages(lite0, small), atol=1e-4)
    assert info.pretrained and "efficientnet_lite0" in info.name and "efficientnet_lite1" in info.name


def _stages(backbone: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pooled outputs of the network's last two stages (its blocks where the width changes next), by hooks."""
    blocks = backbone.net._blocks
    widths = [b._block_args.output_filters for b in blocks] + [None]
    pooled: list[torch.Tensor] = []
    ends = [i for i in range(len(blocks)) if widths[i + 1] != widths[i]][-2:]
    hooks = [blocks[i].register_forward_hook(lambda m, a, out: pooled.append(out.mean((2, 3)))) for i in ends]
    backbone(x)
    for hook in hooks:
        hook.remove()
    return torch.cat(pooled, 1)


@pytest.mark.parametrize("name", ["efficientnet_lite0+efficientnet_lite0", "efficientnet_lite0+nope", "+"])
def test_a_bad_ensemble_name_is_refused_before_anything_loads(name, tiny_dataset, capsys):
    with pytest.raises(UsageError):
        get_spec(name)
    with pytest.raises(SystemExit) as exit:
        main(["train", str(tiny_dataset), "--backbone", name, "-q"])
    assert exit.value.code == 2
    assert "--backbone" in capsys.readouterr().err


def test_an_ensemble_takes_no_weights_file():
    with pytest.raises(UsageError, match="each member takes its default"):
        create_backbone(PAIR, "IMAGENET")


def test_an_ensemble_run_is_one_model_that_predicts_after_loading(tiny_dataset, tmp_path):
    config = TrainConfig(
        data=DataConfig(root=str(tiny_dataset)), strategy="extract", backbone=PAIR, out=str(tmp_path), quiet=True,
        workers=0,
    )  # fmt: skip
    result = train(config)
    assert result.summary is not None and result.summary.backbone == PAIR
    classifier = load_run(result.run_dir)
    picture = next((tiny_dataset / "val" / "red").iterdir())
    assert classifier.predict(picture).label == "red"
    assert classifier.unknown is not None  # the unknown test works on the ensemble's features as on any


def test_compare_with_several_backbones_adds_their_ensemble_as_an_extract_cell(tiny_dataset, tmp_path, capsys):
    folder = tmp_path / "c"
    pair = "efficientnet_lite0,efficientnet_lite1"
    args = ["compare", str(tiny_dataset), "--strategies", "extract", "--backbones", pair, "--out", str(tmp_path),
            "--name", "c", "-q", "--workers", "0"]  # fmt: skip
    assert main(args) == 0
    runs = sorted(p.name for p in folder.iterdir() if (p / "summary.json").exists())
    assert runs == [f"{PAIR}-extract-b32", "efficientnet_lite0-extract-b32", "efficientnet_lite1-extract-b32"]
    assert "extract (lite0+lite1, batch 32)" in (folder / "report.md").read_text()
    assert main([*args[:-4], "d", "--no-ensemble", "-q", "--workers", "0"]) == 0
    assert not any("+" in p.name for p in (tmp_path / "d").iterdir())
