"""The comparison report: `write_report(compare_dir)` writes the plots, `report.md` and a self-contained
`report.html` (images embedded) from the runs' files, so a report can be rebuilt from disk at any time. The numbers
come from `results`, the figures from `plots`.
"""

from __future__ import annotations

from pathlib import Path

from transferlab.analysis.evaluate import HEAT, evaluation_markdown, read_evaluation
from transferlab.analysis.evaluation import markdown_text
from transferlab.analysis.plots import plot_accuracy_vs_time, plot_curves, plot_time_breakdown, time_breakdown
from transferlab.analysis.recommendation import Recommendation, cell_rows, cross_validation_rows, headline, recommend
from transferlab.analysis.results import (
    LoadedRun,
    accuracies_line,
    first_runs,
    format_seconds,
    load_runs,
    markdown_table,
)
from transferlab.config import Recipe
from transferlab.runs import (
    ComparePlan,
    CompareSummary,
    RunSummary,
    read_compare_plan,
    read_cross_validation,
    write_compare_summary,
)
from transferlab.utils.storage import save_figure, write_atomically


def explain_times(runs: list[LoadedRun]) -> str:
    """Plain-words account of why the strategies' times differ."""
    firsts = first_runs(runs)
    lines = ["Each cell's first run:", ""] if len(runs) > len(firsts) else []
    for run in firsts:
        s = run.summary
        parts = ", ".join(f"{name} {format_seconds(sec)}" for name, sec in time_breakdown(s).items() if sec > 0.05)
        lines.append(f"- **{run.cell.label}** ({format_seconds(s.total_seconds)}): {parts}.")
    head = firsts[0].cell if firsts else None  # the strategies of the first backbone and batch size
    done = {r.summary.strategy: r.summary for r in firsts if head and r.cell[::2] == head[::2]}
    ft, ex = done.get("finetune"), done.get("extract")
    if ft is not None and ex is not None and ex.total_seconds and ft.total_seconds is not None:
        ratio = ft.total_seconds / ex.total_seconds
        lines.append("")
        lines.append(
            f"Fine-tuning took {ratio:.1f}x as long as feature extraction. Fine-tuning runs the whole network "
            f"forward and backward on every image in every epoch ({format_seconds(ft.compute_seconds)} of "
            f"training compute). Feature extraction here runs the frozen backbone forward once per cached view "
            f"({format_seconds(ex.feature_seconds)}"
            f"{', read from the feature cache of an earlier run' if ex.features_from_cache else ''}) and then "
            f"trains only the linear head on stored feature vectors ({format_seconds(ex.compute_seconds)} in "
            "all). Both decoded each photo once "
            f"({format_seconds(ft.decode_seconds)}, shared): in the reference project every epoch decoded and "
            "resized every photo again and re-ran the frozen backbone, which is why its feature extraction was "
            "barely faster than fine-tuning."
        )
    two_stage = [r for r in firsts if r.summary.strategy == "two-stage"]
    if two_stage:
        lines += ["", _two_stage_sentence(two_stage[0].summary, two_stage[0].config.recipe)]
    return "\n".join(lines)


def _two_stage_sentence(ts: RunSummary, recipe: Recipe) -> str:
    """What two-stage did, as its recipe had it: the head fitted as a probe in one step, trained by epochs on
    cached features, or no head stage at all; then the whole network."""
    cached = ", read from the cache" if ts.features_from_cache else ""
    features = f"({format_seconds(ts.feature_seconds)} for the features{cached})"
    if recipe.head_solver == "probe":
        head = f"Two-stage first fitted the head as a cross-validated probe on cached features in one step {features}"
    elif recipe.head_epochs > 0:
        head = f"Two-stage first trained the head on cached features for {recipe.head_epochs} epochs {features}"
    else:
        head = "Two-stage had no head stage (0 head epochs)"
    return (
        f"{head}, then fine-tuned the whole network for up to {recipe.epochs} epochs with the backbone at "
        f"{recipe.backbone_lr_scale:g}x the head's learning rate ({format_seconds(ts.compute_seconds)} of "
        "training compute in all)."
    )


