"""From a photo folder to network inputs: the folder's layout and split (`layout`), decoding any image (`images`),
fingerprints and per-file inspection (`fingerprints`, `inspection`), presets (`presets`), every picture decoded once
(`decoding`, `prepare`), and batches (`loaders`).
"""

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "Sample": "layout",
    "Dataset": "layout",
    "load_dataset": "layout",
    "split_samples": "layout",
    "load_rgb": "images",
    "is_image_file": "images",
    "inspect_folder": "inspection",
    "PreparedData": "prepare",
    "prepare_data": "prepare",
    "decode_split": "decoding",
    "DecodedSplit": "decoding",
    "eval_view": "presets",
    "train_view": "presets",
    "normalize": "presets",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
