"""The store's names for what is computed from a photo: its decoded pictures, its fingerprint, a backbone's features
of one view of it. Plain strings, no torch: a command that only reads stored vectors (`suggest` once every photo
has them) names them without importing the networks."""

from __future__ import annotations


def picture_space(size: int, crop: int | None, background: tuple[int, int, int]) -> str:
    """The store's name for pictures decoded this way (the training view, or the evaluation crop)."""
    view = f"resize{size}-crop{crop}" if crop else f"short-side-at-most{size}"
    return f"picture/{view}/background{','.join(map(str, background))}/v1"


def fingerprint_space(background: tuple[int, int, int]) -> str:
    return f"fingerprint/background{','.join(map(str, background))}/v1"


def feature_space(backbone: str, pictures: str, view: str) -> str:
    """The store's name for a backbone's features (`backbone`: its identity) of one view of pictures decoded as
    `pictures` (`picture_space`)."""
    return f"features/{backbone}/{pictures}/{view}"
