"""Picture galleries: thumbnails of photos with a caption each, as a matplotlib Figure (evaluation's top losses and
prediction grid, the label check's suspects)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure

from transferlab.data.images import load_rgb


def gallery(paths: list, indices: list[int], title: str, caption: Callable[[int], tuple[str, bool]]) -> Figure:
    """Thumbnails of paths[i] for i in `indices`, four a row, each titled by caption(i) -> (text, shown in red)."""
    columns = 4
    rows = max(1, -(-len(indices) // columns))
    fig = Figure(figsize=(3 * columns, 3.1 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, indices):
        picture = load_rgb(paths[i], min_side=256)
        picture.thumbnail((256, 256))
        ax.imshow(picture)
        text, wrong = caption(i)
        ax.set_title(text, fontsize=8, color="red" if wrong else "black")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
