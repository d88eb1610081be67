"""The package's dependency rules, in tiers: the runtime, then ``session``, then ``_qt``; ``research`` beside them.

The runtime is every module at the package top (the network, weights,
engine, fast path, inputs, colour, metrics, baselines, ...). It must import
with Qt, napari and the sub-packages unavailable, so that scripts,
notebooks and the command line use it without a GUI stack. ``session`` (the
dock's evented model, its jobs and the napari-layer side) may use napari
and the runtime but never Qt: it imports, and is tested, without a display.
``_qt`` holds the widgets; neither it nor ``session`` imports ``research``.
Modules are found by walking the package, so new ones are covered as they
are added.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import napari_lightfusion

PACKAGE = Path(napari_lightfusion.__file__).parent
SUBPACKAGES = ("_qt", "research", "session")

#: Qt, its bindings, napari's Qt side, and the Qt edge.
QT = ["napari_lightfusion._qt", "qtpy", "PyQt6", "PyQt5", "PySide6", "PySide2", "napari._qt", "napari.qt"]

#: What the runtime must do without.
GUI_AND_SUBPACKAGES = [*QT, "napari_lightfusion.research", "napari_lightfusion.session", "napari"]


def runtime_modules() -> list[str]:
    """Dotted names of the modules at the package top (``cli``, the ``lightfusion`` command, too)."""
    return [
        f"napari_lightfusion.{info.name}"
        for info in pkgutil.iter_modules(napari_lightfusion.__path__)
        if not info.ispkg
    ]


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, anywhere in it (inside functions too), as absolute dotted names.

    ``from a import b`` counts as importing ``a`` and ``a.b`` (``b`` may be a module).
    """
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)  # a package's __init__ keeps its part
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def session_modules() -> list[str]:
    """Dotted names of the modules of the ``session`` tier."""
    return [f"napari_lightfusion.session.{info.name}" for info in pkgutil.iter_modules([str(PACKAGE / "session")])]


def test_imported_modules_resolves_relative_imports():
    found = imported_modules(PACKAGE / "session" / "jobs.py")
    assert "napari_lightfusion.fusion" in found and "napari_lightfusion.session" not in found
    assert "napari_lightfusion.research.tables" in imported_modules(PACKAGE / "research" / "scoring.py")
    assert "napari_lightfusion.research.evaluation" in imported_modules(PACKAGE / "research" / "cli.py")  # lazily


def test_the_runtime_imports_without_qt_napari_or_the_subpackages(run_blocked):
    modules = runtime_modules()
    assert {"napari_lightfusion.fusion", "napari_lightfusion.engine", "napari_lightfusion.inputs"} <= set(modules)
    assert "napari_lightfusion.cli" in modules  # the lightfusion command is runtime, held to the same rules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('imported', len(sys.modules))\n"
    )
    proc = run_blocked(["python", "-c", code], GUI_AND_SUBPACKAGES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported" in proc.stdout


def test_the_block_stops_napari_and_research(run_blocked):
    for module in (
        "napari",
        "qtpy",
        "napari_lightfusion.research.evaluation",
        "napari_lightfusion._qt.widget",
        "napari_lightfusion.session.model",
    ):
        proc = run_blocked(["python", "-c", f"import {module}"], GUI_AND_SUBPACKAGES)
        assert proc.returncode != 0 and "blocked by the test" in proc.stderr, module


def test_the_command_line_builds_its_parser_without_research_or_qt(run_blocked):
    proc = run_blocked(["lightfusion", "--help"], GUI_AND_SUBPACKAGES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fuse-volume" in proc.stdout


def test_no_runtime_module_imports_qt_edge_or_research_even_lazily():
    """``cli`` neither: the research commands are ``lightfusion-research`` (``research/cli.py``)."""
    offenders = {}
    for name in runtime_modules():
        path = PACKAGE / f"{name.rsplit('.', 1)[1]}.py"
        bad = sorted(
            m for m in imported_modules(path) if any(_inside(m, f"napari_lightfusion.{sub}") for sub in SUBPACKAGES)
        )
        if bad:
            offenders[name] = bad
    assert not offenders, offenders


def test_no_qt_or_session_module_imports_research():
    files = sorted([*(PACKAGE / "_qt").rglob("*.py"), *(PACKAGE / "session").rglob("*.py")])
    assert PACKAGE / "_qt" / "widget.py" in files and PACKAGE / "session" / "model.py" in files
    offenders = {}
    for path in files:
        bad = sorted(m for m in imported_modules(path) if _inside(m, "napari_lightfusion.research"))
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert not offenders, offenders


def test_no_session_module_imports_qt_even_lazily():
    """The session tier is napari and the runtime only: the widgets import it, never the other way round."""
    offenders = {}
    for path in sorted((PACKAGE / "session").rglob("*.py")):
        bad = sorted(m for m in imported_modules(path) if any(_inside(m, q) for q in QT))
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert not offenders, offenders


def test_the_session_tier_imports_without_qt(run_blocked):
    modules = session_modules()
    assert {"napari_lightfusion.session.model", "napari_lightfusion.session.jobs"} <= set(modules)
    code = f"import importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\nprint('imported')\n"
    proc = run_blocked(["python", "-c", code], [*QT, "napari_lightfusion.research"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported" in proc.stdout


def _module_graph() -> dict[str, set[str]]:
    """Package module -> the package modules it imports, anywhere in it.

    ``from . import m`` counts as importing ``m`` (not the package's ``__init__``).
    """
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = parts[: len(parts) - node.level] if node.level else []
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                for alias in node.names:
                    targets.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in files else module)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def test_no_import_cycles_even_through_function_level_imports():
    graph = _module_graph()
    assert "napari_lightfusion.research.report" in graph["napari_lightfusion.research.report_results"]
    cycles, state, path = [], {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, cycles
