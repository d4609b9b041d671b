"""Building and checking a photo folder: `collect` (downloads), `doctor` (what is wrong), `label_issues` (likely wrong
labels), `quarantine` (set files aside, put them back), `splitting` (train/val without leaks) and `demo` (the
tutorial's photos, online).
"""

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "diagnose": "doctor",
    "DoctorReport": "doctor",
    "check_labels": "label_issues",
    "restore": "quarantine",
    "split_folder": "splitting",
    "demo_dataset": "demo",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
