"""Ninja's own record of a build, ``.ninja_log``: which steps ran and how long each took.

The log needs nothing the user does not already have, and ninja appends to it as it goes, so the
part written during one build is that build's steps (see :func:`entries_since`).

What a line says (columns: start, end, mtime, output, hash): start and end are milliseconds since
*that ninja run* began, and a line is written when its step *finishes*. So within one run the end
times never decrease, while the start times do whenever a short step (a cache hit, a farm compile
coming back) finishes after a long one that started earlier. A new run restarts the clock: its
end times start again from 0. Since log version 6 the mtime column is the wall-clock time the
command started (ns), so ``mtime - start`` is the run's own start, the same for every line of a
run: a new run shows as a jump there even when its first step ends later than the last run's last.
(Older logs hold the output's mtime there; only the end-time rule applies to them.)

Ninja also rewrites ("recompacts") the log when it has grown with stale lines, keeping one line per
output: the bytes before a build's offset are then gone, so :func:`entries_since` falls back to the
lines that were not in the log before the build (:class:`LogMark`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.errors import VllmDevError

NINJA_LOG = ".ninja_log"
OBJECT_SUFFIXES = (".o", ".obj")
_TARGET_DIR_RE = re.compile(r"^(?:.*/)?CMakeFiles/([^/]+)\.dir/(.+)$")
_VERSION_RE = re.compile(r"^# ninja log v(\d+)")
#: Log versions whose mtime column is the command's start time (wall clock, ns).
START_TIME_VERSION = 6
#: How far apart two lines' run starts (``mtime - start``) may be in one run: the kernel's
#: coarse file clock and the time ninja takes to start a command (measured: under 10 ms).
RUN_START_TOLERANCE_MS = 1000


@dataclass(frozen=True)
class NinjaEntry:
    """One line of ``.ninja_log``: a step's start and end (ms since its ninja run began)."""

    start_ms: int
    end_ms: int
    output: str
    #: The command's wall-clock start (ns since the epoch) from a v6+ log; 0 when unknown.
    started_ns: int = field(default=0, compare=False)

    @property
    def run_start_ms(self) -> int | None:
        """When this line's ninja run began (ms since the epoch), if the log says."""
        return self.started_ns // 1_000_000 - self.start_ms if self.started_ns else None

    @property
    def seconds(self) -> float:
        return max(0, self.end_ms - self.start_ms) / 1000.0

    @property
    def is_object(self) -> bool:
        return self.output.endswith(OBJECT_SUFFIXES)


def log_version(text: str) -> int | None:
    """The version in a ``.ninja_log``'s header line (None: no header)."""
    match = _VERSION_RE.match(text)
    return int(match.group(1)) if match else None


def parse_ninja_log(text: str, *, version: int | None = None) -> list[NinjaEntry]:
    """Entries of a ``.ninja_log`` text (versions 5 to 7 share the first four columns).

    ``version`` is the log's (for a slice of a log without its header line); by default the
    header's."""
    version = log_version(text) if version is None else version
    start_times = version is not None and version >= START_TIME_VERSION
    entries = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 4 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        started = int(parts[2]) if start_times and parts[2].isdigit() else 0
        entries.append(NinjaEntry(int(parts[0]), int(parts[1]), parts[3], started))
    return entries


def split_runs(entries: list[NinjaEntry]) -> list[list[NinjaEntry]]:
    """Entries grouped by ninja run, in log order.

    A run ends where the end time goes back (the next run's clock restarted) or where the run's
    wall-clock start moves (v6+ logs). Never where a *start* time goes back: that is a short step
    finishing after a long one, within one run (a farm build's steps come back in any order)."""
    runs: list[list[NinjaEntry]] = []
    last_end: int | None = None
    run_start: int | None = None
    for entry in entries:
        begins = entry.run_start_ms
        new_run = last_end is None or entry.end_ms < last_end or (
            begins is not None and run_start is not None
            and abs(begins - run_start) > RUN_START_TOLERANCE_MS)
        if new_run:
            runs.append([])
            run_start = None
        runs[-1].append(entry)
        last_end = entry.end_ms
        if begins is not None and run_start is None:
            run_start = begins
    return runs


