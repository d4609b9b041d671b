"""The evaluation view is made without torchvision (prediction starts faster) and is torchvision's Resize +
CenterCrop pixel for pixel, so training, evaluation and prediction see exactly what they saw before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from transferlab.data.presets import decoded_view, eval_view, resize_tensor, to_tensor, train_view


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (256, 256), (1001, 333), (97, 250), (640, 480)])
def test_views_match_torchvision_pixel_for_pixel(size):
    rng = np.random.default_rng(sum(size))
    picture = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    expected = F.pil_to_tensor(F.resize(picture, 256))
    assert torch.equal(decoded_view(picture, 256), expected)
    assert torch.equal(eval_view(expected, 224), F.center_crop(expected, [224, 224]))
    assert torch.equal(eval_view(expected[:, :100, :150], 224), F.center_crop(expected[:, :100, :150], [224, 224]))
    kept = F.pil_to_tensor(F.resize(picture, 150)) if min(size) > 150 else F.pil_to_tensor(picture)
    assert torch.equal(train_view(picture, 150), kept)


@pytest.mark.parametrize("capability", ["AVX2", "DEFAULT"])  # uint8 kernels; otherwise in float, then rounded
def test_resize_tensor_is_torchvisions_resize_pixel_for_pixel(capability, monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    generator = np.random.default_rng(0)
    for height, width, size in [(300, 400, 256), (517, 389, 224), (260, 260, 260), (200, 120, 256), (33, 1000, 64)]:
        pixels = generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
        pixels[: height // 2] = pixels[: height // 2] // 4  # not only noise: edges and flat areas too
        for picture in (to_tensor(Image.fromarray(pixels)), torch.from_numpy(pixels).permute(2, 0, 1).contiguous()):
            expected = F.resize(picture, size, antialias=True)
            assert torch.equal(resize_tensor(picture, size), expected), (height, width, size)
