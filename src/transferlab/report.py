"""Turn finished runs into evidence: the comparison table, where the time went, plots and `report.md`.

Every function takes run summaries/metrics (plain dicts read from run directories), so a report can be rebuilt
from disk at any time (`write_report(compare_dir)`), and each plot function returns a matplotlib Figure that a
notebook shows inline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # figures without pyplot: no GUI backend, no global state

from .evaluate import evaluation_markdown, read_evaluation, wilson_interval
from .runs import read_json, read_metrics
from .stats import Difference, bootstrap_interval, paired_bootstrap

COLUMNS = ("strategy", "runs", "best val acc", "95% CI", "final-epoch acc", "best epoch", "total time",
           "time/epoch", "trainable params", "waiting for data", "verdict")


def load_runs(compare_dir: str | Path) -> list[dict]:
    """The runs inside a compare folder: each {"name", "dir", "summary", "metrics", "config", "correct"}."""
    runs = []
    for run_dir in sorted(p for p in Path(compare_dir).iterdir() if (p / "summary.json").exists()):
        evaluation = read_evaluation(run_dir)
        runs.append({"name": run_dir.name, "dir": run_dir, "summary": read_json(run_dir / "summary.json"),
                     "metrics": read_metrics(run_dir), "config": read_json(run_dir / "config.json"),
                     "correct": evaluation.correct if evaluation is not None else None})
    order = {"finetune": 0, "extract": 1, "two-stage": 2}
    return sorted(runs, key=lambda r: (order.get(r["summary"]["strategy"], 9), r["config"]["seed"], r["name"]))


def by_strategy(runs: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["summary"]["strategy"], []).append(run)
    return groups


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def verdict(summaries: list[dict]) -> str:
    """One line on what limited the runs' speed (data preparation vs the network)."""
    done = [s for s in summaries if s.get("data_share") is not None and s.get("total_seconds")]
    if not done:
        return "-"
    share = float(np.mean([s["data_share"] for s in done]))
    if share >= 0.5:
        return f"data-bound: {share:.0%} of the time preparing images"
    network = np.mean([(s["feature_seconds"] + s["compute_seconds"] + s["val_seconds"]) / s["total_seconds"]
                       for s in done])
    return f"compute-bound: {network:.0%} of the time in the network"


def _mean_std(values: list[float]) -> str:
    """Accuracy as "96.3%", or "96.1% ± 0.4%" (mean ± sample standard deviation) over several runs."""
    if not values:
        return "-"
    fmt = lambda v: f"{v:.1%}"  # noqa: E731
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(float(np.mean(values)))} ± {fmt(float(np.std(values, ddof=1)))}"


def accuracy_interval(group: list[dict]) -> tuple[float, float] | None:
    """95% CI of a strategy's accuracy: Wilson for one run, bootstrap over images and seeds for several."""
    matrix = [r["correct"] for r in group if r["correct"] is not None]
    if not matrix or len({len(m) for m in matrix}) != 1:
        return None
    if len(matrix) == 1:
        return wilson_interval(int(matrix[0].sum()), len(matrix[0]))
    return bootstrap_interval(np.stack(matrix))


def table_rows(runs: list[dict]) -> list[list[str]]:
    rows = []
    for strategy, group in by_strategy(runs).items():
        summaries = [r["summary"] for r in group]
        status = {s["status"] for s in summaries} - {"completed"}
        best = [s["best_val_acc"] for s in summaries if s.get("best_val_acc") is not None]
        final = [r["metrics"][-1]["val_acc"] for r in group if r["metrics"]]
        interval = accuracy_interval(group)
        share = _mean([s.get("data_share") for s in summaries])
        rows.append([
            strategy + (f" ({', '.join(sorted(status))})" if status else ""), str(len(group)), _mean_std(best),
            f"{interval[0]:.1%}-{interval[1]:.1%}" if interval else "-", _mean_std(final),
            ", ".join(str(s.get("best_epoch") or "-") for s in summaries),
            format_seconds(_mean([s.get("total_seconds") for s in summaries])),
            format_seconds(_mean([s.get("seconds_per_epoch") for s in summaries])),
            f"{summaries[0]['trainable_params']:,}",
            f"{share:.0%}" if share is not None else "-",
            verdict(summaries)])
    return rows


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def differences(runs: list[dict]) -> list[Difference]:
    """Paired comparison of every pair of strategies over the seeds both completed."""
    groups = by_strategy(runs)
    names = list(groups)
    results = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            seeds_a = {r["config"]["seed"]: r["correct"] for r in groups[a] if r["correct"] is not None}
            seeds_b = {r["config"]["seed"]: r["correct"] for r in groups[b] if r["correct"] is not None}
            common = sorted(set(seeds_a) & set(seeds_b))
            if common:
                results.append(paired_bootstrap(np.stack([seeds_a[k] for k in common]),
                                                np.stack([seeds_b[k] for k in common]), a, b))
    return results


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


