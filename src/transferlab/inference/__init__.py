"""Using a trained run: `predict` (the `Classifier`), the "unknown" answer (`unknown`), `export` (ONNX, TorchScript,
with a parity check) and `serve` (a local web app). Imports no training code.
"""

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "Classifier": "predict",
    "Prediction": "predict",
    "load_run": "predict",
    "UnknownDetector": "unknown",
    "load_detector": "unknown",
    "export_run": "export",
    "ParityError": "export",
    "create_app": "serve",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
