"""transferlab: build an image classifier from a folder of photos by transfer learning, and find out which
transfer strategy (fine-tuning, feature extraction or two-stage) to use, with evidence.

Python API (everything the `transferlab` command does):

    from transferlab import TrainConfig, DataConfig, train, compare, load_run
    result = compare(TrainConfig(DataConfig("photos/"), backbone="efficientnet_lite0"))
    clf = load_run(result.results[0].run_dir)
    clf.predict("my_cat.png")

Each command has its function: train, compare, resume, diagnose (doctor), evaluate_run, Classifier.predict_files
(predict), export_run, create_app (serve); plot_* return matplotlib Figures that notebooks show inline.
"""

from .backbones import REGISTRY as BACKBONES
from .backbones import create_backbone, register
from .config import RECIPES, DataConfig, Recipe, TrainConfig
from .data import DatasetError, load_dataset
from .doctor import diagnose, quarantine, restore
from .evaluate import evaluate_run
from .export import export_run
from .images import load_rgb
from .predict import Classifier, Prediction, load_run
from .report import load_runs, plot_accuracy_vs_time, plot_curves, plot_time_breakdown, text_table, write_report
from .training import Comparison, RunResult, compare, prepare_data, resume, train


def create_app(run_dir, **limits):
    """The web app of `transferlab serve` (FastAPI), for a run directory."""
    from .serve import create_app as _create_app

    return _create_app(run_dir, **limits)

__all__ = [
    "BACKBONES", "RECIPES", "Classifier", "Comparison", "DataConfig", "DatasetError", "Prediction", "Recipe",
    "RunResult", "TrainConfig", "compare", "create_app", "create_backbone", "diagnose", "evaluate_run",
    "export_run", "load_dataset", "load_rgb", "load_run", "load_runs", "plot_accuracy_vs_time", "plot_curves",
    "plot_time_breakdown", "prepare_data", "quarantine", "register", "restore", "resume", "text_table", "train",
    "write_report",
]
