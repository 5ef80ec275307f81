"""What ``vllm-dev test --watch`` watches, and what a save means for the build — from the build
graph, never from a directory guess.

The watched files are the checkout's own inputs of the selected targets: their sources
(``ninja -t inputs <target>``), the headers their objects read (ninja's deps log, VALID records)
and the files CMake's configure read (``build.ninja``'s ``RERUN_CMAKE`` inputs), each kept only
when it lies inside the checkout and outside a build dir, a venv, ``.deps/`` (fetched
dependencies: CUTLASS, oneDNN...) and vllm-dev's ``.vllm-dev/``. torch's headers (in the venv)
and the system's are never watched. Editor temporary files, ``vllm/`` and the build dir are not
inputs, so they never start a cycle.

A save is *whole-tree* (the watcher pauses instead of building) when it changed a file that
decides the whole build (what configure read: CMakeLists.txt, cmake/*.cmake; a ``git checkout``
to another branch changes those), or when it reaches every object of every target it touches
and that is more than one object (a header included everywhere, or a target never built here).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.checkout.build_graph import ninja_deps, read_graph
from vllm_dev.checkout.header_scan import compile_units
from vllm_dev.commands.testloop.pause import WholeBuild
from vllm_dev.state import layout

_NOT_OWN_TOP = (".deps", layout.STATE_DIR, ".git")
_TOOL_MARKERS = ("CMakeCache.txt", "pyvenv.cfg", layout.BUILD_RECORD)


@dataclass(frozen=True)
class SaveDecision:
    """What a save asks for: the targets it reaches (to build) or a pause."""

    targets: frozenset[str]
    objects: int  # objects the save makes out of date (missing ones of its targets included)
    pause: WholeBuild | None = None
    reached: frozenset[str] = frozenset()  # the objects the saved files reach


@dataclass
class WatchSet:
    """The watched files and, for each, the objects it reaches."""

    root: Path
    build_dir: Path
    targets: list[str]
    reaches: dict[str, set[str]] = field(default_factory=dict)  # file -> objects
    owners: dict[str, set[str]] = field(default_factory=dict)  # object -> targets linking it
    configure_inputs: set[str] = field(default_factory=set)
    _units: dict[str, set[str]] = field(default_factory=dict)  # object -> its own source

    @property
    def files(self) -> set[str]:
        return set(self.reaches) | self.configure_inputs

    def dirs(self) -> list[str]:
        """The directories to watch (each one level deep: editors save by renaming a new file
        over the old one, which a watch on the file itself would lose)."""
        return sorted({os.path.dirname(f) for f in self.files})

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def decide(self, saved: Iterable[str]) -> SaveDecision:
        """Build what ``saved`` reaches, or pause (see the module's doc)."""
        saved = sorted(set(saved))
        whole = [p for p in saved if p in self.configure_inputs]
        if whole:
            objects = len(self.owners)
            names = ", ".join(self.relative(p) for p in whole[:3])
            return SaveDecision(frozenset(), objects, WholeBuild(
                f"{names} changed and decides the whole build (CMake's configure reads it): the "
                f"next build reconfigures and may recompile every object of "
                f"{', '.join(self.targets) or 'every target'}", objects, tuple(whole)))
        reached = set().union(*(self.reaches.get(p, set()) for p in saved))
        targets = frozenset(t for o in reached for t in self.owners.get(o, ()))
        every = {o for o, ts in self.owners.items() if ts & targets}
        out_of_date = reached | {o for o in every if not os.path.exists(o)}
        if len(out_of_date) > 1 and out_of_date >= every:
            names = ", ".join(self.relative(p) for p in saved[:3])
            return SaveDecision(targets, len(out_of_date), WholeBuild(
                f"{names} reaches every object of {', '.join(sorted(targets))}",
                len(out_of_date), tuple(saved)), frozenset(reached))
        return SaveDecision(targets, len(out_of_date), reached=frozenset(reached))

    def update(self, objects: Iterable[str]) -> None:
        """After a build that recompiled ``objects``: the headers they read now (an #include
        added or removed), from ninja's deps log of just those objects."""
        wanted = sorted(set(objects))
        if not wanted:
            return
        deps = ninja_deps(self.build_dir, [os.path.relpath(o, self.build_dir) for o in wanted])
        own = _Own(self.root, self.build_dir)
        for obj in wanted:
            if obj not in deps:
                continue
            for path in [p for p, objs in self.reaches.items() if obj in objs]:
                self.reaches[path].discard(obj)
                if not self.reaches[path]:
                    del self.reaches[path]
            for path in [*self._units.get(obj, ()), *(d for d in deps[obj] if own(d))]:
                self.reaches.setdefault(path, set()).add(obj)

    def still_pending(self, pause: WholeBuild) -> bool:
        """Whether a paused change is still unbuilt: ninja would still reconfigure (a configure
        input newer than ``build.ninja``) or recompile (a saved file newer than an object it
        reaches, or such an object missing). A build run elsewhere resolves it."""
        try:
            configured = (self.build_dir / "build.ninja").stat().st_mtime_ns
        except OSError:
            return True
        for path in pause.files:
            try:
                changed = os.stat(path).st_mtime_ns
            except OSError:
                continue
            if path in self.configure_inputs and changed > configured:
                return True
            for obj in self.reaches.get(path, ()):
                try:
                    if os.stat(obj).st_mtime_ns < changed:
                        return True
                except OSError:
                    return True
        return False


def watch_set(root: Path, build_dir: Path, targets: list[str]) -> WatchSet:
    """The watched files of ``targets`` (the build's install components)."""
    graph = read_graph(build_dir, targets, root)
    own = _Own(root, build_dir)
    found = WatchSet(root, build_dir, list(targets))
    found.owners = {o: set(ts) for o, ts in graph.objects.items()}
    units = compile_units(build_dir)
    for obj in graph.objects:
        unit = units.get(obj)
        if unit is not None and own(unit.source):
            found.reaches.setdefault(unit.source, set()).add(obj)
            found._units[obj] = {unit.source}
    for obj, deps in ninja_deps(build_dir).items():
        if obj in graph.objects:
            for dep in deps:
                if own(dep):
                    found.reaches.setdefault(dep, set()).add(obj)
    found.configure_inputs = {p for p in graph.configure_inputs if own(p)}
    return found


class _Own:
    """Whether a path is the checkout's own file (see the module's doc); parents memoized."""

    def __init__(self, root: Path, build_dir: Path) -> None:
        self.root = os.path.realpath(root)
        self.build_dir = os.path.realpath(build_dir)
        self._tool_dirs: dict[str, bool] = {}

    def __call__(self, path: str) -> bool:
        real = os.path.realpath(path)
        if not real.startswith(self.root + os.sep) or real.startswith(self.build_dir + os.sep):
            return False
        parts = os.path.relpath(real, self.root).split(os.sep)
        if parts[0] in _NOT_OWN_TOP:
            return False
        directory = self.root
        for part in parts[:-1]:
            directory = os.path.join(directory, part)
            if self._is_tool_dir(directory):
                return False
        return True

    def _is_tool_dir(self, directory: str) -> bool:
        if directory not in self._tool_dirs:
            self._tool_dirs[directory] = any(os.path.exists(os.path.join(directory, m))
                                             for m in _TOOL_MARKERS)
        return self._tool_dirs[directory]