def first_runs(runs: list[dict]) -> list[dict]:
    """One run per strategy (its first seed): what the timing story and the evaluations are told with."""
    return [group[0] for group in by_strategy(runs).values()]


def explain_times(runs: list[dict]) -> str:
    """Plain-words account of why the strategies' times differ."""
    lines = ["Each strategy's first run:", ""] if len(runs) > len(by_strategy(runs)) else []
    firsts = first_runs(runs)
    for run in firsts:
        s = run["summary"]
        parts = ", ".join(f"{name} {format_seconds(sec)}" for name, sec in time_breakdown(s).items() if sec > 0.05)
        lines.append(f"- **{s['strategy']}** ({format_seconds(s.get('total_seconds'))}): {parts}.")
    done = {r["summary"]["strategy"]: r["summary"] for r in firsts}
    if "finetune" in done and "extract" in done and done["extract"].get("total_seconds"):
        ft, ex = done["finetune"], done["extract"]
        ratio = ft["total_seconds"] / ex["total_seconds"]
        lines.append("")
        lines.append(
            f"Fine-tuning took {ratio:.1f}x as long as feature extraction. Fine-tuning runs the whole network "
            f"forward and backward on every image in every epoch ({format_seconds(ft.get('compute_seconds'))} of "
            f"training compute). Feature extraction here runs the frozen backbone forward once per cached view "
            f"({format_seconds(ex.get('feature_seconds'))}"
            f"{', read from the feature cache of an earlier run' if ex.get('features_from_cache') else ''}) and then "
            f"trains only the linear head on stored feature vectors ({format_seconds(ex.get('compute_seconds'))} in "
            "all). Both decoded each photo once "
            f"({format_seconds(ft.get('decode_seconds'))}, shared): in the reference project every epoch decoded and "
            "resized every photo again and re-ran the frozen backbone, which is why its feature extraction was "
            "barely faster than fine-tuning.")
    two_stage = [r for r in firsts if r["summary"]["strategy"] == "two-stage"]
    if two_stage:
        ts, recipe = two_stage[0]["summary"], two_stage[0]["config"]["recipe"]
        lines.append("")
        lines.append(
            f"Two-stage first trained the head on cached features for {recipe['head_epochs']} epochs "
            f"({format_seconds(ts.get('feature_seconds'))} for the features"
            f"{', read from the cache' if ts.get('features_from_cache') else ''}), then fine-tuned the whole network "
            f"for up to {recipe['epochs']} epochs with the backbone at {recipe['backbone_lr_scale']:g}x the head's "
            f"learning rate ({format_seconds(ts.get('compute_seconds'))} of training compute in all).")
    return "\n".join(lines)


def _colours(runs: list[dict]) -> dict[str, str]:
    return {strategy: f"C{i}" for i, strategy in enumerate(by_strategy(runs))}


