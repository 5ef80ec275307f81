"""The package's layers, checked on the source: no import cycle among vllm_dev's modules, and the
lower layers (config, process, host, toolchain, checkout, presets, caching, installs, reporting)
never reach up into the steps or the flow.

Every import counts: at module level, inside a function (a lazy import is still a dependency)
and under ``TYPE_CHECKING`` (a type from a higher layer ties the lower one to it as well).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "vllm_dev"
LOWER = ("config", "process", "host", "toolchain", "checkout", "presets", "caching", "installs",
         "reporting", "state")
UPPER = ("steps", "flow")
# The flow modules the steps build on; the pipeline (and the demo, which runs pipelines) sit
# above the steps.
FLOW_BELOW_STEPS = ("vllm_dev.flow.workspace", "vllm_dev.flow.plan")


def module_files() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the vllm_dev modules it imports (``from pkg import module`` names the module)."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in modules:
                        deps.add(full)
                    elif node.module in modules:
                        deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
        # a package's (empty) __init__ is imported on the way to any of its modules: not an edge
        graph[name] = {d for d in deps - {name} if modules[d].name != "__init__.py"}
    return graph


def layer(module: str) -> str:
    """``vllm_dev.steps.build`` -> ``steps`` (``vllm_dev.errors`` -> ``errors``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``a, b, ..., a``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_among_the_modules() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "vllm_dev.flow.pipeline" in graph  # the whole package was read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_lower_layers_never_import_steps_or_flow() -> None:
    wrong = [f"{name} imports {dep}" for name, deps in import_graph().items()
             if layer(name) in LOWER for dep in sorted(deps) if layer(dep) in UPPER]
    assert wrong == []


def test_steps_build_on_the_plan_not_on_the_pipeline() -> None:
    wrong = [f"{name} imports {dep}" for name, deps in import_graph().items()
             if layer(name) == "steps" for dep in sorted(deps)
             if dep.startswith(f"{PACKAGE}.flow.") and dep not in FLOW_BELOW_STEPS]
    assert wrong == []


def test_every_module_imports() -> None:
    """Each module on its own (in sorted order, so the first import of each is its own)."""
    for name in module_files():
        importlib.import_module(name)


def test_the_nox_side_loads_without_invoke_and_the_workflow_without_either() -> None:
    """noxfile.py runs in nox's own interpreter, which has no Invoke: importing the Nox front end
    must not pull in Invoke (a package ``__init__`` that imported the Invoke tasks broke
    ``nox -l`` in CI), and the workflow package imports neither front end's library."""
    import subprocess
    import sys

    probe = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "import vllm_dev_frontends.nox_flow, vllm_dev.flow.pipeline; "
             "import vllm_dev.steps.doctor, vllm_dev.steps.setup, vllm_dev.steps.clean; "
             "print(sorted(m for m in ('invoke', 'nox') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, str(SRC)], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
