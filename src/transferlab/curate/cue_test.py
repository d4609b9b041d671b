"""Does a class still get recognised without its cue? A shortcut found in the files (`curate.shortcuts`) put to a
model: the live model's probe is fitted on the folder's training photos (frozen features from the store), then the
class's validation photos are answered as they are and with the cue hidden (the mark covered with the photo's own
content from the mirrored place, the frame cropped, the file re-saved as a JPEG at the others' size). A cue that can
only be added (black and white) is added to the other classes' validation photos instead: how many of them the
model then calls the class. Both answers go through the same decoding, so the difference is the cue's alone.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from transferlab.data.findings import CueTest, Finding
from transferlab.data.images import load_rgb
from transferlab.data.presets import decoded_view, eval_view, normalize
from transferlab.errors import UnreadableImage

JPEG_QUALITY = 90
BATCH = 32


@dataclass(frozen=True, kw_only=True)
class Hider:
    """How a cue is hidden from one picture (or, `others`, added to the other classes' pictures)."""

    how: str
    apply: Callable[[Image.Image], Image.Image]
    others: bool = False


def cover(cells: np.ndarray) -> Hider:
    """Cover the cells marked in `cells` (a grid over the picture; one cell of margin round them) with the photo's
    own content from the mirrored place (left-right, else top-bottom, else both): texture like the rest of the photo.
    A flat patch would not hide a mark from a network (a flat square where the mark was looks like the mark); a mark
    in the middle, mirrored onto itself, is covered with the photo's mean colour."""
    grown = cells.copy()
    for axis in (0, 1):
        for shift in (1, -1):
            grown |= np.roll(cells, shift, axis)
    flips = [axes for axes in ((1,), (0,), (0, 1)) if not (grown & np.flip(grown, axes)).any()]

    def apply(picture: Image.Image) -> Image.Image:
        array = np.asarray(picture, dtype=np.float32)
        h, w = array.shape[:2]
        core = np.asarray(Image.fromarray(cells.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST))
        outer = np.asarray(Image.fromarray(grown.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST))
        # weight 1 over the mark's cells, fading to 0 across the margin: no seam for a network to find instead
        soft = Image.fromarray(outer).filter(ImageFilter.GaussianBlur(max(1, h // grown.shape[0] // 3)))
        weight = np.maximum(np.asarray(soft, dtype=np.float32) * (outer > 0), core.astype(np.float32))[..., None] / 255
        source = np.flip(array, flips[0]) if flips else array.reshape(-1, 3).mean(0)
        return Image.fromarray((array * (1 - weight) + source * weight).round().astype(np.uint8))

    return Hider(how="the mark covered", apply=apply)


def crop_frame() -> Hider:
    """Crop a uniform frame: rows and columns from each edge inwards while they stay the colour of the edge."""

    def apply(picture: Image.Image) -> Image.Image:
        small = np.asarray(picture.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255
        edge = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]]).mean(0)
        depth = 1
        while depth < 20:
            ring = np.concatenate([small[depth], small[-depth - 1], small[:, depth], small[:, -depth - 1]])
            if np.abs(ring - edge).max() > 0.08:
                break
            depth += 1
        w, h = picture.size
        cut = (depth + 1) / 64  # one more sixty-fourth: the frame's blurred inner edge
        return picture.crop((int(w * cut), int(h * cut), w - int(w * cut), h - int(h * cut)))

    return Hider(how="the frame cropped", apply=apply)


def resave(size: tuple[int, int] | None = None) -> Hider:
    """Re-save as a JPEG (quality 90), resized to `size` first where given."""

    def apply(picture: Image.Image) -> Image.Image:
        if size is not None:
            picture = picture.resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=JPEG_QUALITY)
        with Image.open(buffer) as saved:
            return saved.convert("RGB")

    at = f" at {size[0]}x{size[1]}" if size else ""
    return Hider(how=f"the file re-saved as a JPEG (quality {JPEG_QUALITY}){at}", apply=apply)


def greyed() -> Hider:
    """Black and white, added to the other classes' photos (a colour cannot be put back)."""
    return Hider(how="turned black and white", apply=lambda p: ImageOps.grayscale(p).convert("RGB"), others=True)


def check_without_cues(root: Path, found: list[tuple[Finding, Hider]], quiet: bool = True) -> list[Finding]:
    """The findings, each with its cue test (`CueTest`) and a sentence saying what it showed."""
    if not found:
        return []
    from transferlab.config import DataConfig, TrainConfig
    from transferlab.data.prepare import prepare_data
    from transferlab.models.model import create_backbone
    from transferlab.training.features import every_image_features
    from transferlab.training.live import LIVE_BACKBONE
    from transferlab.training.probe import fit_probe

    config = TrainConfig(data=DataConfig(root=str(root)), strategy="extract", backbone=LIVE_BACKBONE, quiet=quiet)
    prepared = prepare_data(config)
    x, y, paths = every_image_features(config, prepared)
    n, classes = len(prepared.train), prepared.dataset.classes
    probe = fit_probe(x[:n], y[:n], len(classes))
    backbone, spec, _ = create_backbone(LIVE_BACKBONE)
    backbone.eval()

    def answers(photos: list[Path], change: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
        crops = []
        for path in photos:
            try:
                picture = change(load_rgb(path, config.data.background))
            except (UnreadableImage, OSError):
                continue
            crops.append(eval_view(decoded_view(picture, spec.resize_size), spec.input_size))
        predicted = []
        with torch.inference_mode():
            for start in range(0, len(crops), BATCH):
                batch = normalize(torch.stack(crops[start : start + BATCH]), spec)
                predicted.append(probe.logits(backbone(batch)).argmax(1))
        return torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)

    tested = []
    val_labels, val_paths = y[n:], paths[n:]
    for finding, hider in found:
        k = classes.index(finding.class_name)
        chosen = [val_paths[i] for i in np.flatnonzero((val_labels != k if hider.others else val_labels == k).numpy())]
        before, after = answers(chosen, lambda p: p), answers(chosen, hider.apply)
        if not len(before):
            tested.append(finding)
            continue
        test = CueTest(how=hider.how, photos=len(before), before=float((before == k).float().mean()),
                       after=float((after == k).float().mean()), others=hider.others)  # fmt: skip
        message = f"{finding.message}. Put to a model: {test.sentence(finding.class_name)}"
        tested.append(replace(finding, message=message, cue_test=test))
    return tested