def plot_curves(runs: list[dict]) -> Figure:
    """Loss and accuracy per epoch for each strategy (every seed), on shared axes."""
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    colours = _colours(runs)
    for strategy, group in by_strategy(runs).items():
        for k, run in enumerate(group):
            m = run["metrics"]
            if not m:
                continue
            epochs = [r["epoch"] for r in m]
            style = {"color": colours[strategy], "alpha": 1.0 if k == 0 else 0.35, "linewidth": 1.6 if k == 0 else 1}
            label = (lambda what: f"{strategy} {what}") if k == 0 else (lambda what: None)
            ax_loss.plot(epochs, [r["train_loss"] for r in m], linestyle="--", label=label("train"), **style)
            ax_loss.plot(epochs, [r["val_loss"] for r in m], label=label("val"), **style)
            ax_acc.plot(epochs, [r["train_acc"] for r in m], linestyle="--", label=label("train"), **style)
            ax_acc.plot(epochs, [r["val_acc"] for r in m], label=label("val"), **style)
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="cross-entropy loss")
    ax_acc.set(title="Accuracy per epoch (faint: other seeds)", xlabel="epoch", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_time(runs: list[dict]) -> Figure:
    """Best validation accuracy against total training time, one point per run."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    colours = _colours(runs)
    for strategy, group in by_strategy(runs).items():
        points = [(r["summary"]["total_seconds"], r["summary"]["best_val_acc"]) for r in group
                  if r["summary"].get("best_val_acc") is not None]
        if points:
            ax.scatter(*zip(*points), color=colours[strategy], s=50, label=strategy)
    ax.set(title="Best validation accuracy vs training time", xlabel="total time (s)", ylabel="best val accuracy")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_time_breakdown(runs: list[dict]) -> Figure:
    """Stacked bars: where each strategy's seconds went (first seed)."""
    firsts = first_runs(runs)
    fig = Figure(figsize=(8, 1.9 + 0.5 * len(firsts)))
    ax = fig.subplots()
    names = [r["summary"]["strategy"] for r in firsts]
    left = [0.0] * len(firsts)
    for j, phase in enumerate(time_breakdown({})):
        values = [time_breakdown(r["summary"])[phase] for r in firsts]
        ax.barh(names, values, left=left, color=f"C{j}", label=phase)
        left = [a + b for a, b in zip(left, values)]
    ax.set(title="Where the time went", xlabel="seconds")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def write_report(compare_dir: str | Path, title: str = "transferlab comparison") -> Path:
    """Write plots, report.md and a self-contained report.html into a compare folder; return report.md's path."""
    compare_dir = Path(compare_dir)
    runs = load_runs(compare_dir)
    plots = {"curves.png": plot_curves(runs), "accuracy_vs_time.png": plot_accuracy_vs_time(runs),
             "time_breakdown.png": plot_time_breakdown(runs)}
    for name, fig in plots.items():
        fig.savefig(compare_dir / name, dpi=110)
    first = runs[0]["config"] if runs else {}
    resolved = first.get("resolved", {})
    skipped = resolved.get("skipped_files", [])
    duplicates = resolved.get("duplicate_problems", [])
    seeds = sorted({r["config"]["seed"] for r in runs})
    lines = [f"# {title}", ""]
    if first:
        recipe = first["recipe"]
        lines += [
            f"- data: `{first['data']['root']}` ({resolved.get('layout')}); classes: {', '.join(resolved.get('classes', []))}",
            f"- images: {_counts_line(resolved.get('counts', {}))}",
            f"- backbone: {first['backbone']} (weights: {resolved.get('weights', {}).get('source')}, "
            f"{resolved.get('weights', {}).get('name')}); device: {resolved.get('device')}; "
            f"training seeds: {', '.join(map(str, seeds))}",
            f"- recipe `{recipe['name']}`: {recipe_line(recipe)}; extract caches "
            f"{first['views']} augmented view(s) per training image",
            f"- unreadable files skipped: {len(skipped)}" + "".join(f"\n  - `{p}`: {why}" for p, why in skipped),
            f"- duplicate problems found while decoding: {len(duplicates)}"
            + "".join(f"\n  - {kind}: `{a}` = `{b}`" for a, b, kind in duplicates),
            "",
        ]
    verdicts = differences(runs)
    summary = summary_line(runs, verdicts)
    lines += ["## Results", "", f"**{summary}**", "", markdown_table(runs), "",
              "Best val acc is the best epoch's accuracy, and that epoch was chosen on these same validation images, "
              "so it is optimistic; the final-epoch accuracy is not selected. The 95% CI is Wilson's for one run, "
              "and a bootstrap over validation images and seeds for several. Total time counts decoding the photos "
              "(done once and shared, but counted in each run, as a run on its own would pay it), computing cached "
              "features, training and validating every epoch.", ""]
    lines += ["## Is the difference real?", ""] + [f"- {d.sentence()}" for d in verdicts] + [""]
    lines += ["## Why the times differ", "", explain_times(runs), "",
              "![where the time went](time_breakdown.png)", "", "## Learning curves", "", "![curves](curves.png)", "",
              "## Accuracy against time", "", "![accuracy vs time](accuracy_vs_time.png)", ""]
    for run in first_runs(runs):
        evaluation = read_evaluation(run["dir"])
        if evaluation is not None:
            lines += [evaluation_markdown(evaluation, prefix=f"{run['name']}/evaluation/", heading="##"), ""]
    path = compare_dir / "report.md"
    path.write_text("\n".join(lines))
    write_html(path, title)
    return path


def recipe_line(recipe: dict) -> str:
    """A recipe in words, e.g. "25 epochs, batch 32, SGD lr 0.001 momentum 0.9, StepLR(7, 0.1)"."""
    optimizer = recipe.get("optimizer", "sgd")
    parts = [f"{recipe['epochs']} epochs", f"batch {recipe['batch_size']}"]
    parts.append(f"SGD lr {recipe['lr']} momentum {recipe['momentum']}" if optimizer == "sgd"
                 else f"AdamW lr {recipe['lr']}")
    if recipe.get("weight_decay"):
        parts.append(f"weight decay {recipe['weight_decay']}")
    parts.append(f"StepLR({recipe['step_size']}, {recipe['gamma']})" if recipe.get("schedule", "step") == "step"
                 else "cosine schedule")
    if recipe.get("label_smoothing"):
        parts.append(f"label smoothing {recipe['label_smoothing']}")
    if recipe.get("patience"):
        parts.append(f"early stopping after {recipe['patience']} epochs without improvement")
    return ", ".join(parts)


def summary_line(runs: list[dict], verdicts: list[Difference] | None = None) -> str:
    """One sentence: each strategy's accuracy, and whether the difference is real."""
    parts = []
    for strategy, group in by_strategy(runs).items():
        best = [r["summary"]["best_val_acc"] for r in group if r["summary"].get("best_val_acc") is not None]
        if best:
            parts.append(f"{strategy} {_mean_std(best)} in {format_seconds(_mean([r['summary']['total_seconds'] for r in group]))}")
    verdicts = differences(runs) if verdicts is None else verdicts
    tail = ""
    if verdicts:
        d = verdicts[0]
        sign = 1 if d.diff >= 0 else -1
        better, worse = (d.a, d.b) if sign > 0 else (d.b, d.a)
        low, high = sorted((sign * d.low * 100, sign * d.high * 100))
        interval = f"95% CI {low:+.1f} to {high:+.1f} points"
        tail = (f"; {better} beats {worse} by {abs(d.diff) * 100:.1f} points ({interval}: larger than the noise)"
                if d.significant else
                f"; no real difference: {better} is ahead by {abs(d.diff) * 100:.1f} points ({interval}: within the noise)")
    return ", ".join(parts) + tail


def write_html(markdown_path: Path, title: str) -> Path:
    """report.html next to report.md: one self-contained file, images embedded, readable offline."""
    import base64
    import re

    import markdown

    body = markdown.markdown(markdown_path.read_text(), extensions=["tables"])

    def embed(match: re.Match) -> str:
        image = markdown_path.parent / match.group(2)
        if not image.exists():
            return match.group(0)
        data = base64.b64encode(image.read_bytes()).decode()
        return f'{match.group(1)}data:image/png;base64,{data}"'

    body = re.sub(r'(<img alt="[^"]*" src=")([^"]+)"', embed, body)
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6;padding:0 3px}")
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
            f"<body>{body}</body></html>")
    path = markdown_path.with_suffix(".html")
    path.write_text(html)
    return path


def _counts_line(counts: dict) -> str:
    parts = []
    for split, per_class in counts.items():
        parts.append(f"{split} {sum(per_class.values())} (" + ", ".join(f"{k} {v}" for k, v in per_class.items()) + ")")
    return "; ".join(parts)
