"""How long each build step took here before: the timing history behind a build's cost estimate
and the per-object split plan.

A build dir's ``.ninja_log`` already holds the time of every step it ran, but ``vllm-dev clean``
removes it with the build dir, and a checkout without W (or after a base move) builds in a fresh
one. So every build that ran steps adds them to a history kept outside the build dir, in
``<checkout>/.vllm-dev/history/<preset>-<device>-<arch>.json`` (one file per preset and arch:
the same object takes minutes for seven CUDA arches and seconds for one).

Per step (a ninja output, relative to the build dir) it keeps:

* ``miss``: the seconds of its last real compile (a compiler-cache miss, or no cache);
* ``hit``: the seconds of its last compiler-cache hit;
* ``inputs``: the files the compiler read for it (ninja's deps log, right after the build), as
  indexes into one shared path table, and ``digest``: their identities (mtime, size) then. An
  object whose inputs still have those identities, compiled through the same cache directory,
  is an expected cache hit (ccache's depend mode hashes exactly the source and those files).
  The checkout's own files count by content (a configure writes its generated headers again,
  same bytes, new mtime, after every ``clean``: in ``csrc/`` too, e.g. vLLM's
  ``cpu_attn_dispatch_generated.h``); files outside it (torch's, the system's) by mtime and
  size: one touched without a change makes the estimate say "miss" where ccache hits, so the
  estimate errs on the long side, never the short one.

The build dir's own ``.ninja_log`` fills in what the history lacks (:meth:`History.fill_from_log`):
objects built there before the history existed, or by a plain ``cmake --build``.

Which steps of a build were hits: ninja does not say, so the cache's counters do (the build
report's before/after difference): with no hit every step was a miss; with ``h`` hits the ``h``
shortest object steps are taken as the hits (a hit takes milliseconds, a miss seconds); with the
count unknown (a build that failed or was stopped), only steps of a second or more count, as misses.

Per build it keeps the compile phase's wall time, the steps' summed time, its critical path (the
longest compile and then the longest link) and the job count: the estimate learns this machine's
overhead from them.

And the load each build met (:class:`Load`): the 1-minute load average when it started, before
its own compiles (other people's work on a shared machine), the CPUs that average spreads over,
the CPUs the build could use and its compiles at once. A step's time carries the load it was
measured under (40 of ``_C``'s objects took 124 s on the idle 2-core VM, and had been timed at
3.5 times that while other builds ran): the estimate scales it by the contention now against then
(reporting/estimate.py). Kept per build (``builds[].load``...) and per step timed (``load``: output
-> ``[load, online, cpus, jobs]``), both optional: no version bump. An older vllm-dev reads the
file as before (it ignores keys it does not know, and the steps' entries keep their five items)
and drops the loads when it writes the file; the steps it timed then have no load, and the
estimate corrects no time whose load it does not know. A bump would have cost that older
vllm-dev the whole history (a newer record is used by no one older) for a field it can do
without.

The per-object split (host/split_launcher.py) reads the same history
(:meth:`History.compile_times`): it gives threads to the objects that took longest before, and
like the estimate it needs those times most after a ``clean``, per arch list. (Until issue 23 it
kept a file of its own per preset, ``.vllm-dev/unit-times-<preset>.json``: such a file is still
read where the history has no time for an object, and never written again.)

A record of state/records.py, written compact (not sqlite): one small file per preset, device and
arch, read only when a build is big enough to estimate or plans a per-object split.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_dev.host.machine import usable_cpus
from vllm_dev.reporting.ninja_log import NINJA_LOG, OBJECT_SUFFIXES, NinjaEntry, parse_ninja_log
from vllm_dev.state import layout, records

KIND = "vllm-dev timing history"
VERSION = 1
FORMAT = records.Format("timing history", KIND, VERSION, compact=True, sort_keys=False)
DIRECTORY = layout.HISTORY_DIR
# The split plan's own file before the history served it (read only, see the module docstring).
LEGACY_KIND = "vllm-dev unit times"
LEGACY = records.Format("unit times", LEGACY_KIND, 1)
BUILDS_KEPT = 20
# With the hit count unknown (a failed or interrupted build), a compile this long was no hit.
SURELY_A_MISS = 1.0


def history_path(state_dir: Path, *, preset: str, device: str, arch: str | None) -> Path:
    """The history file of one preset, device and arch list (``.vllm-dev/history/...``)."""
    return state_dir / DIRECTORY / layout.history_name(preset, device, arch)


def _decode(path: Path, body: dict[str, Any]) -> History:
    history = History(path)
    history.paths = [str(p) for p in body.get("paths", [])]
    history.build_dir = str(body.get("build_dir") or "")
    for output, entry in dict(body.get("steps", {})).items():
        miss, hit, digest, cache, inputs = entry
        history.steps[str(output)] = StepTime(miss, hit, list(inputs), str(digest), str(cache))
    for output, (load, online, cpus, jobs) in dict(body.get("load", {})).items():
        if str(output) in history.steps:
            history.loads[str(output)] = Load(float(load), int(online), int(cpus), int(jobs))
    history.builds = [records.from_json(BuildTime, b, f"builds[{i}]")
                      for i, b in enumerate(body.get("builds", []))]
    return history


def _legacy_unit_times(state_dir: Path, preset: str) -> dict[str, float]:
    """The object times an older vllm-dev kept for the split plan of ``preset`` (none: {})."""
    legacy = state_dir / layout.LEGACY_UNIT_TIMES.format(preset=preset)
    objects = records.load(LEGACY, legacy, lambda body: body.get("objects")).value
    if not isinstance(objects, dict):
        return {}
    return {str(k): float(v) for k, v in objects.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def critical_path(steps: Iterable[tuple[bool, float]]) -> float:
    """A lower bound of a build's wall time whatever its parallelism: its longest compile, then
    its longest other step (a link waits for its objects). ``steps``: (is an object, seconds)."""
    objects = [s for is_object, s in steps if is_object] or [0.0]
    others = [s for is_object, s in steps if not is_object] or [0.0]
    return max(objects) + max(others)


def inputs_digest(paths: Iterable[str], *, by_content: str = "",
                  marks: dict[str, str] | None = None) -> str:
    """What ``paths`` are now, as one short digest; a missing file counts. Files under
    ``by_content`` (the checkout: its headers, and those its configure generates into the source
    tree and the build dir, written again with the same bytes after every ``clean``) count by
    their content, the others (torch's, the system's) by mtime and size. ``marks`` remembers
    each file's mark across calls (one estimate reads a header once, however many units use it)."""
    digest = hashlib.sha1(usedforsecurity=False)
    prefix = by_content.rstrip("/") + "/" if by_content else None
    marks = {} if marks is None else marks
    for path in paths:
        if path not in marks:
            try:
                if prefix and path.startswith(prefix):
                    with open(path, "rb") as handle:
                        marks[path] = hashlib.sha1(handle.read(),
                                                   usedforsecurity=False).hexdigest()
                else:
                    st = os.stat(path)
                    marks[path] = f"{st.st_mtime_ns}\0{st.st_size}"
            except OSError:
                marks[path] = "-"
        digest.update(f"{path}\0{marks[path]}\n".encode())
    return digest.hexdigest()[:16]


