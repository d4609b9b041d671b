"""Machine plumbing every layer may use: the cache folder and atomic JSON (`storage`), worker processes (`parallel`),
allocator settings (`machine`), torchrun set-up (`distributed`), the device (`device`).
"""

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "cache_dir": "storage",
    "save_json": "storage",
    "read_json": "storage",
    "parallel_map": "parallel",
    "parallel_imap": "parallel",
    "default_workers": "parallel",
    "cpu_cores": "parallel",
    "keep_freed_memory": "machine",
    "Dist": "distributed",
    "setup": "distributed",
    "resolve_device": "device",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
