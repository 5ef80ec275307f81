"""Imports belong at the top of their module; one inside a function is the exception, and LAZY
below is the whole list of them, each with its one reason (issue 23: "keep the lazy imports that
measurably cut start-up or that correctness needs; say which and why").

The reasons come in four kinds:

- start-up: the module costs a command that does not use it measurable time (figures: median
  extra milliseconds over what that command loads anyway, from bench/lazy_import_cost.py,
  2026-12-03, the 2-core VM, byte-compiled install: bench/results/
  2026-12-03-lazy-import-cost-cpu2.txt; bench/startup_imports.py times the whole commands);
- a fresh clone: ``invoke --list`` in a clone with only Invoke installed lists the tasks
  (bootstrap.py), so nothing the task module loads may need packaging, filelock, rich...;
- Nox's interpreter: noxfile.py and the build sessions run inside nox's own interpreter, which has
  nox, uv, packaging and filelock (nox's own dependencies) but not Invoke, rich, jsonschema or
  watchfiles;
- optional: an ``ImportError`` fallback (a package or platform module that may be missing).

The table lives here, beside the check, rather than in src/: nothing at run time reads it; it is
the rule a reviewer and this test hold the code to. The tests below also check the claims: the
fresh-clone and Nox imports with those packages made unimportable, and that the start-up lazies
keep their modules out of the commands that do not use them.

(The compiler launchers run per compile but need no exception: host/split_launcher.py imports
only state/layout.py, and caching/launcher.py writes a shell script that is what runs.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGES = ("vllm_dev", "vllm_dev_frontends")

TASK_BODY = "a task imports the command it runs: the pipeline alone would cost --help 27 ms"
SESSION_BODY = "a session imports what it runs: at the top, every nox start paid 100 ms more"
FRESH_CLONE = "`invoke --list` in a fresh clone (invoke only) must import this module"
NOX_LACKS = "Nox's interpreter lacks {}"
FILELOCK = "filelock (it loads asyncio): 6.8 ms; runs that take no lock (--dry build) skip it"

#: module -> imported module -> why it is imported inside a function.
LAZY: dict[str, dict[str, str]] = {
    "vllm_dev.caching.dist": {
        "urllib.error": "urllib's HTTP client: 3.2 ms a build (dist.py is loaded); only --dist",
        "urllib.request": "as urllib.error",
    },
    "vllm_dev.checkout.tree": {"packaging.version": FRESH_CLONE},
    "vllm_dev.commands.farm": {
        "filelock": "filelock: 6.8 ms (see process.locking); only --dist",
        "vllm_dev.caching.farm_toolchains": "1.1 ms a build (farm.py is loaded); only --dist",
    },
    "vllm_dev.commands.pipeline": {
        "vllm_dev.caching.remote_check": "urllib's HTTP client: 4.7 ms a build; remote cache only",
    },
    "vllm_dev.commands.testloop.watch": {
        "watchfiles._rust_notify": "5.4 ms, for --watch only; " + NOX_LACKS.format("watchfiles"),
    },
    "vllm_dev.config.declarations": {
        "vllm_dev.toolchain.arch": "1.3 ms on every start (--help, Tab); only an arch value",
        "vllm_dev.caching.dist": "2.1 ms on every start (--help, Tab); only a --dist value",
    },
    "vllm_dev.config.settings": {
        "vllm_dev.presets.render": "5.1 ms on every start (--help, Tab); only defines need it",
    },
    "vllm_dev.config.store": {"filelock": FRESH_CLONE},
    "vllm_dev.config.values": {"vllm_dev.presets.render": "as in config.settings"},
    "vllm_dev.steps.build": {
        "vllm_dev.checkout.pending": "0.8 ms a build; only CUDA builds ask ninja -n for the split",
    },
    "vllm_dev.presets.template_schema": {
        "jsonschema": "32 ms, only when templates are validated; " + NOX_LACKS.format("jsonschema"),
    },
    "vllm_dev.process.locking": {"filelock": FILELOCK},
    "vllm_dev.process.progress": {
        "rich.console": "rich: 23 ms, drawn only on a terminal; " + NOX_LACKS.format("rich"),
        "rich.progress": "as rich.console",
        "rich.text": "as rich.console",
    },
    "vllm_dev.reporting.recorder": {
        "resource": "optional: POSIX only (the fallback reports no peak memory)",
        "vllm_dev.reporting.timeline_svg": "the SVG writer: 4.3 ms a build; only --trace draws",
    },
    "vllm_dev.steps.setup": {"uv": "optional: without the uv package, uv from PATH"},
    "vllm_dev_frontends.bootstrap": {
        "vllm_dev_frontends.invoke_tasks": "optional: a missing dependency becomes `install-me`",
    },
    "vllm_dev_frontends.config_files": {"invoke": "optional: " + NOX_LACKS.format("Invoke")},
    "vllm_dev_frontends.invoke_tasks": {
        "vllm_dev.planning.workspace": TASK_BODY,
        "vllm_dev.steps.setup": TASK_BODY,
        "vllm_dev.commands.pipeline": TASK_BODY,
        "vllm_dev.reporting.recorder": TASK_BODY,
        "vllm_dev.commands.testloop.command": TASK_BODY,
        "vllm_dev.commands.testloop.cycle": TASK_BODY,
        "vllm_dev.steps.report": TASK_BODY,
        "vllm_dev.steps.verify": TASK_BODY,
        "vllm_dev.steps.doctor": TASK_BODY,
        "vllm_dev.steps.clean": TASK_BODY,
        "vllm_dev.commands.demo": TASK_BODY,
        "vllm_dev.steps.settings": TASK_BODY,
    },
    "vllm_dev_frontends.nox_flow": {
        "invoke": "optional: " + NOX_LACKS.format("Invoke"),
        "vllm_dev.commands.pipeline": SESSION_BODY,
        "vllm_dev.commands.testloop.cycle": SESSION_BODY,
        "vllm_dev.commands.testloop.command": SESSION_BODY,
        "vllm_dev.planning.workspace": SESSION_BODY,
        "vllm_dev.steps.setup": SESSION_BODY,
    },
    "vllm_dev_frontends.program": {
        "vllm_dev.presets.render": "5.1 ms on every start; only Tab completion reads presets",
    },
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(node: ast.Import | ast.ImportFrom, modules: set[str]) -> list[str]:
    """The modules an import statement names: ``from vllm_dev.commands import pipeline`` names
    ``vllm_dev.commands.pipeline`` (a module), ``from rich.text import Text`` ``rich.text``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return sorted({f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                   for alias in node.names})


