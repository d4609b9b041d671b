"""Where an answer comes from: class activation maps (CAM), exact for every model transferlab trains on one backbone.

A backbone ends in global average pooling over a grid of feature vectors and the head is one linear layer on the
pooled vector, so a class's logit is the mean over the grid of `weight[class] . feature(cell)` plus the bias: that
per-cell term (the class activation map, Zhou et al. 2016) is how much each cell of the photo adds to the answer,
with no gradients and no approximation; fine-tuned, extracted and two-stage heads alike. The map is drawn over the
centre crop the model saw: red where the photo's evidence for the class lies. An ensemble's features are not all
pooled grids (its members' last stages are appended), so it has no exact map: `explain` says so.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from transferlab.data.presets import normalize
from transferlab.errors import UnreadableImage, UsageError
from transferlab.inference.predict import Classifier


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """One photo's answer and its map: `heat` (H, W) in [0, 1] over the crop, 1 where the evidence is strongest."""

    label: str
    probability: float
    heat: np.ndarray
    crop: Image.Image  # the centre crop the model saw

    def overlay(self, alpha: float = 0.5) -> Image.Image:
        """The crop with the map laid over it (transparent where there is no evidence, red where it is strongest)."""
        return overlay(self.crop, self.heat, alpha)


def has_maps(classifier: Classifier) -> bool:
    """Whether the model's answers have an exact map: one pooled grid under one linear layer (an ensemble: no)."""
    pools = [m for m in classifier.model.backbone.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    return len(pools) == 1 and isinstance(classifier.model.head[-1], nn.Linear)


def class_maps(classifier: Classifier, crops: torch.Tensor) -> torch.Tensor:
    """(N, classes, h, w) class activation maps of a uint8 batch of crops: the cells' contributions to each logit
    (their mean over the cells plus the bias is the logit). Raises UsageError for a model without an exact map."""
    grids: list[torch.Tensor] = []
    pools = [m for m in classifier.model.backbone.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    me = threading.get_ident()  # the backbone may be shared (the studio's live model): another thread's grids differ

    def keep(_module: nn.Module, given: tuple, _out: torch.Tensor) -> None:
        if threading.get_ident() == me:
            grids.append(given[0])

    handles = [pool.register_forward_hook(keep) for pool in pools]
    try:
        with torch.inference_mode():
            pooled = classifier.model.backbone(normalize(crops.to(classifier.device), classifier.spec))
    finally:
        for handle in handles:
            handle.remove()
    linear = classifier.model.head[-1]
    assert isinstance(linear, nn.Linear)
    if len(grids) != 1 or grids[0].shape[1] != linear.in_features or pooled.shape[1] != linear.in_features:
        raise UsageError(f"{classifier.meta.backbone}: no exact heat map for this model (its features are not one "
                         "pooled grid, as an ensemble's are not)")  # fmt: skip
    with torch.inference_mode():
        return torch.einsum("kc,nchw->nkhw", linear.weight.float(), grids[0].float()).cpu()


def explain(classifier: Classifier, images: list) -> list[Explanation]:
    """Each picture's answer (the model's top class) and where in the crop it comes from."""
    return explain_crops(classifier, torch.stack([classifier.preprocess(image) for image in images]))


def explain_crops(classifier: Classifier, crops: torch.Tensor) -> list[Explanation]:
    """`explain` for a uint8 batch of evaluation crops (N, 3, S, S), already decoded."""
    maps = class_maps(classifier, crops)
    linear = classifier.model.head[-1]
    assert isinstance(linear, nn.Linear)  # class_maps refused any other head
    # the maps' mean plus the bias is the logit: the answer without a second pass through the backbone
    probabilities = (maps.mean((2, 3)) + linear.bias.detach().float().cpu()).softmax(1)
    explained = []
    for crop, cam, probs in zip(crops, maps, probabilities):
        k = int(probs.argmax())
        explained.append(Explanation(label=classifier.classes[k], probability=float(probs[k]),
                                     heat=heat_of(cam[k], crop.shape[-1]),
                                     crop=Image.fromarray(crop.permute(1, 2, 0).numpy())))  # fmt: skip
    return explained


def heat_of(cam: torch.Tensor, size: int) -> np.ndarray:
    """One class's map resized (bilinear) to the crop, its positive part scaled to [0, 1] (zero everywhere when no
    cell speaks for the class)."""
    up = torch.nn.functional.interpolate(cam[None, None], size=(size, size), mode="bilinear", align_corners=False)
    heat = up[0, 0].clamp(min=0)
    top = float(heat.max())
    return (heat / top).numpy() if top > 0 else heat.numpy()


def overlay(picture: Image.Image, heat: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """`picture` with `heat` (same size, [0, 1]) laid over it in red to yellow, opaque in proportion to the heat."""
    red = np.stack([np.ones_like(heat), heat, np.zeros_like(heat)], -1)  # low heat red, the strongest yellow
    weight = (alpha * heat)[..., None]
    blended = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255 * (1 - weight) + red * weight
    return Image.fromarray((blended * 255).round().astype(np.uint8))


def overlay_jpeg(explanation: Explanation, quality: int = 85) -> bytes:
    """The overlay as JPEG bytes (what a page shows: a 224-pixel overlay is ~15 KB)."""
    buffer = io.BytesIO()
    explanation.overlay().save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def save_overlays(classifier: Classifier, paths: list[Path], out: Path) -> dict[Path, Path]:
    """Overlays of each readable photo in `out` (named after it, numbered where names repeat): {photo: overlay}."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[Path, Path] = {}
    used: set[str] = set()
    for path in paths:
        try:
            (explanation,) = explain(classifier, [path])
        except UnreadableImage:  # predict reports it; it has no overlay
            continue
        name, n = f"{path.stem}.heat.png", 1
        while name in used:
            n += 1
            name = f"{path.stem}-{n}.heat.png"
        used.add(name)
        explanation.overlay().save(out / name)
        written[path] = out / name
    return written
