"""Picture galleries: thumbnails of photos with a caption each, drawn with Pillow into one picture (evaluation's
top losses and prediction grid, the label check's suspects). Pillow, not matplotlib: sixteen photos in
matplotlib's subplots took 1.4 s to lay out and draw, every run; here they take a tenth of that (measured)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from transferlab.data.images import load_rgb
from transferlab.errors import UnreadableImage

COLUMNS = 4
CELL = 300  # pixels: each photo's square, its caption above it
THUMB = 256
LINE = 15  # caption line height


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib), else Pillow's own font."""
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")), size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def _fitted(text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """`text` cut with an ellipsis where it would be wider than `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def gallery(
    paths: list,
    indices: list[int],
    title: str,
    caption: Callable[[int], tuple[str, bool]],
    picture: Callable[[int], Image.Image] | None = None,
) -> Image.Image:
    """Thumbnails of paths[i] for i in `indices`, four a row, each captioned by caption(i) -> (text, shown in red);
    with `picture`, picture(i) is shown instead of the photo (a heat map's overlay). An unreadable photo leaves its
    square grey."""
    captions = [caption(i) for i in indices]
    lines = max([1, *(len(text.splitlines()) for text, _ in captions)])
    cell_height = CELL + LINE * max(0, lines - 2)
    rows = max(1, -(-len(indices) // COLUMNS))
    top = 36
    sheet = Image.new("RGB", (COLUMNS * CELL, top + rows * cell_height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((COLUMNS * CELL // 2, 10), title, fill="black", font=_font(16), anchor="mt")
    small = _font(11)
    for n, (i, (text, wrong)) in enumerate(zip(indices, captions)):
        x, y = (n % COLUMNS) * CELL, top + (n // COLUMNS) * cell_height
        for k, line in enumerate(text.splitlines()):
            colour = "red" if wrong else "black"
            draw.text((x + CELL // 2, y + 2 + LINE * k), _fitted(line, CELL - 8, small), colour, small, "mt")
        picture_top = y + 4 + LINE * lines
        try:
            shown = picture(i) if picture is not None else load_rgb(paths[i], min_side=THUMB)
            shown.thumbnail((THUMB, THUMB))
        except UnreadableImage:  # a gallery shows what it can; the evaluation already counted the photo
            draw.rectangle((x + (CELL - THUMB) // 2, picture_top, x + (CELL + THUMB) // 2, picture_top + THUMB), "#ddd")
            continue
        sheet.paste(shown, (x + (CELL - shown.width) // 2, picture_top))
    return sheet
