"""The run-folder contract holds in the code: only `runs.py` names the files a run or compare folder holds (every
other module reads them through its typed readers: `read_run_config`, `read_summary`, `read_compare_summary`,
`read_compare_plan`, ...), and no function takes more than six positional parameters (keyword-only beyond)."""

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


def test_only_runs_py_names_a_file_of_a_run_folder():
    named = [
        f"{path}:{node.lineno} {node.value!r}"
        for path, tree in _modules()
        if path != Path("runs.py")
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in RUN_FILES
    ]
    assert not named, f"read these through runs.py's typed readers: {named}"


def test_no_function_takes_more_than_six_positional_parameters():
    crowded = [
        f"{path}:{node.lineno} {node.name}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and len([a for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]) > 6
    ]
    assert not crowded, f"make the parameters past the sixth keyword-only: {crowded}"


def test_every_record_of_the_contract_is_keyword_only():
    import dataclasses

    from transferlab import runs

    records = [v for v in vars(runs).values() if dataclasses.is_dataclass(v) and v.__module__ == runs.__name__]
    assert len(records) >= 6  # EpochRecord, RunSummary, Resolved, RunConfig, ComparePlan, CompareSummary
    positional = [r.__name__ for r in records if not all(f.kw_only for f in dataclasses.fields(r))]
    assert not positional, positional
