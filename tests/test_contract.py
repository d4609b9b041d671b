"""The run-folder contract holds in the code: only the `runs` package names the files a run or compare folder holds
(every other module reads them through its typed readers: `read_run_config`, `read_summary`, `read_compare_summary`,
`read_compare_plan`, ...); no function takes more than six positional parameters (keyword-only beyond); every
dataclass is keyword-only; the command line's defaults are the config's."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "transferlab"
RUN_FILES = {
    "config.json",
    "model.json",
    "model.safetensors",
    "summary.json",
    "metrics.jsonl",
    "last.pt",
    "compare.json",
    "cv.json",
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE), ast.parse(path.read_text())


def test_only_the_runs_package_names_a_file_of_a_run_folder():
    named = [
        f"{path}:{node.lineno} {node.value!r}"
        for path, tree in _modules()
        if path.parts[0] != "runs"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in RUN_FILES
    ]
    assert not named, f"read these through the typed readers of `runs`: {named}"


def test_no_function_takes_more_than_six_positional_parameters():
    crowded = [
        f"{path}:{node.lineno} {node.name}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and len([a for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]) > 6
    ]
    assert not crowded, f"make the parameters past the sixth keyword-only: {crowded}"


def test_every_dataclass_is_keyword_only():
    """A record is built by naming its fields: a field added or moved can never shift another's value."""
    positional = [
        f"{path}:{node.lineno} {node.name}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for decorator in node.decorator_list
        if "dataclass" in ast.unparse(decorator) and "kw_only=True" not in ast.unparse(decorator)
    ]
    assert not positional, positional


def test_the_command_lines_defaults_are_the_configs():
    """`transferlab train PHOTOS` with no option trains exactly `TrainConfig(data=DataConfig(root=PHOTOS))`, and
    `compare` weighs the strategies `compare()` weighs by default."""
    import inspect

    from transferlab.cli.commands import config_from_args
    from transferlab.cli.parser import build_parser
    from transferlab.config import DataConfig, TrainConfig
    from transferlab.training.comparison import compare

    args = build_parser().parse_args(["train", "photos"])
    assert config_from_args(args, args.strategy) == TrainConfig(data=DataConfig(root="photos"))
    compared = build_parser().parse_args(["compare", "photos"]).strategies.split(",")
    assert tuple(compared) == inspect.signature(compare).parameters["strategies"].default
