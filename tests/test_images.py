"""Every image mode loads as upright 8-bit RGB, transparency is composited, and broken files fail clearly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from transferlab.data.images import UnreadableImage, load_rgb


def _saved(image: Image.Image, fmt: str, **params) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    buffer.seek(0)
    return buffer


def test_rgba_transparent_pixel_becomes_background_not_black():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent (and black underneath)
    out = load_rgb(_saved(rgba, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((4, 4)) == (255, 0, 0)


def test_half_transparent_pixel_is_blended_with_background():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    out = load_rgb(_saved(rgba, "PNG"), background=(255, 255, 255))
    assert 120 <= out.getpixel((1, 1))[0] <= 135


def test_la_transparent_pixel_is_not_black():
    la = Image.new("LA", (4, 4), (0, 0))
    assert load_rgb(_saved(la, "PNG")).getpixel((2, 2)) == (255, 255, 255)


def test_palette_with_transparent_index_is_composited():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    palette.putpixel((1, 1), 1)
    buffer = _saved(palette, "PNG", transparency=0)
    out = load_rgb(buffer, background=(250, 250, 250))
    assert out.getpixel((0, 0)) == (250, 250, 250)
    assert out.getpixel((1, 1)) == (10, 200, 10)


def test_palette_gif_with_transparency_is_composited():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    out = load_rgb(_saved(palette, "GIF", transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_jpeg_loads_as_rgb():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = load_rgb(_saved(cmyk, "JPEG"))
    r, g, b = out.getpixel((4, 4))
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16bit_grayscale_is_scaled_not_clipped():
    array = np.full((4, 4), 32768, dtype=np.uint16)  # mid grey in 16 bits
    image = Image.fromarray(array)
    out = load_rgb(_saved(image, "PNG"))
    assert out.mode == "RGB"
    assert 126 <= out.getpixel((0, 0))[0] <= 130


def test_grayscale_and_bilevel_load_as_rgb():
    assert load_rgb(_saved(Image.new("L", (4, 4), 77), "PNG")).getpixel((0, 0)) == (77, 77, 77)
    assert load_rgb(_saved(Image.new("1", (4, 4), 1), "PNG")).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_rgb(_saved(image, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_jpeg_draft_keeps_short_side_at_least_requested():
    image = Image.new("RGB", (2000, 1000), (10, 20, 30))
    out = load_rgb(_saved(image, "JPEG"), min_side=256)
    assert min(out.size) >= 256 and out.size[0] < 2000


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "identify"),
        (b"this is not an image", "identify"),
    ],
)
def test_non_images_raise_unreadable_image(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage, match=reason):
        load_rgb(path)


def test_truncated_jpeg_raises_unreadable_image(tmp_path):
    data = _saved(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG").getvalue()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="cannot decode"):
        load_rgb(path)


def test_missing_file_raises_unreadable_image(tmp_path):
    with pytest.raises(UnreadableImage, match="not found"):
        load_rgb(tmp_path / "nope.png")