def write_report(compare_dir: str | Path, title: str = "transferlab comparison") -> Path:
    """Write plots, report.md, a self-contained report.html and the compare summary (with the recommendation)
    into a compare folder; return report.md's path."""
    compare_dir = Path(compare_dir)
    runs = load_runs(compare_dir)
    plots = [("accuracy_vs_time.png", plot_accuracy_vs_time), ("time_breakdown.png", plot_time_breakdown)]
    if has_curves(runs):  # a probe fits in one step: no curve to draw
        plots.append(("curves.png", plot_curves))
    else:
        (compare_dir / "curves.png").unlink(missing_ok=True)  # one from an earlier report of this folder
    for name, plot in plots:
        save_figure(plot(runs), compare_dir / name, dpi=110)
    plan = read_compare_plan(compare_dir)
    kind = plan.kind if plan is not None else "compare"
    skipped = plan.skipped_backbones if plan is not None else {}
    answer = recommend(runs, "most accurate" if kind == "fit" else "cheapest")
    cv = cross_validation_rows(read_cross_validation(compare_dir))
    write_compare_summary(
        compare_dir,
        CompareSummary(
            cells=cell_rows(runs),
            recommendation=answer.as_dict() if answer else None,
            skipped_backbones=skipped,
            cross_validation=cv or None,
            kind=kind,
        ),
    )
    lines = [f"# {title}", ""] + _setup_lines(runs, skipped)[:-1] + [f"- {line}" for line in not_run(plan, runs)]
    lines += [""]
    lines += ["## The answer", "", f"**{headline(answer)}**", ""] + _answer_lines(answer) + _cv_lines(cv)
    lines += [
        "## Results",
        "",
        f"{accuracies_line(runs)}.",
        "",
        markdown_table(runs),
        "",
        "Best val acc is the best epoch's accuracy, and that epoch was chosen on these same validation images, "
        "so it is optimistic; the final-epoch accuracy is not selected (a probe has one step: both are the "
        "same). The 95% CI is Wilson's for one run, and a bootstrap over validation images and seeds for "
        "several. Total time counts decoding the photos (done once per backbone and shared, but counted in "
        "each run, as a run on its own would pay it), computing cached features, training and validating.",
        "",
    ]
    lines += _plot_lines(runs)
    for run in first_runs(runs):
        evaluation = read_evaluation(run.dir)
        if evaluation is not None:
            heat = (run.dir / "evaluation" / HEAT).is_file()
            lines += [evaluation_markdown(evaluation, prefix=f"{run.name}/evaluation/", heading="##", heat=heat), ""]
    path = compare_dir / "report.md"
    text = "\n".join(lines)
    write_atomically(path, lambda tmp: tmp.write_text(text))
    write_html(path, title)
    return path


def has_curves(runs: list[LoadedRun]) -> bool:
    """Whether any run trained by epochs (a probe is one fit: its per-epoch plots would be empty axes)."""
    return any(record.get("stage") != "probe" for run in runs for record in run.metrics)


def _plot_lines(runs: list[LoadedRun]) -> list[str]:
    """The report's sections on time and learning, each with its plot."""
    curves = ["## Learning curves", "", "![curves](curves.png)", ""] if has_curves(runs) else []
    return [
        "## Why the times differ",
        "",
        explain_times(runs),
        "",
        "![where the time went](time_breakdown.png)",
        "",
        *curves,
        "## Accuracy against time",
        "",
        "Circled: the Pareto front (no other cell is both more accurate and faster).",
        "",
        "![accuracy vs time](accuracy_vs_time.png)",
        "",
    ]


def _setup_lines(runs: list[LoadedRun], skipped_backbones: dict[str, str]) -> list[str]:
    """What was compared: data, images, backbones and their weights, recipe, skipped files and backbones."""
    if not runs:
        return []
    first, resolved = runs[0].config, runs[0].resolved
    copies = resolved.duplicate_problems
    seeds = sorted({r.config.seed for r in runs})
    weights = {r.config.backbone: r.resolved.weights for r in runs}
    recipe = first.recipe
    return [
        f"- data: {markdown_text(resolved.data_root or first.data.root)} ({resolved.layout}); "
        f"classes: {', '.join(markdown_text(c) for c in resolved.classes)}",
        f"- images: {_counts_line(resolved.counts)}",
        "- backbones: "
        + "; ".join(f"{name} (weights: {w.get('source')}, {w.get('name')})" for name, w in weights.items())
        + f"; device: {resolved.device}; training seeds: {', '.join(map(str, seeds))}",
        f"- recipe `{recipe.name}`: {recipe_line(recipe)}"
        + (
            f"; extract caches {first.views} augmented view(s) per training image"
            if recipe.head_solver == "sgd"
            else ""
        ),
        *[f"- backbone {name} skipped: {why}" for name, why in skipped_backbones.items()],
        f"- unreadable files skipped: {len(resolved.skipped_files)}"
        + "".join(f"\n  - {markdown_text(p)}: {markdown_text(why)}" for p, why in resolved.skipped_files),
        f"- duplicate problems found while decoding: {len(copies)}"
        + "".join(f"\n  - {kind}: {markdown_text(a)} = {markdown_text(b)}" for a, b, kind in copies),
        "",
    ]