def machine_load() -> Load | None:
    """The load now: the 1-minute load average, the CPUs it spreads over (``os.cpu_count()``:
    the load average counts the whole machine's runnable tasks, also in a container) and the
    CPUs this process may use (host/machine.py: affinity, cgroup quota). None where the
    platform has no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return Load(round(load, 2), os.cpu_count() or 1, usable_cpus().count)


@dataclass(frozen=True)
class Load:
    """The load a build met: ``load``, the 1-minute load average when it started (other work
    on the machine: its own compiles had not started), over ``online`` CPUs; ``cpus``, the CPUs
    its compiles could use, and ``jobs``, how many of them ran at once (0: not known yet)."""

    load: float
    online: int
    cpus: int
    jobs: int = 0

    def contention(self, jobs: int | None = None) -> float:
        """How much longer a step takes than alone on an idle CPU: the other work's share of
        each CPU (the load spread over the machine's CPUs) plus this build's own compiles per
        usable CPU, when that is over 1 (see reporting/estimate.py)."""
        own = self.jobs if jobs is None else jobs
        return max(1.0, self.load / max(1, self.online) + max(1, own) / max(1, self.cpus))


@dataclass
class StepTime:
    miss: float | None = None
    hit: float | None = None
    inputs: list[int] = field(default_factory=list)
    digest: str = ""
    cache: str = ""  # the compiler cache (kind and directory) the step went through


@dataclass
class BuildTime:
    """One build's compile phase: wall seconds, the steps' summed seconds, the job count."""

    wall: float
    work: float
    jobs: int
    steps: int
    critical: float = 0.0  # the longest compile plus the longest other step (its link)
    # the load it met (:class:`Load`; None: not known, an older vllm-dev's or a farm's build)
    load: float | None = None
    online: int | None = None
    cpus: int | None = None


@dataclass
class History:
    path: Path
    build_dir: str = ""  # where the steps ran
    paths: list[str] = field(default_factory=list)
    steps: dict[str, StepTime] = field(default_factory=dict)
    builds: list[BuildTime] = field(default_factory=list)
    loads: dict[str, Load] = field(default_factory=dict)  # output -> the load its miss met
    _marks: dict[str, str] = field(default_factory=dict, repr=False)
    writable: bool = field(default=True, repr=False)  # False: a newer vllm-dev's, kept as it is

    @property
    def checkout(self) -> str:
        """The checkout the history belongs to (``<checkout>/.vllm-dev/history/<file>``): its
        files count by content in the digests."""
        parents = self.path.parents
        return str(parents[2]) if len(parents) > 2 else ""

    def digest(self, inputs: list[str]) -> str:
        return inputs_digest(inputs, by_content=self.checkout, marks=self._marks)

    @classmethod
    def load(cls, path: Path) -> History:
        """The history in ``path``; an empty one when absent, damaged (set aside), of another
        kind or of a newer vllm-dev (then never written)."""
        try:
            loaded = records.load(FORMAT, path, lambda body: _decode(path, body))
        except Exception:  # noqa: BLE001  (a history is a hint: never a reason to fail a build)
            return cls(path, writable=False)
        return loaded.value or cls(path, writable=loaded.writable)

    def save(self) -> None:
        """Compact JSON (a whole vLLM tree's history holds millions of input indexes: indented,
        writing it took 0.14 s of every build that compiled something; compact, a third)."""
        if not self.writable:
            return
        used = sorted({i for s in self.steps.values() for i in s.inputs})
        renumber = {old: new for new, old in enumerate(used)}
        records.save(FORMAT, self.path, {
            "build_dir": self.build_dir,
            "paths": [self.paths[i] for i in used],
            "steps": {o: [s.miss, s.hit, s.digest, s.cache, [renumber[i] for i in s.inputs]]
                      for o, s in sorted(self.steps.items())},
            "builds": [records.to_json(b) for b in self.builds[-BUILDS_KEPT:]],
            "load": {o: [m.load, m.online, m.cpus, m.jobs] for o, m in sorted(self.loads.items())
                     if o in self.steps},
        }, guard=False)

    def compile_times(self, build_dir: Path, *, preset: str) -> dict[str, float]:
        """Object -> seconds of its last compile, for the per-object split plan: the history's
        (its last real compile, else its last cache hit), under what an older vllm-dev kept in
        ``unit-times-<preset>.json`` for an object the history lacks, under the build dir's own
        ``.ninja_log``, which wins where it knows an object (as the split plan always read it)."""
        times = _legacy_unit_times(self.path.parent.parent, preset)
        for output, step in self.steps.items():
            seconds = step.miss if step.miss is not None else step.hit
            if seconds is not None and output.endswith(OBJECT_SUFFIXES):
                times[output] = seconds
        try:
            text = (build_dir / NINJA_LOG).read_text(errors="replace")
        except OSError:
            return times
        times.update({e.output: e.seconds for e in parse_ninja_log(text) if e.is_object})
        return times

    def inputs_of(self, output: str) -> list[str]:
        step = self.steps.get(output)
        return [self.paths[i] for i in step.inputs if i < len(self.paths)] if step else []

    def expected_hit(self, output: str, cache: str) -> bool:
        """Whether ``output`` compiled through ``cache`` would be a hit: it went through that
        cache before, and every file it read then is as it was."""
        step = self.steps.get(output)
        if step is None or not cache or step.cache != cache or not step.inputs:
            return False
        return self.digest(self.inputs_of(output)) == step.digest

    def fill_from_log(self, build_dir: Path) -> None:
        """Steps the build dir's own ``.ninja_log`` timed and this history has no compile time
        for (built before the history existed, or by a plain ``cmake --build``): their last
        time there, in memory only. Whether that was a cache hit the log cannot say; a time of
        :data:`SURELY_A_MISS` or more was not one, and a shorter one is short either way."""
        try:
            text = (build_dir / NINJA_LOG).read_text(errors="replace")
        except OSError:
            return
        last: dict[str, NinjaEntry] = {}
        for entry in parse_ninja_log(text):
            last[entry.output] = entry
        for output, entry in last.items():
            step = self.steps.get(output)
            if step is None:
                self.steps[output] = StepTime(miss=entry.seconds)
            elif step.miss is None:
                step.miss = entry.seconds

    def record(self, entries: list[NinjaEntry], *, hits: int | None, cache: str,
               deps: Mapping[str, list[str]], build_dir: Path, wall: float | None,
               jobs: int, load: Load | None = None) -> None:
        """Add one build's steps (``entries``: what ninja ran, as in ``.ninja_log``). ``hits``:
        the compiler-cache hits of the build (None: unknown, then no step's time is taken as a
        miss or a hit unless the cache is off); ``deps``: absolute output -> its inputs;
        ``load``: the load the build met at its start (None: unknown, or not this machine's, a
        farm's): each compile time taken keeps it, with the compiles the build ran at once."""
        if not entries:
            return
        if load is not None:  # its compiles at once: its jobs, or fewer objects
            load = Load(load.load, load.online, load.cpus,
                        max(1, min(jobs, sum(e.is_object for e in entries))))
        self._marks.clear()  # the build may have written files an estimate read before
        objects = sorted((e for e in entries if e.is_object), key=lambda e: e.seconds)
        hit_outputs: set[str] = set()
        if cache and hits:
            hit_outputs = {e.output for e in objects[:hits]}
        if str(build_dir) != self.build_dir:  # another binaryDir: the digests are its own
            self.build_dir = str(build_dir)
            for step in self.steps.values():
                step.digest = ""
        index = {p: i for i, p in enumerate(self.paths)}
        for entry in entries:
            step = self.steps.setdefault(entry.output, StepTime())
            missed = False
            if not entry.is_object or not cache:
                missed = True
            elif entry.output in hit_outputs:
                step.hit = entry.seconds
            elif hits is not None or entry.seconds >= SURELY_A_MISS:
                missed = True
            if missed:  # a new compile time: the load it met, or none (an older one's is stale)
                step.miss = entry.seconds
                if load is not None:
                    self.loads[entry.output] = load
                else:
                    self.loads.pop(entry.output, None)
            if entry.is_object:
                step.cache = cache
                inputs = deps.get(os.path.normpath(os.path.join(build_dir, entry.output)), [])
                if inputs:
                    for path in inputs:
                        if path not in index:
                            index[path] = len(self.paths)
                            self.paths.append(path)
                    step.inputs = [index[p] for p in inputs]
                    step.digest = self.digest(inputs)
        if wall is not None:
            self.builds.append(BuildTime(round(wall, 3),
                                         round(sum(e.seconds for e in entries), 3), jobs,
                                         len(entries), round(critical_path(
                                             [(e.is_object, e.seconds) for e in entries]), 3),
                                         *((load.load, load.online, load.cpus) if load
                                           else (None, None, None))))
            self.builds = self.builds[-BUILDS_KEPT:]