def lazy_imports(source: str, modules: set[str] = frozenset()) -> list[tuple[int, str]]:
    """(line, imported module) of each import inside a function (at any depth), leaving out
    those under ``if TYPE_CHECKING:``."""
    found: list[tuple[int, str]] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((child.lineno, name) for name in imported_modules(child, modules))
            walk(child, in_function or isinstance(child, (ast.FunctionDef,
                                                          ast.AsyncFunctionDef, ast.Lambda)))

    walk(ast.parse(source), False)
    return found


def all_lazy_imports() -> dict[str, dict[str, list[int]]]:
    """module -> imported module -> the lines, over both packages."""
    files = {module_name(p): p for package in PACKAGES
             for p in sorted((SRC / package).rglob("*.py"))}
    found: dict[str, dict[str, list[int]]] = {}
    for name, path in files.items():
        for line, imported in lazy_imports(path.read_text(), set(files)):
            found.setdefault(name, {}).setdefault(imported, []).append(line)
    return found


def test_the_finder_sees_function_level_imports_only() -> None:
    source = (
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from a import b\n"
        "def f():\n    import json\n    if TYPE_CHECKING:\n        from c import d\n"
        "    def g():\n        from x.y import z\n"
        "class K:\n    from e import f\n    def m(self):\n        from p import q, r\n")
    assert lazy_imports(source, {"x.y.z"}) == [(6, "json"), (10, "x.y.z"), (14, "p")]


