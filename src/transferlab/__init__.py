"""transferlab: build an image classifier from a folder of photos by transfer learning, and find out which
transfer strategy (fine-tuning, feature extraction or two-stage) to use, with evidence.

Python API (everything the `transferlab` command does):

    from transferlab import TrainConfig, DataConfig, train, compare, load_run
    result = compare(TrainConfig(data=DataConfig(root="photos/"), backbone="efficientnet_lite0"))
    clf = load_run(result.results[0].run_dir)
    clf.predict("my_cat.png")

Each command has its function: train, compare, resume, diagnose and check_labels (doctor), split_folder (split),
collect_photos (collect), evaluate_run, Classifier.predict_files (predict), export_run and export_int8 (export),
create_app (serve);
plot_* return matplotlib Figures that notebooks show inline.

The subpackages are the architecture, each one concern, each importing only the layers below it
(docs/architecture.md; tests/test_architecture.py enforces it): `utils`, `models`, `data`, `inference`,
`analysis`, `training`, `curate`, `cli`; beside them `config` (settings), `errors` (what users see) and `runs`
(the run-folder contract). Importing the package loads nothing heavy: each name below is imported from its module
on first use.
"""

from __future__ import annotations

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "BACKBONES": ("models.backbones", "REGISTRY"),
    "register": ("models.backbones", "register"),
    "create_backbone": ("models.model", "create_backbone"),
    "RECIPES": ("config", "RECIPES"),
    "DataConfig": ("config", "DataConfig"),
    "Recipe": ("config", "Recipe"),
    "TrainConfig": ("config", "TrainConfig"),
    "DatasetError": ("errors", "DatasetError"),
    "TransferlabError": ("errors", "TransferlabError"),
    "load_dataset": ("data.layout", "load_dataset"),
    "load_rgb": ("data.images", "load_rgb"),
    "diagnose": ("curate.doctor", "diagnose"),
    "quarantine": ("curate.quarantine", "quarantine"),
    "check_labels": ("curate.label_issues", "check_labels"),
    "split_folder": ("curate.splitting", "split_folder"),
    "collect_photos": ("curate.collect", "collect"),
    "restore": ("curate.quarantine", "restore"),
    "prepare_data": ("data.prepare", "prepare_data"),
    "RunResult": ("training.run_folder", "RunResult"),
    "train": ("training.trainer", "train"),
    "resume": ("training.resuming", "resume"),
    "Comparison": ("training.driver", "Comparison"),
    "compare": ("training.comparison", "compare"),
    "evaluate_run": ("analysis.evaluate", "evaluate_run"),
    "export_run": ("inference.export", "export_run"),
    "export_int8": ("analysis.quantize", "export_int8"),
    "Classifier": ("inference.predict", "Classifier"),
    "Prediction": ("inference.predict", "Prediction"),
    "load_run": ("inference.predict", "load_run"),
    "load_runs": ("analysis.results", "load_runs"),
    "text_table": ("analysis.results", "text_table"),
    "plot_curves": ("analysis.plots", "plot_curves"),
    "plot_accuracy_vs_time": ("analysis.plots", "plot_accuracy_vs_time"),
    "plot_time_breakdown": ("analysis.plots", "plot_time_breakdown"),
    "write_report": ("analysis.report", "write_report"),
    "create_app": ("inference.serve", "create_app"),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
