"""transferlab: build an image classifier from a folder of photos by transfer learning, and find out which
transfer strategy (fine-tuning or feature extraction) to use, with evidence.

Python API (everything the `transferlab` command does):

    from transferlab import TrainConfig, DataConfig, train, compare, load_run
    result = compare(TrainConfig(DataConfig("photos/"), backbone="efficientnet_lite0"))
    clf = load_run(result.results[0].run_dir)
    clf.predict("my_cat.png")
"""

from .backbones import REGISTRY as BACKBONES
from .backbones import create_backbone, register
from .config import RECIPES, DataConfig, Recipe, TrainConfig
from .data import DatasetError, load_dataset
from .images import load_rgb
from .predict import Classifier, Prediction, load_run
from .report import load_runs, plot_accuracy_vs_time, plot_curves, plot_time_breakdown, text_table, write_report
from .training import Comparison, RunResult, compare, prepare_data, train

__all__ = [
    "BACKBONES", "RECIPES", "Classifier", "Comparison", "DataConfig", "DatasetError", "Prediction", "Recipe",
    "RunResult", "TrainConfig", "compare", "create_backbone", "load_dataset", "load_rgb", "load_run", "load_runs",
    "plot_accuracy_vs_time", "plot_curves", "plot_time_breakdown", "prepare_data", "register", "text_table",
    "train", "write_report",
]
