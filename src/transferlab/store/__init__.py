"""The per-photo store: what transferlab computed from each photo's bytes (decoded pictures, perceptual fingerprints,
frozen features), kept on disk so a photo is decoded and passed through a backbone once, whatever its name, class or
split. It knows bytes, arrays and spaces, not strategies: the layers above name the spaces (`photos.PhotoStore`).
`hashes.photo_keys` names each photo by a hash of its bytes, remembered per file so unchanged files are not read.
"""

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "PhotoStore": "photos",
    "StoreUsage": "photos",
    "open_store": "photos",
    "photo_keys": "hashes",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
