"""Ninja's own record of a build, ``.ninja_log``: which steps ran and how long each took.

The log needs nothing the user does not already have, and ninja appends to it as it goes, so the
part written during one build is that build's steps (see :func:`entries_since`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.errors import VllmDevError

NINJA_LOG = ".ninja_log"
OBJECT_SUFFIXES = (".o", ".obj")
_TARGET_DIR_RE = re.compile(r"^(?:.*/)?CMakeFiles/([^/]+)\.dir/(.+)$")


@dataclass(frozen=True)
class NinjaEntry:
    """One line of ``.ninja_log``: a step's start and end (ms since its ninja run began)."""

    start_ms: int
    end_ms: int
    output: str

    @property
    def seconds(self) -> float:
        return max(0, self.end_ms - self.start_ms) / 1000.0

    @property
    def is_object(self) -> bool:
        return self.output.endswith(OBJECT_SUFFIXES)


def parse_ninja_log(text: str) -> list[NinjaEntry]:
    """Entries of a ``.ninja_log`` text (versions 5 to 7 share the first four columns)."""
    entries = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 4 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        entries.append(NinjaEntry(int(parts[0]), int(parts[1]), parts[3]))
    return entries


def latest_run(entries: list[NinjaEntry]) -> list[NinjaEntry]:
    """The entries of the last ninja run: start times restart from 0 with every run."""
    run: list[NinjaEntry] = []
    previous = None
    for entry in entries:
        if previous is not None and entry.start_ms < previous:
            run = []
        run.append(entry)
        previous = entry.start_ms
    return run


def log_size(build_dir: Path) -> int:
    try:
        return (build_dir / NINJA_LOG).stat().st_size
    except OSError:
        return 0


def entries_since(build_dir: Path, offset: int) -> list[NinjaEntry]:
    """What ninja appended to the log after it was ``offset`` bytes long."""
    path = build_dir / NINJA_LOG
    try:
        data = path.read_bytes()
    except OSError:
        return []
    if len(data) < offset:  # ninja recompacted the log: fall back to its last run
        return latest_run(parse_ninja_log(data.decode(errors="replace")))
    return parse_ninja_log(data[offset:].decode(errors="replace"))


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