def not_run(plan: ComparePlan | None, runs: list[LoadedRun]) -> list[str]:
    """The runs a comparison planned (compare.json) that never started, because it was stopped first: the answer
    is among the cells that ran. (A `fit` plans as it goes: nothing to list.)"""
    if plan is None or plan.kind == "fit" or "seed" not in plan.config:
        return []
    first = plan.config["seed"]
    planned = [
        (backbone, strategy, size, first + k)
        for backbone in plan.backbones
        for k in range(plan.seeds)
        for size in plan.batch_sizes
        for strategy in plan.strategies
    ]
    done = {(r.config.backbone, r.summary.strategy, r.config.recipe.batch_size, r.config.seed) for r in runs}
    missing = [
        f"{strategy} ({backbone}, batch {size}, seed {seed})"
        for backbone, strategy, size, seed in planned
        if (backbone, strategy, size, seed) not in done
    ]
    if not missing:
        return []
    return ["not run, the comparison was stopped first (the answer is among the cells that ran): " + "; ".join(missing)]


def _cv_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = [
        f"### Cross-validated over every image ({rows[0]['folds']} folds, {rows[0]['images']} images)",
        "",
        "The probe (extract's head) fitted on the other folds and scored on each held-out image, train and "
        "validation images alike, so the backbone choice rests on every image, not on the validation split "
        "alone:",
        "",
        "| backbone | accuracy | 95% CI | minus the best | p | Holm p |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['accuracy']:.1%} | {r['low']:.1%}-{r['high']:.1%} | "
            f"{r['diff'] * 100:+.1f} points | {r['p_value']:.3f} | {r['p_holm']:.3f} |"
        )
    return lines + [""]


def _answer_lines(answer: Recommendation | None) -> list[str]:
    """Every cell against the most accurate one: difference, interval, raw and Holm-corrected p-values."""
    if answer is None or not answer.comparisons:
        return [answer.settle, ""] if answer and answer.settle else []
    lines = [
        "## Is the difference real?",
        "",
        f"Each cell against the most accurate, {answer.best}: {answer.method}; "
        "p-values corrected for the number of comparisons by Holm's method.",
        "",
        "| cell | minus the most accurate | 95% CI | p | Holm p | shown worse |",
        "|---|---|---|---|---|---|",
    ]
    for c in answer.comparisons:
        lines.append(
            f"| {c.cell} | {c.diff * 100:+.1f} points | {c.low * 100:+.1f} to {c.high * 100:+.1f} | "
            f"{c.p_value:.3f} | {c.p_holm:.3f} | {'yes' if c.worse else 'no'} |"
        )
    return lines + ["", answer.settle, ""] if answer.settle else lines + [""]


def recipe_line(recipe: Recipe) -> str:
    """A recipe in words, e.g. "25 epochs, batch 32, SGD lr 0.001 momentum 0.9, StepLR(7, 0.1)"."""
    parts = [f"{recipe.epochs} epochs", f"batch {recipe.batch_size}"]
    parts.append(
        f"SGD lr {recipe.lr} momentum {recipe.momentum}" if recipe.optimizer == "sgd" else f"AdamW lr {recipe.lr}"
    )
    if recipe.weight_decay:
        parts.append(f"weight decay {recipe.weight_decay}")
    parts.append(f"StepLR({recipe.step_size}, {recipe.gamma})" if recipe.schedule == "step" else "cosine schedule")
    if recipe.label_smoothing:
        parts.append(f"label smoothing {recipe.label_smoothing}")
    if recipe.patience:
        parts.append(f"early stopping after {recipe.patience} epochs without improvement")
    return ", ".join(parts)


def write_html(markdown_path: Path, title: str) -> Path:
    """report.html next to report.md: one self-contained file, images embedded, readable offline."""
    import base64
    import re
    from html import escape

    import markdown

    converter = markdown.Markdown(extensions=["tables"])
    # Raw HTML in the text (a class folder named "<img src=x onerror=...>") is shown as text, never run, and no
    # link is made: names are escaped (`markdown_text`), and the report itself has only pictures to point to.
    converter.preprocessors.deregister("html_block")
    for pattern in ("html", "link", "reference", "short_reference", "autolink", "automail"):
        converter.inlinePatterns.deregister(pattern)
    body = converter.convert(markdown_path.read_text())

    def embed(match: re.Match) -> str:
        image = markdown_path.parent / match.group(2)
        if not image.exists():
            return match.group(0)
        data = base64.b64encode(image.read_bytes()).decode()
        return f'{match.group(1)}data:image/png;base64,{data}"'

    body = re.sub(r'(<img alt="[^"]*" src=")([^"]+)"', embed, body)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6;padding:0 3px}"
    )
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{style}</style>"
        "</head>"
        f"<body>{body}</body></html>"
    )
    path = markdown_path.with_suffix(".html")
    write_atomically(path, lambda tmp: tmp.write_text(html))
    return path


def _counts_line(counts: dict) -> str:
    parts = []
    for split, per_class in counts.items():
        shown = ", ".join(f"{markdown_text(k)} {v}" for k, v in per_class.items())
        parts.append(f"{split} {sum(per_class.values())} ({shown})")
    return "; ".join(parts)
