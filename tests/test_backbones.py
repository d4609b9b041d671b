"""Weights resolve from a file, then torchvision's cache, then a download; failing all, the error says how to fix it."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from transferlab.errors import WeightsUnavailable
from transferlab.models.backbones import get_spec
from transferlab.models.model import create_backbone


def _reference_resnet18_state():
    torch.manual_seed(3)
    return torchvision.models.resnet18(weights=None).state_dict()


def test_weights_file_is_loaded(tmp_path):
    state = _reference_resnet18_state()
    path = tmp_path / "my-weights.pth"
    torch.save(state, path)
    backbone, _, info = create_backbone("resnet18", weights=path)
    assert info.source == "file" and info.name == "my-weights.pth" and len(info.sha256) == 64
    assert torch.equal(backbone.conv1.weight, state["conv1.weight"])


def test_torchvision_cache_is_used_before_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = _reference_resnet18_state()
    filename = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / filename)

    def no_download(*args, **kwargs):
        raise AssertionError("must not download when the cache has the file")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    backbone, _, info = create_backbone("resnet18")
    assert info.source == "torchvision cache" and info.pretrained
    assert torch.equal(backbone.conv1.weight, state["conv1.weight"])


def test_failed_download_explains_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailable) as error:
        create_backbone("resnet50")
    message = str(error.value)
    assert "--weights" in message and "efficientnet_lite0" in message and "resnet50-0676ba61.pth" in message


def test_weights_that_do_not_fit_are_reported(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsUnavailable, match="do not fit backbone resnet18"):
        create_backbone("resnet18", weights=path)


def test_missing_weights_file_and_unknown_names_are_reported(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        create_backbone("resnet18", weights=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="available: .*efficientnet_lite0"):
        get_spec("vgg99")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        create_backbone("resnet18", weights="IMAGENET1K_V7")


def test_random_weights_are_never_labelled_pretrained():
    _, _, info = create_backbone("resnet18", pretrained=False)
    assert not info.pretrained and "not pretrained" in info.source


def test_efficientnet_lite0_gives_pooled_features_offline():
    backbone, spec, info = create_backbone("efficientnet_lite0")
    backbone.eval()
    with torch.inference_mode():
        features = backbone(torch.zeros(1, 3, spec.input_size, spec.input_size))
    assert features.shape == (1, spec.feature_dim) and info.source == "package"


@pytest.mark.parametrize("level", [0, 1, 2])
def test_a_lite_members_extra_width_is_what_its_network_gives(level):
    spec = get_spec(f"efficientnet_lite{level}")
    member = spec.member_features(spec.architecture())
    with torch.inference_mode():
        out = member.eval()(torch.zeros(1, 3, spec.input_size, spec.input_size))
    assert out.shape == (1, spec.feature_dim + spec.member_extra_dim)
