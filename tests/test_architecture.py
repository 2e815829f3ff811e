"""The package's layout rules, read from the source (imports inside functions included).

The folders are the architecture (docs/architecture.md):

    foundation   errors, config, labels, label_sets, logs,  (imports nothing of ours but foundation)
                 files, archives, user_text, options
    core         audio → model → engine                     (no files, HTTP or Gradio)
    runs         the one recognise flow, run folders, the service
    jobs         batch over many inputs, local or on Ray     (started by more than one face)
    bench        the benchmark (reads labelled sets the way jobs do)
    faces        serving (REST), ui, cli                    (never import each other)
    root         app (FastAPI + Gradio), cli entry point, __main__

A module may import its own layer and the layers below it, never above;
siblings at one level never import each other. Breaking a rule fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = "emotion2vec_webui"
SRC = Path(__file__).resolve().parents[1] / PKG
MAX_LINES = 400
ONE_CONCEPT = "One concept:"  # what a longer module's docstring says to explain its size

# (rank, group) of each top-level name; a lower rank may never import a higher one, and
# different groups of one rank never import each other.
LAYERS: dict[str, tuple[int, str]] = {
    "__init__": (0, "foundation"),
    "errors": (0, "foundation"),
    "config": (0, "foundation"),
    "labels": (0, "foundation"),
    "label_sets": (0, "foundation"),
    "logs": (0, "foundation"),
    "files": (0, "foundation"),
    "archives": (0, "foundation"),
    "user_text": (0, "foundation"),
    "options": (0, "foundation"),
    "audio": (1, "audio"),
    "model": (2, "model"),
    "engine": (3, "engine"),
    "runs": (4, "runs"),
    "jobs": (5, "jobs"),
    "bench": (6, "bench"),
    "serving": (7, "serving"),
    "ui": (7, "ui"),
    "cli": (7, "cli"),
    "app": (8, "root"),
    "__main__": (9, "root"),
}
# The CLI's `serve` command hands over to the composition root: it alone may import it.
ENTRY_POINTS = {f"{PKG}.cli.serve"}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``name`` imports anywhere in its source (functions included)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        for target in targets:
            if target != PKG and not target.startswith(PKG + "."):
                continue
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(name: str) -> tuple[int, str]:
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        raise AssertionError(f"{name}: top-level name {top!r} has no layer in tests/test_architecture.py")
    return LAYERS[top]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for name, deps in sorted(graph.items()):
        rank, group = layer_of(name)
        for dep in sorted(deps):
            dep_rank, dep_group = layer_of(dep)
            if name in ENTRY_POINTS and dep_group == "root":
                continue
            if dep_rank > rank:
                bad.append(f"{name} ({group}) imports {dep} ({dep_group}), a layer above it")
            elif dep_rank == rank and dep_group != group:
                bad.append(f"{name} ({group}) imports {dep} ({dep_group}), a sibling at its level")
    return bad


def test_every_module_has_a_layer():
    for name in all_modules():
        layer_of(name)


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_layers_import_only_downwards():
    bad = layer_violations(import_graph())
    assert not bad, "\n".join(bad)


def test_the_rules_catch_a_core_module_importing_the_cli():
    graph = import_graph()
    graph[f"{PKG}.engine.engine"] = graph[f"{PKG}.engine.engine"] | {f"{PKG}.cli.main"}
    assert any("engine.engine (engine) imports emotion2vec_webui.cli.main" in v for v in layer_violations(graph))
    graph[f"{PKG}.cli.main"] = graph[f"{PKG}.cli.main"] | {f"{PKG}.engine.engine"}
    assert find_cycle(graph) is not None


def test_the_import_reader_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from ..cli import main\n    from . import decode\n")
    modules = {f"{PKG}.audio.m": src, f"{PKG}.cli": src, f"{PKG}.audio.decode": src, f"{PKG}.audio": src}
    assert imports_of(f"{PKG}.audio.m", src, modules) == {f"{PKG}.cli", f"{PKG}.audio.decode"}


@pytest.mark.parametrize("name", sorted(all_modules()))
def test_modules_stay_small_or_say_why(name):
    path = all_modules()[name]
    text = path.read_text("utf-8")
    lines = text.count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert ONE_CONCEPT in doc, f"{path.name} has {lines} lines: split it, or say why in its docstring ({ONE_CONCEPT!r})"


# FunASR's modules, named by its registry's sources, not ours: the one place modules are imported by name.
IMPORTS_BY_NAME = {"model/funasr_import.py"}


def test_no_tab_or_part_is_loaded_by_name():
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).as_posix() in IMPORTS_BY_NAME:
            assert "emotion2vec_webui" not in path.read_text("utf-8").split('"""')[2], path
            continue
        text = path.read_text("utf-8")
        assert "import_module(" not in text, f"{path}: load modules with import statements, not by name"
