"""transferlab: build an image classifier from a folder of photos by transfer learning, and find out which
transfer strategy (fine-tuning, feature extraction or two-stage) to use, with evidence.

Python API (everything the `transferlab` command does):

    from transferlab import TrainConfig, DataConfig, train, compare, load_run
    result = compare(TrainConfig(DataConfig("photos/"), backbone="efficientnet_lite0"))
    clf = load_run(result.results[0].run_dir)
    clf.predict("my_cat.png")

Each command has its function: train, compare, resume, diagnose and check_labels (doctor), split_folder (split),
collect_photos (collect), evaluate_run, Classifier.predict_files (predict), export_run, create_app (serve);
plot_* return matplotlib Figures that notebooks show inline.

The data path, one module each: folder -> samples (`data`) -> pictures decoded once (`images`, `presets`,
`decoding`, `prepare`) -> frozen-backbone features, cached (`features`) -> model (`backbones`, `weights`, `model`)
-> batches (`loaders`) and epochs (`engine`), stage by stage (`training`, `comparison`) -> run folder (`runs`) ->
evaluation and report (`evaluate`, `results`, `plots`, `report`). Before it, building the folder: `collect`
(downloads), `inspection`, `doctor`, `fingerprints`, `label_issues` and `quarantine_folder` (checking it), `splitting`
(train/val without leaks). After it: `predict` (with `unknown`), `export`, `serve`; and the `cli`.

Importing the package loads nothing heavy: each name below is imported from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BACKBONES": ("backbones", "REGISTRY"), "register": ("backbones", "register"),
    "create_backbone": ("model", "create_backbone"),
    "RECIPES": ("config", "RECIPES"), "DataConfig": ("config", "DataConfig"), "Recipe": ("config", "Recipe"),
    "TrainConfig": ("config", "TrainConfig"),
    "DatasetError": ("errors", "DatasetError"), "TransferlabError": ("errors", "TransferlabError"),
    "load_dataset": ("data", "load_dataset"), "load_rgb": ("images", "load_rgb"),
    "diagnose": ("doctor", "diagnose"), "quarantine": ("quarantine_folder", "quarantine"),
    "check_labels": ("label_issues", "check_labels"), "split_folder": ("splitting", "split_folder"),
    "collect_photos": ("collect", "collect"),
    "restore": ("quarantine_folder", "restore"),
    "prepare_data": ("prepare", "prepare_data"),
    "RunResult": ("training", "RunResult"), "train": ("training", "train"), "resume": ("resuming", "resume"),
    "Comparison": ("comparison", "Comparison"), "compare": ("comparison", "compare"),
    "evaluate_run": ("evaluate", "evaluate_run"), "export_run": ("export", "export_run"),
    "Classifier": ("predict", "Classifier"), "Prediction": ("predict", "Prediction"), "load_run": ("predict", "load_run"),
    "load_runs": ("results", "load_runs"), "text_table": ("results", "text_table"),
    "plot_curves": ("plots", "plot_curves"), "plot_accuracy_vs_time": ("plots", "plot_accuracy_vs_time"),
    "plot_time_breakdown": ("plots", "plot_time_breakdown"), "write_report": ("report", "write_report"),
    "create_app": ("serve", "create_app"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'transferlab' has no attribute '{name}'")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