def latest_run(entries: list[NinjaEntry]) -> list[NinjaEntry]:
    """The entries of the last ninja run (see :func:`split_runs`)."""
    runs = split_runs(entries)
    return runs[-1] if runs else []


def log_size(build_dir: Path) -> int:
    try:
        return (build_dir / NINJA_LOG).stat().st_size
    except OSError:
        return 0


@dataclass(frozen=True)
class LogMark:
    """The log as it was before a build: what the build's own lines are told apart from."""

    data: bytes = b""

    @property
    def offset(self) -> int:
        return len(self.data)

    @classmethod
    def take(cls, build_dir: Path) -> LogMark:
        try:
            return cls((build_dir / NINJA_LOG).read_bytes())
        except OSError:
            return cls()


def entries_since(build_dir: Path, mark: LogMark | int) -> list[NinjaEntry]:
    """The lines ninja wrote to the log after ``mark`` (a :class:`LogMark`, or a byte offset).

    Normally they are the bytes past the mark. If ninja recompacted the log meanwhile (the bytes
    before the mark changed), they are the lines that were not in the log before; with only an
    offset to go by, the log's last run."""
    path = build_dir / NINJA_LOG
    try:
        data = path.read_bytes()
    except OSError:
        return []
    before = mark if isinstance(mark, LogMark) else None
    offset = mark.offset if isinstance(mark, LogMark) else mark
    version = log_version(data.decode(errors="replace"))
    if len(data) >= offset and (before is None or data.startswith(before.data)):
        return parse_ninja_log(data[offset:].decode(errors="replace"), version=version)
    text = data.decode(errors="replace")
    if before is None:
        return latest_run(parse_ninja_log(text))
    old = set(before.data.decode(errors="replace").splitlines())
    return parse_ninja_log("\n".join(ln for ln in text.splitlines() if ln not in old),
                           version=version)


@dataclass(frozen=True)
class UnitTime:
    """Compile time of one translation unit."""

    source: str
    target: str
    seconds: float
    output: str


def unit_of(entry: NinjaEntry) -> UnitTime:
    """``CMakeFiles/_C.dir/csrc/ops/add.cpp.o`` -> source ``csrc/ops/add.cpp``, target ``_C``."""
    match = _TARGET_DIR_RE.match(entry.output)
    target, rest = (match.group(1), match.group(2)) if match else ("", entry.output)
    for suffix in OBJECT_SUFFIXES:
        if rest.endswith(suffix):
            rest = rest[: -len(suffix)]
            break
    return UnitTime(rest, target, entry.seconds, entry.output)


def source_of(output: str) -> str:
    """The source file a ninja output was compiled from (the output itself if not an object)."""
    if not output.endswith(OBJECT_SUFFIXES):
        return output
    return unit_of(NinjaEntry(0, 0, output)).source


def slowest_units(entries: list[NinjaEntry], limit: int | None = None) -> list[UnitTime]:
    """Translation units by compile time, slowest first; a unit built twice counts once (last)."""
    last: dict[str, NinjaEntry] = {}
    for entry in entries:
        if entry.is_object:
            last[entry.output] = entry
    units = sorted((unit_of(e) for e in last.values()), key=lambda u: (-u.seconds, u.source))
    return units if limit is None else units[:limit]


def rank_build_dir(build_dir: Path, limit: int) -> list[UnitTime]:
    """Every translation unit the build dir's ``.ninja_log`` knows, slowest first."""
    path = build_dir / NINJA_LOG
    if not path.is_file():
        raise VllmDevError(f"{path} does not exist: run `vllm-dev build` first (ninja writes it)")
    return slowest_units(parse_ninja_log(path.read_text(errors="replace")), limit)


def render_ranking(units: list[UnitTime]) -> list[str]:
    """``vllm-dev report --slowest N`` as aligned text lines."""
    if not units:
        return ["no compiled translation units in the ninja log"]
    width = max(len(u.source) for u in units)
    return [f"{i:>3}. {u.seconds:8.2f} s  {u.source:<{width}}  {u.target}"
            for i, u in enumerate(units, 1)]
