"""The headers each translation unit reads, asked of the compiler itself.

Objects ninja built before have their headers in ninja's deps log (checkout/build_graph.py); for
the others, the object's command from ``compile_commands.json`` is run with ``-M`` (gcc and nvcc
both print the make rule of every file the unit reads). Scans run in parallel and are remembered
per object in the build dir's ``vllm-dev-deps.json`` (the command, and the identity of every file
it read), so a second selection costs only ``stat`` calls.

The scans are queries with process/runner.py's module default, on a :class:`QueryPool`: an
interrupted (or failed) selection stops the scans in flight with their whole process trees.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.checkout.build_graph import ninja_deps
from vllm_dev.errors import CannotRun, VllmDevError
from vllm_dev.process.runner import QueryPool, query
from vllm_dev.state import layout, records

DEPS_CACHE = layout.SCANS
# Version 1 was a bare object of object -> scan (no kind): read as version 2's "objects".
SCANS_FORMAT = records.Format("header scans", "vllm-dev header scans", 2,
                              legacy=lambda data: {"objects": data})
# What -M needs removed from a compile command (flag, takes a value).
_DROP_WITH_VALUE = {"-o", "-MF", "-MT", "-MQ", "--dependency-output", "-odir"}
_DROP = {"-c", "-MD", "-MMD", "--generate-dependencies-with-compile",
         "--generate-nonsystem-dependencies-with-compile", "-dc", "--device-c"}


@dataclass(frozen=True)
class Unit:
    obj: str
    source: str
    directory: str
    argv: list[str]


def compile_units(build_dir: Path) -> dict[str, Unit]:
    """Object path -> how it is compiled, from compile_commands.json (presets turn it on)."""
    path = build_dir / layout.COMPILE_DB
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        raise VllmDevError(f"{path} is missing or unreadable: configure with "
                           "CMAKE_EXPORT_COMPILE_COMMANDS=ON (vllm-dev's presets do)") from None
    units: dict[str, Unit] = {}
    for entry in entries:
        directory = entry.get("directory", str(build_dir))
        argv = entry.get("arguments") or shlex.split(entry.get("command", ""))
        output = entry.get("output") or _output_of(argv)
        if not output or not argv:
            continue
        obj = os.path.normpath(os.path.join(directory, output))
        units[obj] = Unit(obj, os.path.normpath(os.path.join(directory, entry["file"])),
                          directory, list(argv))
    return units


def _output_of(argv: list[str]) -> str:
    return next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-o"), "")


def scan_command(argv: list[str]) -> list[str]:
    """The compile command turned into a dependency scan printing a make rule on stdout."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _DROP_WITH_VALUE:
            skip = True
            continue
        if arg in _DROP or arg.startswith(("-MF", "-MT", "-MQ")) and len(arg) > 3:
            continue
        out.append(arg)
    if "nvcc" in os.path.basename(out[0] if out else ""):
        return [*out, "-M"]
    # -MG: a header this machine lacks (a system one such as numa.h, or one a build step
    # generates) is listed instead of stopping the scan; it cannot be a changed checkout file
    # unless it exists, and then it is found.
    return [*out, "-M", "-MG"]


def parse_make_rule(text: str, directory: str) -> list[str]:
    body = text.replace("\\\n", " ")
    _, _, deps = body.partition(": ")
    items = re.split(r"(?<!\\)\s+", deps.strip())
    return [os.path.normpath(os.path.join(directory, i.replace("\\ ", " "))) for i in items if i]


def _identity(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


@dataclass
class DepsScanner:
    """Headers of each object: ninja's record, a remembered scan, or a new ``-M`` scan.

    A unit is scanned only while one of its targets is still unreached: one hit decides a
    target, so a header used everywhere costs about one scan per target, and a header used by
    none costs a scan of every unit once (remembered after that)."""

    build_dir: Path
    jobs: int
    remember: bool = True  # False for dry runs: they change nothing, not even this memo
    scanned: int = 0

    def find(self, owners: dict[str, set[str]], candidates: set[str], reached: set[str]
             ) -> list[tuple[str, str]]:
        """(object, changed header) pairs for the objects in ``owners`` (object -> targets);
        ``reached`` (targets already affected) grows as hits come in."""
        hits: list[tuple[str, str]] = []

        def take(obj: str, deps: list[str]) -> None:
            found = sorted(candidates.intersection(deps))
            hits.extend((obj, header) for header in found)
            if found:
                reached.update(owners[obj])

        recorded = ninja_deps(self.build_dir)
        units = compile_units(self.build_dir)
        cache_path = self.build_dir / DEPS_CACHE
        loaded = records.load(SCANS_FORMAT, cache_path, _scans)
        cache = loaded.value or {}
        pending: list[Unit] = []
        seen: dict[str, list[int] | None] = {}  # units share most headers: one stat each

        def stat(path: str) -> list[int] | None:
            if path not in seen:
                seen[path] = _identity(path)
            return seen[path]

        for obj in _round_robin(owners):
            entry = cache.get(obj)
            unit = units.get(obj)
            if obj in recorded:
                take(obj, recorded[obj])
            elif unit is None:
                continue
            elif (isinstance(entry, dict) and entry.get("argv") == unit.argv
                    and all(stat(p) == s for p, s in entry.get("files", {}).items())):
                take(obj, list(entry["files"]))
            else:
                pending.append(unit)
        with QueryPool(self.jobs) as pool:
            running: dict[Future[list[str]], Unit] = {}
            while pending or running:
                while pending and len(running) < max(1, self.jobs):
                    unit = pending.pop(0)
                    if not owners[unit.obj] <= reached:
                        running[pool.submit(self._scan, unit)] = unit
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    unit = running.pop(future)
                    files = future.result()
                    self.scanned += 1
                    cache[unit.obj] = {"argv": unit.argv,
                                       "files": {p: _identity(p) for p in files}}
                    take(unit.obj, files)
        if self.scanned and self.remember and loaded.writable:
            records.save(SCANS_FORMAT, cache_path, {"objects": cache}, guard=False)
        return hits

    def _scan(self, unit: Unit) -> list[str]:
        try:
            done = query(scan_command(unit.argv), cwd=Path(unit.directory), timeout=600)
        except CannotRun as exc:
            raise VllmDevError(f"cannot scan the headers of {unit.source}: {exc.detail}"
                               ) from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise VllmDevError(f"the header scan of {unit.source} failed ({last})") from None
        return parse_make_rule(done.stdout, unit.directory)


def _scans(body: dict[str, object]) -> dict[str, object]:
    objects = body.get("objects")
    if not isinstance(objects, dict):
        raise records.Corrupt("objects", "must be an object")
    return objects


def _round_robin(owners: dict[str, set[str]]) -> list[str]:
    """Objects ordered one target after another, so early hits spread over the targets."""
    queues: dict[str, list[str]] = {}
    for obj in sorted(owners):
        queues.setdefault(min(owners[obj]), []).append(obj)
    out: list[str] = []
    while any(queues.values()):
        for queue in queues.values():
            if queue:
                out.append(queue.pop(0))
    return out
