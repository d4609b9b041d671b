"""Where an answer comes from: class activation maps (CAM), exact for every model transferlab trains.

A backbone ends in global average pooling over a grid of feature vectors and the head is one linear layer on the
pooled vector, so a class's logit is the mean over the grid of `weight[class] . feature(cell)` plus the bias: that
per-cell term (the class activation map, Zhou et al. 2016) is how much each cell of the photo adds to the answer,
with no gradients and no approximation; fine-tuned, extracted and two-stage heads alike. An ensemble's features are
several such means side by side (each member's head and last stages, grids of their own sizes): its head's weights
split the same way, each grid has its exact map, and the logit is the sum of their means plus the bias; the map
drawn is their sum, each resized to the crop. The map is drawn over the centre crop the model saw: red where the
photo's evidence for the class lies.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

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
    """Whether the model's answers have an exact map: one linear layer on features that are means of grids (one
    pooled grid; an ensemble whose members all tell their grids)."""
    backbone = classifier.model.backbone
    pools = [m for m in backbone.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    grids = bool(getattr(backbone, "has_grids", False)) or len(pools) == 1
    return grids and isinstance(classifier.model.head[-1], nn.Linear)


def class_map_parts(classifier: Classifier, crops: torch.Tensor) -> list[torch.Tensor]:
    """The class activation maps of a uint8 batch of crops, one (N, classes, h, w) tensor for each grid the features
    are the means of (one for a single backbone; each member's head and stages for an ensemble, each of its own
    size): the cells' contributions to each logit (the sum over the parts of their means, plus the bias, is the
    logit). Raises UsageError for a model without an exact map."""
    backbone, linear = classifier.model.backbone, classifier.model.head[-1]
    if not has_maps(classifier) or not isinstance(linear, nn.Linear):
        raise UsageError(f"{classifier.meta.backbone}: no exact heat map for this model (its features are not the "
                         "means of grids under one linear layer)")  # fmt: skip
    x = normalize(crops.to(classifier.device), classifier.spec)
    with torch.inference_mode():
        grids = cast(Any, backbone).grids(x) if getattr(backbone, "has_grids", False) else _pooled_grid(backbone, x)
        if sum(g.shape[1] for g in grids) != linear.in_features:
            raise UsageError(f"{classifier.meta.backbone}: its grids do not match its head: no exact heat map")
        weights = torch.split(linear.weight.float(), [g.shape[1] for g in grids], dim=1)
        return [torch.einsum("kc,nchw->nkhw", w, g.float()).cpu() for w, g in zip(weights, grids)]


def _pooled_grid(backbone: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The grid a single backbone's global average pooling averages, caught on its way in."""
    grids: list[torch.Tensor] = []
    me = threading.get_ident()  # the backbone may be shared (the studio's live model): another thread's grids differ

    def keep(_module: nn.Module, given: tuple, _out: torch.Tensor) -> None:
        if threading.get_ident() == me:
            grids.append(given[0])

    pool = next(m for m in backbone.modules() if isinstance(m, nn.AdaptiveAvgPool2d))
    handle = pool.register_forward_hook(keep)
    try:
        backbone(x)
    finally:
        handle.remove()
    return grids[-1:]


def class_maps(classifier: Classifier, crops: torch.Tensor) -> torch.Tensor:
    """(N, classes, h, w) class activation maps of a single backbone's model (`class_map_parts`' one part): their
    mean over the cells plus the bias is the logit. Raises UsageError for an ensemble (several grids)."""
    parts = class_map_parts(classifier, crops)
    if len(parts) != 1:
        raise UsageError(f"{classifier.meta.backbone}: several grids of several sizes: use class_map_parts")
    return parts[0]


def explain(classifier: Classifier, images: list) -> list[Explanation]:
    """Each picture's answer (the model's top class) and where in the crop it comes from."""
    return explain_crops(classifier, torch.stack([classifier.preprocess(image) for image in images]))


def explain_crops(classifier: Classifier, crops: torch.Tensor) -> list[Explanation]:
    """`explain` for a uint8 batch of evaluation crops (N, 3, S, S), already decoded: the answer from the maps (the
    sum of the parts' means plus the bias is the logit: no second pass through the backbone), the map drawn the sum
    of the parts resized to the crop."""
    parts = class_map_parts(classifier, crops)
    linear = classifier.model.head[-1]
    assert isinstance(linear, nn.Linear)  # class_map_parts refused any other head
    logits = sum(part.mean((2, 3)) for part in parts) + linear.bias.detach().float().cpu()
    size = crops.shape[-1]
    resized = sum(F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False) for part in parts)
    explained = []
    for crop, cam, probs in zip(crops, cast(torch.Tensor, resized), cast(torch.Tensor, logits).softmax(1)):
        k = int(probs.argmax())
        explained.append(Explanation(label=classifier.classes[k], probability=float(probs[k]), heat=heat_of(cam[k]),
                                     crop=Image.fromarray(crop.permute(1, 2, 0).numpy())))  # fmt: skip
    return explained


def heat_of(cam: torch.Tensor) -> np.ndarray:
    """One class's map (resized to the crop), its positive part scaled to [0, 1] (zero everywhere when no cell
    speaks for the class)."""
    heat = cam.clamp(min=0)
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
