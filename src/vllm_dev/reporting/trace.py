"""A build's timeline: which job slot compiled what, when, and which compiles were cache hits or
went to the build farm, as Chrome trace events (Perfetto, ``chrome://tracing``) and as a
self-contained SVG (:mod:`vllm_dev.reporting.timeline_svg`).

The steps and their times are the ``.ninja_log`` lines of the build (reporting/ninja_log.py).
Ninja records no job slot, so slots are given back here: each step, in order of start, takes the
lowest slot free at its start. With ``-j N`` no more than N steps overlap, so this uses at most N
lanes, and a lane with a gap is a slot that sat idle. A build whose ninja restarted (CMake re-ran
first) has several runs; they are laid end to end.

Cache hits come from ccache's own per-compile record of the build (``CCACHE_STATSLOG``, which the
compile step points at ``<build dir>/vllm-dev-ccache.log``): one record per compile, naming the
source and its counters. A build with ``--dist`` marks its compiles as sent to the farm (sccache
tells where each step ran only in total; the report's farm line has the local fallbacks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_dev.reporting.ninja_log import NinjaEntry, source_of, split_runs, unit_of
from vllm_dev.state import layout

#: ccache's per-compile record of the last build, in the build dir (the compile step sets
#: ``CCACHE_STATSLOG`` to it).
CACHE_LOG = layout.CCACHE_LOG
#: Marks of a step: how its output was made.
HIT, MISS, UNCACHED, FARM = "cache hit", "compiled", "not cacheable", "farm"
_HIT_COUNTERS = ("direct_cache_hit", "preprocessed_cache_hit", "remote_storage_hit",
                 "local_storage_hit")


@dataclass(frozen=True)
class Step:
    """One step on the timeline (ms since the build's first ninja run began)."""

    start_ms: int
    end_ms: int
    output: str
    lane: int = 0
    mark: str = ""

    @property
    def kind(self) -> str:
        """``CUDA``, ``C++``, ``link`` or ``other``, from the output's name."""
        if self.output.endswith((".cu.o", ".cu.obj")):
            return "CUDA"
        if self.output.endswith((".o", ".obj")):
            return "C++"
        if self.output.endswith((".so", ".a", ".dylib", ".dll", ".exe")) or "." not in \
                Path(self.output).name:
            return "link"
        return "other"

    @property
    def name(self) -> str:
        """What the step made: the source of an object, else the output."""
        return source_of(self.output)

    @property
    def seconds(self) -> float:
        return max(0, self.end_ms - self.start_ms) / 1000.0


def cache_marks(text: str) -> dict[str, str]:
    """ccache's stats log (``# <source>`` then one counter per line) as source -> mark; a source
    compiled more than once keeps its last record."""
    marks: dict[str, str] = {}
    source: str | None = None
    counters: list[str] = []

    def flush() -> None:
        if source is None:
            return
        if any(c in _HIT_COUNTERS for c in counters):
            marks[source] = HIT
        elif "cache_miss" in counters:
            marks[source] = MISS
        else:
            marks[source] = UNCACHED

    for line in text.splitlines():
        if line.startswith("# "):
            flush()
            source, counters = line[2:].strip(), []
        elif line.strip():
            counters.append(line.strip())
    flush()
    return marks


def _mark_of(entry: NinjaEntry, marks: Mapping[str, str], farm: bool) -> str:
    if not entry.is_object:
        return ""
    if farm:
        return FARM
    source = unit_of(entry).source
    for path, mark in marks.items():  # the log names the source as the compiler got it
        if path == source or path.endswith("/" + source):
            return mark
    return ""


def timeline(entries: list[NinjaEntry], *, marks: Mapping[str, str] | None = None,
             farm: bool = False) -> list[Step]:
    """The build's steps on job-slot lanes (see the module docstring)."""
    steps: list[Step] = []
    offset = 0
    for run in split_runs(entries):
        for entry in run:
            steps.append(Step(entry.start_ms + offset, entry.end_ms + offset, entry.output,
                              mark=_mark_of(entry, marks or {}, farm)))
        offset = max((s.end_ms for s in steps), default=offset)
    return assign_lanes(steps)


def assign_lanes(steps: Iterable[Step]) -> list[Step]:
    """Each step, by start time, on the lowest lane free when it starts."""
    lanes: list[int] = []  # end time of each lane's last step
    placed: list[Step] = []
    for step in sorted(steps, key=lambda s: (s.start_ms, s.end_ms, s.output)):
        lane = next((i for i, end in enumerate(lanes) if end <= step.start_ms), len(lanes))
        if lane == len(lanes):
            lanes.append(step.end_ms)
        else:
            lanes[lane] = step.end_ms
        placed.append(Step(step.start_ms, step.end_ms, step.output, lane, step.mark))
    return placed


def to_rows(steps: list[Step]) -> list[list[Any]]:
    """Compact rows for the stored report: ``[start_ms, end_ms, output, mark]``."""
    return [[s.start_ms, s.end_ms, s.output, s.mark] for s in steps]


def from_rows(rows: Iterable[Any]) -> list[Step]:
    """:func:`to_rows` read back (lanes assigned again)."""
    steps = [Step(int(r[0]), int(r[1]), str(r[2]), mark=str(r[3]) if len(r) > 3 else "")
             for r in rows if isinstance(r, (list, tuple)) and len(r) >= 3]
    return assign_lanes(steps)


def chrome_trace(steps: list[Step], *, title: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """Chrome trace events (the JSON Object Format): one thread per job slot, one complete
    event ("ph": "X") per step, its category the kind and the mark."""
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": 1, "tid": 0, "name": "process_name", "args": {"name": title}}]
    for lane in sorted({s.lane for s in steps}):
        events.append({"ph": "M", "pid": 1, "tid": lane + 1, "name": "thread_name",
                       "args": {"name": f"job slot {lane + 1}"}})
        events.append({"ph": "M", "pid": 1, "tid": lane + 1, "name": "thread_sort_index",
                       "args": {"sort_index": lane + 1}})
    for step in steps:
        events.append({
            "ph": "X", "pid": 1, "tid": step.lane + 1, "name": step.name,
            "cat": ",".join(c for c in (step.kind, step.mark) if c),
            "ts": step.start_ms * 1000, "dur": max(1, step.end_ms - step.start_ms) * 1000,
            "args": {"output": step.output, "seconds": round(step.seconds, 3),
                     **({"made": step.mark} if step.mark else {})},
        })
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"title": title, **{k: str(v) for k, v in details.items()}}}


def summary(steps: list[Step]) -> dict[str, Any]:
    """Counts for the SVG's caption and tests: steps, lanes, marks."""
    marks: dict[str, int] = {}
    for step in steps:
        if step.mark:
            marks[step.mark] = marks.get(step.mark, 0) + 1
    return {"steps": len(steps), "lanes": len({s.lane for s in steps}),
            "objects": sum(1 for s in steps if s.kind in ("CUDA", "C++")), "marks": marks,
            "span_s": max((s.end_ms for s in steps), default=0) / 1000.0}



def build_timeline(build_dir: Path, entries: list[NinjaEntry], *, farm: bool) -> list[Step]:
    """This build's timeline: ``entries`` marked from the build dir's ccache log."""
    try:
        marks = cache_marks((build_dir / CACHE_LOG).read_text(errors="replace"))
    except OSError:
        marks = {}
    return timeline(entries, marks=marks, farm=farm)