def test_every_import_inside_a_function_is_declared_with_its_reason() -> None:
    found = all_lazy_imports()
    undeclared = [f"{module} imports {imported} inside a function (line {lines[0]})"
                  for module, imports in sorted(found.items())
                  for imported, lines in sorted(imports.items())
                  if imported not in LAZY.get(module, {})]
    assert undeclared == [], (
        "move these imports to the top of their module, or add them to LAZY in "
        "tests/test_lazy_imports.py with the reason they must stay inside the function:\n"
        + "\n".join(undeclared))
    stale = [f"{module}: {imported}" for module, imports in sorted(LAZY.items())
             for imported in imports if imported not in found.get(module, {})]
    assert stale == [], "LAZY names imports that are no longer inside a function: " + str(stale)
    assert sum(len(v) for v in found.values()) >= 30  # the walk read both packages


def test_every_reason_is_one_short_line() -> None:
    for module, imports in LAZY.items():
        for imported, reason in imports.items():
            assert reason and "\n" not in reason and len(reason) <= 100, (module, imported)


def _probe(code: str, blocked: tuple[str, ...]) -> str:
    """Run ``code`` in a fresh interpreter on src/ where the ``blocked`` packages cannot be
    imported (as in an environment that lacks them); its stdout."""
    prelude = (
        "import sys, importlib.abc\n"
        f"sys.path.insert(0, {str(SRC)!r})\n"
        "class Missing(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Missing())\n")
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_a_fresh_clone_with_invoke_only_lists_the_tasks() -> None:
    """What bootstrap.py promises: ``invoke --list`` and ``vllm-dev --help`` need invoke only."""
    out = _probe("import vllm_dev_frontends.program\n"
                 "from vllm_dev_frontends.bootstrap import namespace\n"
                 "print(sorted(namespace().tasks))\n",
                 ("rich", "jsonschema", "watchfiles", "filelock", "packaging", "uv"))
    assert "'build'" in out and "'setup'" in out and "install-me" not in out, out


def test_nox_s_interpreter_runs_the_sessions_without_invoke_rich_jsonschema_watchfiles() -> None:
    """The noxfile's import (the session list) and every module the sessions import lazily."""
    sessions = sorted(m for m, reason in LAZY["vllm_dev_frontends.nox_flow"].items()
                      if reason == SESSION_BODY)
    out = _probe("import os\nfrom vllm_dev_frontends import nox_flow\n"
                 + "".join(f"import {m}\n" for m in sessions)
                 + "print(sorted(nox_flow.session_templates(os.environ)))\n",
                 ("invoke", "rich", "jsonschema", "watchfiles", "nox"))
    assert "'release'" in out, out


def _loaded_after(module: str, watched: list[str]) -> list[str]:
    out = _probe(f"import {module}\nprint([m for m in {watched!r} if m in sys.modules])\n", ())
    return list(ast.literal_eval(out))


def test_the_start_up_lazies_keep_their_modules_out_of_the_console_script() -> None:
    """``vllm-dev --help`` (the program's import) loads no command and none of the modules kept
    lazy for start-up."""
    watched = ["vllm_dev.commands.pipeline", "vllm_dev.steps.doctor", "vllm_dev.presets.render",
               "vllm_dev.caching.dist", "vllm_dev.toolchain.arch", "filelock", "jsonschema",
               "rich", "urllib.request", "watchfiles"]
    assert _loaded_after("vllm_dev_frontends.program", watched) == []


def test_the_start_up_lazies_keep_their_modules_out_of_a_build() -> None:
    """The pipeline's import loads neither the remote-cache probe nor the SVG writer nor the
    packages only some runs need."""
    watched = ["vllm_dev.caching.remote_check", "vllm_dev.reporting.timeline_svg", "urllib.request",
               "xml.sax", "filelock", "jsonschema", "rich", "watchfiles"]
    assert _loaded_after("vllm_dev.commands.pipeline", watched) == []


def test_the_noxfile_s_import_loads_no_session_body() -> None:
    assert _loaded_after("vllm_dev_frontends.nox_flow",
                         ["vllm_dev.commands.pipeline", "vllm_dev.planning.workspace"]) == []
