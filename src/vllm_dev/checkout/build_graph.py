"""What a configured build dir's own files say about the build, asked of the build system.

* target -> sources and objects: ``ninja -t inputs <target>`` (transitive, from the generated
  graph, so it works before anything was built);
* object -> headers, for objects built before: ninja's own deps log (``ninja -t deps``, VALID
  records only);
* every file CMake's configure read: the implicit inputs of ``build.ninja``'s ``RERUN_CMAKE``
  edge;
* the configured tools: ``CMakeCache.txt`` values (the generator, ninja, nm...).

The ninja calls are queries with process/runner.py's module default (:func:`query`): these
functions are pure and called from the selection, the watch, the test picker and the cost check,
none of which has a reason to hand them a runner.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.errors import CannotRun, VllmDevError
from vllm_dev.process.runner import query

_OBJECT_SUFFIXES = (".o", ".obj")


@dataclass
class Graph:
    """The build's targets with their sources and objects, and what configure read."""

    sources: dict[str, set[str]]  # target -> absolute source paths inside the checkout
    objects: dict[str, set[str]]  # object (absolute) -> targets that link it
    configure_inputs: set[str]


def cache_value(build_dir: Path, name: str) -> str | None:
    try:
        text = (build_dir / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return None
    found = re.search(rf"^{re.escape(name)}:[A-Z]+=(.*)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None


def ninja_of(build_dir: Path) -> str:
    generator = cache_value(build_dir, "CMAKE_GENERATOR") or ""
    program = cache_value(build_dir, "CMAKE_MAKE_PROGRAM") or ""
    if "Ninja" not in generator or not program:
        raise VllmDevError(f"{build_dir} is not a Ninja build (generator {generator!r}): "
                           "affected-target builds need ninja's graph; build with --all")
    return program


def _ninja(ninja: str, build_dir: Path, *args: str) -> str:
    try:
        done = query([ninja, "-C", str(build_dir), *args], timeout=300)
    except CannotRun as exc:
        raise VllmDevError(f"cannot run {ninja}: {exc.detail}") from None
    if done.returncode != 0:
        raise VllmDevError(f"`ninja -t {args[1] if len(args) > 1 else ''}` failed in {build_dir}: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done.stdout


def read_graph(build_dir: Path, targets: list[str], root: Path) -> Graph:
    ninja = ninja_of(build_dir)
    root_prefix = str(root) + os.sep
    build_real = os.path.realpath(build_dir) + os.sep
    sources: dict[str, set[str]] = {}
    objects: dict[str, set[str]] = {}
    for target in targets:
        sources[target] = set()
        for line in _ninja(ninja, build_dir, "-t", "inputs", target).splitlines():
            path = os.path.normpath(os.path.join(build_dir, line.strip()))
            if path.endswith(_OBJECT_SUFFIXES):
                objects.setdefault(path, set()).add(target)
            elif path.startswith(root_prefix) and not path.startswith(build_real):
                sources[target].add(path)
    return Graph(sources, objects, _configure_inputs(build_dir))


def _configure_inputs(build_dir: Path) -> set[str]:
    """Every file configure read: the implicit inputs of ninja's RERUN_CMAKE edge."""
    try:
        text = (build_dir / "build.ninja").read_text(errors="replace")
    except OSError:
        return set()
    found: set[str] = set()
    for match in re.finditer(r"^build [^\n]*: RERUN_CMAKE \|([^\n]*)$", text, re.MULTILINE):
        for item in re.split(r"(?<!\$) ", match.group(1).strip()):
            if item:
                found.add(os.path.normpath(os.path.join(build_dir, item.replace("$ ", " "))))
    return found


def ninja_deps(build_dir: Path, objects: Iterable[str] = ()) -> dict[str, list[str]]:
    """Dependencies ninja recorded when it last compiled each object (VALID records only);
    ``objects`` (paths as ninja names them, relative to the build dir): only those."""
    try:
        text = _ninja(ninja_of(build_dir), build_dir, "-t", "deps", *objects)
    except VllmDevError:
        return {}
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            name, _, status = line.partition(": #deps")
            current = [] if "(VALID)" in status else None
            if current is not None:
                found[os.path.normpath(os.path.join(build_dir, name))] = current
        elif line.strip() and current is not None:
            current.append(os.path.normpath(os.path.join(build_dir, line.strip())))
    return found
