"""Image presets: how a decoded picture becomes a network input, for training and for evaluation.

Pictures are decoded once to uint8 tensors. Training pictures keep up to twice the input size on their short side
(`train_view`, `train_side`) and get RandomResizedCrop + horizontal flip every epoch (`TrainPreset`); evaluation
pictures are resized to the backbone's resize size (`decoded_view`) and centre-cropped (`eval_view`). `normalize`
turns a uint8 batch into the float input the backbone expects. Prediction uses exactly these functions, so a photo
is seen the same way in training and in use.
"""

from __future__ import annotations

import platform

import numpy as np
import torch
from PIL import Image

from transferlab.data.images import centre_corner, resize_short_side, short_side_size
from transferlab.models.backbones import BackboneSpec

__all__ = [
    "decoded_view",
    "eval_view",
    "normalize",
    "resize_short_side",
    "resize_tensor",
    "to_tensor",
    "train_side",
    "train_view",
]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB picture as a uint8 (3, H, W) tensor (torchvision's pil_to_tensor)."""
    return torch.from_numpy(np.array(image, copy=True)).view(image.height, image.width, 3).permute(2, 0, 1)


def resize_tensor(picture: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's `v2.functional.resize(picture, size, antialias=True)` (bilinear) of a uint8 (3, H, W) CPU
    picture, pixel for pixel (tests/test_presets.py), without importing torchvision: with the compiler modules it
    pulls in, that import is about 3 s of a probe command's start-up."""
    height, width = picture.shape[-2:]
    new_w, new_h = short_side_size(width, height, size)
    if (new_h, new_w) == (height, width):
        return picture
    batch = picture.reshape(1, *picture.shape[-3:])
    if batch.is_contiguous(memory_format=torch.channels_last) and batch.numel() != batch.stride(0):
        batch = batch.as_strided(batch.shape, (batch.numel(), *batch.stride()[1:]))  # keeps the output channels-last
    native = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")
    resized = torch.nn.functional.interpolate(
        batch if native else batch.float(), size=[new_h, new_w], mode="bilinear", align_corners=False, antialias=True
    )
    return (resized if native else resized.round_().to(torch.uint8))[0]


def decoded_view(image: Image.Image, resize_size: int) -> torch.Tensor:
    """Resize an RGB picture so its short side is `resize_size`; return it as a uint8 (3, H, W) tensor."""
    return to_tensor(resize_short_side(image, resize_size))


def train_side(spec: BackboneSpec) -> int:
    """The largest short side a training picture is kept at: twice the input size.

    RandomResizedCrop cuts crops down to 8% of the picture's area and scales them to the input size. The tutorial
    cuts them from the full-size photo; cut from a picture already shrunk to the resize size (256), a small crop is
    a ~72-pixel patch blown up 3x. `benchmarks/finetune_seeds.py` measures what that costs in accuracy.
    """
    return 2 * spec.input_size


def train_view(image: Image.Image, max_side: int) -> torch.Tensor:
    """Shrink an RGB picture so its short side is at most `max_side` (never enlarge it: RandomResizedCrop scales
    each crop to the input size anyway); return it as a uint8 (3, H, W) tensor."""
    if min(image.size) > max_side:
        image = resize_short_side(image, max_side)
    return to_tensor(image)


def eval_view(decoded: torch.Tensor, input_size: int) -> torch.Tensor:
    """The evaluation input: the centre crop of a decoded view (Resize + CenterCrop, as in the reference)."""
    height, width = decoded.shape[-2:]
    if input_size > height or input_size > width:  # smaller than the crop: torchvision pads it
        from torchvision.transforms.v2 import functional as F

        return F.center_crop(decoded, [input_size, input_size])
    top, left = centre_corner(height, width, input_size)
    return decoded[..., top : top + input_size, left : left + input_size]


class TrainPreset:
    """RandomResizedCrop + RandomHorizontalFlip on a decoded uint8 tensor (the reference training augmentation)."""

    def __init__(self, input_size: int):
        from torchvision.transforms import v2

        self.transform = v2.Compose(
            [
                v2.RandomResizedCrop(input_size, antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        )

    def __call__(self, decoded: torch.Tensor) -> torch.Tensor:
        return self.transform(decoded)


def normalize(batch: torch.Tensor, spec: BackboneSpec) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float input normalized with the backbone's mean and std, in channels-last layout
    (the networks are kept channels-last too: on 2 CPU cores that made EfficientNet-Lite0 training 1.8x faster)."""
    mean = torch.tensor(spec.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=batch.device).view(1, 3, 1, 1)
    return ((batch.float().div_(255.0) - mean) / std).contiguous(memory_format=torch.channels_last)
