"""What the runs mean: evaluation with intervals (`evaluate`), statistics (`stats`), runs read back (`results`), the
answer (`recommendation`), plots, galleries and the report.
"""

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "evaluate_run": "evaluate",
    "evaluate_decoded": "evaluate",
    "Evaluation": "evaluate",
    "wilson_interval": "evaluate",
    "paired_bootstrap": "stats",
    "load_runs": "results",
    "text_table": "results",
    "recommend": "recommendation",
    "Recommendation": "recommendation",
    "plot_curves": "plots",
    "plot_accuracy_vs_time": "plots",
    "plot_time_breakdown": "plots",
    "write_report": "report",
    "gallery": "gallery",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
