"""Turn finished runs into evidence: the comparison table, where the time went, plots and `report.md`.

Every function takes run summaries/metrics (plain dicts read from run directories), so a report can be rebuilt
from disk at any time (`write_report(compare_dir)`), and each plot function returns a matplotlib Figure that a
notebook shows inline.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # figures without pyplot: no GUI backend, no global state

from .runs import read_json, read_metrics

COLUMNS = ("strategy", "best val acc", "best epoch", "total time", "time/epoch", "trainable params",
           "waiting for data", "verdict")


def load_runs(compare_dir: str | Path) -> list[dict]:
    """The runs inside a compare folder: each {"name", "dir", "summary", "metrics", "config"}."""
    runs = []
    for run_dir in sorted(p for p in Path(compare_dir).iterdir() if (p / "summary.json").exists()):
        runs.append({"name": run_dir.name, "dir": run_dir, "summary": read_json(run_dir / "summary.json"),
                     "metrics": read_metrics(run_dir), "config": read_json(run_dir / "config.json")})
    order = {"finetune": 0, "extract": 1}
    return sorted(runs, key=lambda r: (order.get(r["summary"]["strategy"], 9), r["name"]))


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def verdict(summary: dict) -> str:
    """One line on what limited the run's speed."""
    share = summary.get("data_share")
    if share is None:
        return "-"
    if share >= 0.5:
        return f"data-bound: {share:.0%} of the time preparing images"
    compute = (summary.get("feature_seconds", 0) + summary.get("compute_seconds", 0) + summary.get("val_seconds", 0))
    return f"compute-bound: {compute / summary['total_seconds']:.0%} of the time in the network"


def table_rows(runs: list[dict]) -> list[list[str]]:
    rows = []
    for run in runs:
        s = run["summary"]
        acc = f"{s['best_val_acc']:.1%}" if s.get("best_val_acc") is not None else "-"
        status = "" if s["status"] == "completed" else f" ({s['status']})"
        rows.append([s["strategy"] + status, acc, str(s.get("best_epoch") or "-"), format_seconds(s.get("total_seconds")),
                     format_seconds(s.get("seconds_per_epoch")), f"{s['trainable_params']:,}",
                     f"{s['data_share']:.0%}" if s.get("data_share") is not None else "-", verdict(s)])
    return rows


def text_table(runs: list[dict]) -> str:
    """The comparison as a fixed-width text table, for the terminal."""
    rows = [list(COLUMNS)] + table_rows(runs)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(runs: list[dict]) -> str:
    rows = table_rows(runs)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def time_breakdown(summary: dict) -> dict[str, float]:
    """Seconds spent in each phase of a run."""
    return {
        "decode images once": summary.get("decode_seconds", 0.0),
        "frozen-backbone features": summary.get("feature_seconds", 0.0),
        "waiting for batches": summary.get("data_seconds", 0.0),
        "training compute": summary.get("compute_seconds", 0.0),
        "validation": summary.get("val_seconds", 0.0),
    }


def explain_times(runs: list[dict]) -> str:
    """Plain-words account of why the strategies' times differ."""
    lines = []
    for run in runs:
        s = run["summary"]
        parts = ", ".join(f"{name} {format_seconds(sec)}" for name, sec in time_breakdown(s).items() if sec > 0.05)
        lines.append(f"- **{s['strategy']}** ({format_seconds(s.get('total_seconds'))}): {parts}.")
    done = {r["summary"]["strategy"]: r["summary"] for r in runs}
    if "finetune" in done and "extract" in done and done["extract"].get("total_seconds"):
        ft, ex = done["finetune"], done["extract"]
        ratio = ft["total_seconds"] / ex["total_seconds"]
        lines.append("")
        lines.append(
            f"Fine-tuning took {ratio:.1f}x as long as feature extraction. Fine-tuning runs the whole network "
            f"forward and backward on every image in every epoch ({format_seconds(ft.get('compute_seconds'))} of "
            f"training compute). Feature extraction here runs the frozen backbone forward once per cached view "
            f"({format_seconds(ex.get('feature_seconds'))}) and then trains only the linear head on stored feature "
            f"vectors ({format_seconds(ex.get('compute_seconds'))} in all). Both decoded each photo once "
            f"({format_seconds(ft.get('decode_seconds'))}, shared): in the reference project every epoch decoded and "
            "resized every photo again and re-ran the frozen backbone, which is why its feature extraction was "
            "barely faster than fine-tuning.")
    return "\n".join(lines)


