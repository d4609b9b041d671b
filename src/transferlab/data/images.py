"""Decode any image file into an RGB picture, the same way for training and for prediction.

Web-collected photo folders hold every mode Pillow knows: RGBA and LA with alpha, palette images with a
transparent colour, CMYK, 16-bit grayscale, phone photos rotated by an EXIF tag. `load_rgb` turns each into an
8-bit RGB image: transparency is composited onto a background colour (plain `.convert("RGB")` would paint
transparent pixels black), 16-bit samples are scaled rather than clipped, and EXIF orientation is applied.
A file that cannot be decoded raises `UnreadableImage` with a one-line reason.

Phone and browser formats are read too: HEIC/HEIF through `pi-heif` (pillow-heif's decode-only build, LGPL; registered
with Pillow when this module is imported, so every reader of photos - training, prediction, the web app, the
doctor, collect, split - opens them) and AVIF through Pillow itself (11.3 and later).
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from transferlab.errors import UnreadableImage

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".heic",
    ".heif",
    ".avif",
)
DEFAULT_BACKGROUND = (255, 255, 255)

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

VAL_DIR_NAMES = ("val", "valid", "validation")  # a validation folder beside train/ may have any of these names


def _register_heif() -> bool:
    """Teach Pillow to open HEIC/HEIF (phone photos); False when neither pi-heif nor pillow-heif is installed."""
    for name in ("pi_heif", "pillow_heif"):  # the decode-only build first: reading is all this tool does
        try:
            module = __import__(name)
        except ImportError:
            continue
        module.register_heif_opener()
        return True
    return False  # pi-heif is a dependency, so only a broken install lands here: HEIC files are named unreadable


HEIF_READABLE = _register_heif()


SYSTEM_FOLDERS = frozenset({"__MACOSX", "@eaDir", "__pycache__", "$RECYCLE.BIN", "System Volume Information"})
PILE_DIR = "_unsorted"  # photos not sorted yet (the studio's Inbox): in the folder, not a class


def is_hidden_name(name: str) -> bool:
    """Hidden files and folders (a leading dot), the folders archivers and operating systems leave behind
    (`__MACOSX` from a zip, a NAS's `@eaDir` thumbnails, ...) and the unsorted pile (`PILE_DIR`): never a class,
    never a class's photo."""
    return name.startswith(".") or name in SYSTEM_FOLDERS or name == PILE_DIR


def is_hidden_below(path: Path, base: Path) -> bool:
    """A file under `base` inside a hidden or left-behind folder, or hidden itself (`is_hidden_name`)."""
    return any(map(is_hidden_name, path.relative_to(base).parts))


def is_image_file(path: Path) -> bool:
    """True when the file name has an image extension this tool reads."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_rgb(
    source: str | Path | BinaryIO | Image.Image,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    min_side: int | None = None,
) -> Image.Image:
    """Open an image file (or take a PIL image) and return it as an upright 8-bit RGB image.

    `min_side` lets JPEG decoding skip work: the decoder may return a smaller image (never with a short
    side below `min_side`), which is much faster for multi-megapixel photos that are resized anyway.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = nullcontext(source) if isinstance(source, Image.Image) else Image.open(source)
            with opened as image:
                if min_side and image.format == "JPEG":
                    image.draft("RGB", (min_side, min_side))
                image.load()
                upright = ImageOps.exif_transpose(image)  # always a new image, so closing `image` is safe
                return to_rgb(upright, background)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(f"decompression bomb: {error}") from None
    except UnreadableImage:
        raise
    except FileNotFoundError:
        raise UnreadableImage("file not found") from None
    except Image.UnidentifiedImageError:
        raise UnreadableImage("not an image Pillow can identify") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise UnreadableImage(f"cannot decode: {error}") from None


def short_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the short side `size` and the long side scaled and truncated, as torchvision's Resize."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def centre_corner(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of the centred `size` x `size` crop, rounded as torchvision's CenterCrop."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Bilinear resize so the short side is `size` (torchvision's Resize(size) on a PIL picture, pixel for pixel,
    without importing torchvision: prediction starts faster)."""
    new_w, new_h = short_side_size(*image.size, size)
    if (new_w, new_h) == image.size:
        return image
    return image.resize((new_w, new_h), resample=Image.Resampling.BILINEAR)


def eval_crop(image: Image.Image, resize_size: int, input_size: int) -> np.ndarray:
    """The evaluation input as uint8 (S, S, 3) RGB pixels: short side resized to `resize_size`, centre-cropped to
    `input_size`. The same pixels as `presets.eval_view(decoded_view(...))`, with Pillow and numpy alone: what an
    exported model is fed (it does the scaling and normalization itself)."""
    if resize_size < input_size:
        raise ValueError(f"resize size {resize_size} is smaller than the crop {input_size}")
    pixels = np.asarray(resize_short_side(image, resize_size))
    top, left = centre_corner(pixels.shape[0], pixels.shape[1], input_size)
    return np.ascontiguousarray(pixels[top : top + input_size, left : left + input_size])


def load_crop(
    source: str | Path | BinaryIO | Image.Image, background: tuple[int, int, int], resize_size: int, input_size: int
) -> np.ndarray:
    """A photo as an exported model takes it: `load_rgb` (decoded no smaller than the resize), then `eval_crop`."""
    return eval_crop(load_rgb(source, background, min_side=resize_size), resize_size, input_size)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = DEFAULT_BACKGROUND) -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit RGB, compositing transparency onto `background`."""
    if image.mode in _HIGH_BIT_MODES:
        image = _high_bit_to_l(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _high_bit_to_l(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer or float samples to 8 bits instead of clipping them at 255."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if array.max(initial=0.0) <= 1.0 else 255.0
    else:
        top = 65535.0 if array.max(initial=0.0) > 255 else 255.0
    scaled = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")
