"""How close does each way of resizing the ensemble's crop bring a member's features to those of its own view?

    python benchmarks/member_resize.py ../shared/datasets/animals4 ../shared/datasets/flowers5 [--photos 200]

The ensemble EfficientNet-Lite0+1+2 takes one crop, Lite2's view (short side 297, centre 260), and resizes it inside
the network for Lite0 (224) and Lite1 (240). Alone, each of them decodes its own view from the photo (256/224,
274/240). For the first --photos photos of each folder (train/ then val/) this prints, per member and resize, the
relative difference ||f_resized - f_own|| / ||f_own|| of the member's features (pooled head and last two stages, as
the ensemble gives them). This is what chose `models.ensemble.MEMBER_RESIZE`; labels and accuracies play no part.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from transferlab.data.decoding import decode_split
from transferlab.data.layout import load_dataset
from transferlab.models.backbones import get_spec
from transferlab.models.model import create_backbone

ENSEMBLE = "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2"
RESIZES = {
    "bicubic": {"mode": "bicubic"},
    "bicubic antialiased": {"mode": "bicubic", "antialias": True},
    "bilinear": {"mode": "bilinear"},
    "bilinear antialiased": {"mode": "bilinear", "antialias": True},
    "area": {"mode": "area"},
}


def pixels(samples: list, resize: int, crop: int) -> torch.Tensor:
    return torch.stack(decode_split(samples, resize, crop, quiet=True).images).float() / 255


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--photos", type=int, default=200)
    args = parser.parse_args()
    spec = get_spec(ENSEMBLE)
    ensemble, _, _ = create_backbone(ENSEMBLE)
    ensemble.eval()
    print("| folder | member | " + " | ".join(RESIZES) + " |\n|---|---|" + "---|" * len(RESIZES))
    for folder in args.folders:
        given = load_dataset(folder)
        samples = (given.train + given.val)[: args.photos]
        crops = pixels(samples, spec.resize_size, spec.input_size)
        for k, name in enumerate(ENSEMBLE.split("+")[:2]):  # the members whose view is not the ensemble's
            own_spec, member = get_spec(name), ensemble.members[k]
            mean, std = ensemble.means[k].view(1, 3, 1, 1), ensemble.stds[k].view(1, 3, 1, 1)
            own = member((pixels(samples, own_spec.resize_size, own_spec.input_size) - mean) / std)
            cells = []
            for how in RESIZES.values():
                size = (own_spec.input_size, own_spec.input_size)
                resized = torch.cat([F.interpolate(c, size=size, **how) for c in crops.split(50)]).clamp(0, 1)
                features = torch.cat([member((r - mean) / std) for r in resized.split(50)])
                cells.append(f"{float((features - own).norm() / own.norm()):.3f}")
            print(f"| {folder} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