def plot_curves(runs: list[dict]) -> Figure:
    """Loss and accuracy per epoch for each strategy, on shared axes."""
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, run in enumerate(runs):
        m = run["metrics"]
        if not m:
            continue
        color = f"C{i}"
        epochs = [r["epoch"] for r in m]
        label = run["summary"]["strategy"]
        ax_loss.plot(epochs, [r["train_loss"] for r in m], color=color, linestyle="--", label=f"{label} train")
        ax_loss.plot(epochs, [r["val_loss"] for r in m], color=color, label=f"{label} val")
        ax_acc.plot(epochs, [r["train_acc"] for r in m], color=color, linestyle="--", label=f"{label} train")
        ax_acc.plot(epochs, [r["val_acc"] for r in m], color=color, label=f"{label} val")
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="cross-entropy loss")
    ax_acc.set(title="Accuracy per epoch", xlabel="epoch", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_time(runs: list[dict]) -> Figure:
    """Best validation accuracy against total training time, one point per strategy."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for i, run in enumerate(runs):
        s = run["summary"]
        if s.get("best_val_acc") is None:
            continue
        ax.scatter([s["total_seconds"]], [s["best_val_acc"]], color=f"C{i}", s=60)
        ax.annotate(s["strategy"], (s["total_seconds"], s["best_val_acc"]), textcoords="offset points",
                    xytext=(6, 6))
    ax.set(title="Best validation accuracy vs training time", xlabel="total time (s)", ylabel="best val accuracy")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_time_breakdown(runs: list[dict]) -> Figure:
    """Stacked bars: where each strategy's seconds went."""
    fig = Figure(figsize=(7, 1.2 + 0.6 * len(runs)))
    ax = fig.subplots()
    names = [r["summary"]["strategy"] for r in runs]
    left = [0.0] * len(runs)
    for j, phase in enumerate(time_breakdown({})):
        values = [time_breakdown(r["summary"])[phase] for r in runs]
        ax.barh(names, values, left=left, color=f"C{j}", label=phase)
        left = [a + b for a, b in zip(left, values)]
    ax.set(title="Where the time went", xlabel="seconds")
    ax.legend(fontsize=7, loc="lower right")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def write_report(compare_dir: str | Path, title: str = "transferlab comparison") -> Path:
    """Write plots and report.md into a compare folder; return the report's path."""
    compare_dir = Path(compare_dir)
    runs = load_runs(compare_dir)
    plots = {"curves.png": plot_curves(runs), "accuracy_vs_time.png": plot_accuracy_vs_time(runs),
             "time_breakdown.png": plot_time_breakdown(runs)}
    for name, fig in plots.items():
        fig.savefig(compare_dir / name, dpi=110)
    first = runs[0]["config"] if runs else {}
    resolved = first.get("resolved", {})
    skipped = resolved.get("skipped_files", [])
    lines = [f"# {title}", ""]
    if first:
        recipe = first["recipe"]
        lines += [
            f"- data: `{first['data']['root']}` ({resolved.get('layout')}); classes: {', '.join(resolved.get('classes', []))}",
            f"- images: {_counts_line(resolved.get('counts', {}))}",
            f"- backbone: {first['backbone']} (weights: {resolved.get('weights', {}).get('source')}, "
            f"{resolved.get('weights', {}).get('name')}); device: {resolved.get('device')}; seed: {first['seed']}",
            f"- recipe `{recipe['name']}`: {recipe['epochs']} epochs, batch {recipe['batch_size']}, SGD lr {recipe['lr']} "
            f"momentum {recipe['momentum']}, StepLR({recipe['step_size']}, {recipe['gamma']}); extract caches "
            f"{first['views']} augmented view(s) per training image",
            f"- unreadable files skipped: {len(skipped)}" + "".join(f"\n  - `{p}`: {why}" for p, why in skipped),
            "",
        ]
    lines += ["## Results", "", markdown_table(runs), "",
              "Total time counts decoding the photos (done once and shared by the strategies, but counted in each, "
              "as a run on its own would pay it), computing cached features, training and validating every epoch.",
              "", "## Why the times differ", "", explain_times(runs), "",
              "![where the time went](time_breakdown.png)", "", "## Learning curves", "", "![curves](curves.png)", "",
              "## Accuracy against time", "", "![accuracy vs time](accuracy_vs_time.png)", ""]
    path = compare_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _counts_line(counts: dict) -> str:
    parts = []
    for split, per_class in counts.items():
        parts.append(f"{split} {sum(per_class.values())} (" + ", ".join(f"{k} {v}" for k, v in per_class.items()) + ")")
    return "; ".join(parts)
