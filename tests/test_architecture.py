"""The folders are the architecture: every import goes down the layer list of docs/architecture.md (or stays in
its layer), and no two modules import each other, directly or round a cycle (imports inside functions count)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "transferlab"
ENTRY_POINTS = {"transferlab", "transferlab.__main__"}  # the Python API and `python -m`: above every layer


def layers() -> list[str]:
    """The layer names of docs/architecture.md, top first."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers: read by tests/test_architecture.py -->\n```text\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md lost its layer list"
    return [line.split()[0] for line in block.group(1).splitlines() if line and not line.startswith(" ")]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["transferlab", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The transferlab modules `name` imports anywhere in its file (top level, functions, TYPE_CHECKING)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("transferlab")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("transferlab"):
                continue
            for alias in node.names:  # `from transferlab.utils import storage` imports the module storage
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {target for target in found if target in known and target != name}


def layer_of(name: str, names: list[str]) -> int:
    part = name.split(".")[1]
    assert part in names, f"{name}: its folder or module is in no layer of docs/architecture.md"
    return names.index(part)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_import_goes_down_the_layers_of_docs_architecture():
    names = layers()
    upward = []
    for name, targets in graph().items():
        if name in ENTRY_POINTS:
            continue
        for target in targets:
            if target in ENTRY_POINTS:
                upward.append(f"{name} imports the package's API {target}")
            elif layer_of(target, names) < layer_of(name, names):  # a smaller index is a higher layer
                upward.append(f"{name} ({name.split('.')[1]}) imports {target} ({target.split('.')[1]})")
    assert not upward, "\n".join(sorted(upward))


def find_cycles(edges: dict[str, set[str]]) -> list[str]:
    """Every back edge of a depth-first walk, written as the cycle it closes."""
    cycles: list[str] = []
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(
                    " -> ".join([*stack[stack.index(target) :], node, target])
                    if target in stack
                    else f"{node} -> {target}"
                )
            elif target not in state:
                visit(target, [*stack, node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return cycles


def test_no_import_cycle_between_modules():
    cycles = find_cycles(graph())
    assert not cycles, "\n".join(cycles)


def test_the_layer_list_names_every_folder_and_top_level_module():
    names = set(layers())
    on_disk = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    on_disk |= {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert on_disk == names, f"only on disk: {sorted(on_disk - names)}; only in the doc: {sorted(names - on_disk)}"


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The two tests above can fail: a fake package with an upward import and a cycle is caught."""
    fake = tmp_path / "transferlab"
    (fake / "data").mkdir(parents=True)
    (fake / "cli").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "cli" / "__init__.py").write_text("")
    (fake / "data" / "a.py").write_text("def f():\n    from transferlab.cli.b import g\n")
    (fake / "cli" / "b.py").write_text("from transferlab.data import a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    edges = graph()
    assert edges["transferlab.data.a"] == {"transferlab.cli.b"}
    assert edges["transferlab.cli.b"] == {"transferlab.data.a"}
    names = layers()
    assert layer_of("transferlab.cli.b", names) < layer_of("transferlab.data.a", names)  # data.a imports upward
    assert find_cycles(edges) == ["transferlab.cli.b -> transferlab.data.a -> transferlab.cli.b"]
