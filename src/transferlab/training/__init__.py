"""Training and the workflows around it: the epoch loop (`engine`), checkpoints (`checkpoint`), frozen features
(`features`), the probe (`probe`), one run (`trainer`), resuming (`resuming`), the unknown detector's fitting
(`calibrate`), and the drivers of many runs: `comparison` and `budget` (`fit --budget`).
"""

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "train": "trainer",
    "RunResult": "run_folder",
    "TrainingInterrupted": "run_folder",
    "resume": "resuming",
    "compare": "comparison",
    "Comparison": "driver",
    "fit_within": "budget",
    "parse_duration": "budget",
    "CheckpointSaver": "checkpoint",
    "fit_probe": "probe",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
