"""The packages' layers, checked on the source: every import runs downwards, and no module
imports another in a cycle.

The tiers, highest first: the front ends (``vllm_dev_frontends``: Invoke and Nox) > the commands
(``commands/``: the pipeline, the demo, ``vllm-dev test``, the farm session) > the steps
(``steps/``) > the plan and workspace the steps take (``planning/``) > the rest (config,
process, host, toolchain, checkout, presets, caching, installs, reporting, kerneltests, errors).
A module may import its own tier or a lower one, never a higher one; every folder of vllm_dev
has its tier here, so a new folder must be placed before it can be used.

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
FRONTENDS = "vllm_dev_frontends"
#: Highest first: an import may go to its own tier or one after it in this list.
TIERS = ("front ends", "commands", "steps", "planning", "the rest")
#: The tier of each folder of vllm_dev (and of its top-level modules: ``errors``).
FOLDER_TIERS = {
    "commands": "commands",
    "steps": "steps",
    "planning": "planning",
    **{folder: "the rest" for folder in (
        "config", "process", "host", "toolchain", "checkout", "presets", "caching", "installs",
        "reporting", "kerneltests", "state", "errors")},
}


def module_files() -> dict[str, Path]:
    found = {}
    for package in (PACKAGE, FRONTENDS):
        for path in sorted((SRC / package).rglob("*.py")):
            parts = path.relative_to(SRC).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the two packages it imports (``from pkg import module`` names
    the module)."""
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
        # a package's __init__ is imported on the way to any of its modules: not an edge
        graph[name] = {d for d in deps - {name} if modules[d].name != "__init__.py"}
    return graph


def tier(module: str) -> str:
    """``vllm_dev_frontends.nox_flow`` -> ``front ends``, ``vllm_dev.steps.build`` -> ``steps``,
    ``vllm_dev.errors`` -> ``the rest``; KeyError for a folder that has no tier yet."""
    package, *parts = module.split(".")
    if package == FRONTENDS:
        return "front ends"
    return FOLDER_TIERS[parts[0]] if parts else "the rest"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module from a higher tier than its own, in words."""
    rank = {name: TIERS.index(name) for name in TIERS}
    return [f"{name} ({tier(name)}) imports {dep} ({tier(dep)})"
            for name, deps in sorted(graph.items()) for dep in sorted(deps)
            if rank[tier(dep)] < rank[tier(name)]]


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
    # the whole of both packages was read
    assert len(graph) > 40 and "vllm_dev.commands.pipeline" in graph
    assert "vllm_dev_frontends.invoke_tasks" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_folder_has_its_tier() -> None:
    """A new folder of vllm_dev is placed in the layering before anything imports it."""
    unplaced = sorted({name.split(".")[1] for name in module_files()
                       if name.startswith(f"{PACKAGE}.")} - set(FOLDER_TIERS))
    assert unplaced == [], f"add these folders to FOLDER_TIERS: {unplaced}"


def test_every_import_runs_downwards() -> None:
    """Front ends > commands > steps > planning > the rest: no module imports a higher tier
    (lazy imports and ``TYPE_CHECKING`` ones included)."""
    assert upward_imports(import_graph()) == []


def test_the_layering_check_notices_an_upward_import() -> None:
    graph = {"vllm_dev.steps.build": {"vllm_dev.commands.pipeline", "vllm_dev.planning.plan"},
             "vllm_dev.planning.plan": {"vllm_dev.errors"},
             "vllm_dev.caching.dist": {"vllm_dev.planning.workspace"},
             "vllm_dev.commands.pipeline": {"vllm_dev.steps.build"},
             "vllm_dev.errors": {"vllm_dev_frontends.invoke_tasks"},
             "vllm_dev_frontends.nox_flow": {"vllm_dev.commands.pipeline"}}
    assert upward_imports(graph) == [
        "vllm_dev.caching.dist (the rest) imports vllm_dev.planning.workspace (planning)",
        "vllm_dev.errors (the rest) imports vllm_dev_frontends.invoke_tasks (front ends)",
        "vllm_dev.steps.build (steps) imports vllm_dev.commands.pipeline (commands)"]


def test_every_module_imports() -> None:
    """Each module on its own (in sorted order, so the first import of each is its own)."""
    for name in module_files():  # the front ends too: the test environment has Invoke
        importlib.import_module(name)


def test_the_nox_side_loads_without_invoke_and_the_workflow_without_either() -> None:
    """noxfile.py runs in nox's own interpreter, which has no Invoke: importing the Nox front end
    must not pull in Invoke (a package ``__init__`` that imported the Invoke tasks broke
    ``nox -l`` in CI), and the workflow package imports neither front end's library."""
    import subprocess
    import sys

    probe = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "import vllm_dev_frontends.nox_flow, vllm_dev.commands.pipeline; "
             "import vllm_dev.steps.doctor, vllm_dev.steps.setup, vllm_dev.steps.clean; "
             "print(sorted(m for m in ('invoke', 'nox') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, str(SRC)], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def hand_built_runs(path: Path) -> list[str]:
    """Where a file builds a Workspace or resolves Settings itself (``Workspace(...)``,
    ``Settings(...)``, ``Settings.resolve(...)``, ``dataclasses.replace(settings, ...)``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (func.id if isinstance(func, ast.Name) else
                f"{getattr(func.value, 'id', '?')}.{func.attr}"
                if isinstance(func, ast.Attribute) else "")
        if name in ("Workspace", "Settings", "Settings.resolve") or (
                name == "replace" and node.args and getattr(node.args[0], "id", "") in (
                    "settings", "ws")):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}(...)")
    return found


REPO = SRC.parent
#: The one way in (planning/workspace.py's open_workspace) and what it is built on.
WAY_IN = ("src/vllm_dev/planning/workspace.py", "src/vllm_dev/config/settings.py")


def test_every_door_opens_its_run_through_open_workspace() -> None:
    """The Invoke tasks, the Nox sessions, the demo and the benchmarks resolve settings and build
    their workspace through open_workspace only (tests may build one by hand)."""
    files = [*SRC.rglob("*.py"), *(REPO / "bench").glob("*.py"), REPO / "tasks.py",
             REPO / "noxfile.py"]
    by_hand = [hit for path in sorted(files) if str(path.relative_to(REPO)) not in WAY_IN
               for hit in hand_built_runs(path)]
    assert by_hand == []
    assert hand_built_runs(SRC / "vllm_dev" / "planning" / "workspace.py")  # the check sees them
