"""Which compiles the next ninja run will start, asked of ninja itself (``ninja -n``).

The split of one unit's compile over idle cores (host/parallelism.py) is decided before the build
starts, and passed in the environment: ``NVCC_APPEND_FLAGS`` holds one value for a whole ninja
run. So the count of CUDA units about to compile must be known first. ``ninja -n`` answers it
exactly: it loads the same graph, logs and deps as the real run, stats the same files, prints the
description of every step it would run (``Building CUDA object <object>``) and runs and writes
nothing (no ``.ninja_log`` entry, no deps record). It costs what a no-op ninja costs (one stat of
every input). When ``build.ninja`` itself is out of date, ninja would re-run CMake first and
``-n`` stops there: the count is then unknown (:attr:`Pending.regenerates`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.errors import CannotRun
from vllm_dev.process.runner import query

_STEP_RE = re.compile(r"^Building (\w+) object (\S.*)$")
_REGENERATE = "Re-running CMake"


@dataclass(frozen=True)
class Pending:
    """The compiles a ninja run would start, by language (object paths, as ninja names them)."""

    cuda: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    steps: int = 0  # every step, links included
    regenerates: bool = False  # build.ninja is out of date: CMake re-runs first, counts unknown
    seconds: float = 0.0


def parse_dry_run(text: str) -> Pending:
    """``ninja -n`` output (status prefix turned off) as :class:`Pending`."""
    cuda: list[str] = []
    other: list[str] = []
    steps = 0
    regenerates = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("ninja:"):
            continue
        steps += 1
        if line.startswith(_REGENERATE):
            regenerates = True
        match = _STEP_RE.match(line)
        if match:
            (cuda if match.group(1) == "CUDA" else other).append(match.group(2))
    return Pending(cuda, other, steps, regenerates)


def pending_compiles(build_dir: Path, targets: list[str], *, ninja: str,
                     timeout: float = 120) -> Pending | None:
    """What ``ninja <targets>`` would run in ``build_dir`` now; None when ninja cannot say
    (not configured, an unknown target: the real build then reports the problem)."""
    if not (build_dir / "build.ninja").is_file():
        return None
    started = time.monotonic()
    try:  # a query with the module default: no runner is at hand here (process/runner.py)
        done = query([ninja, "-C", str(build_dir), "-n", *targets], env={"NINJA_STATUS": ""},
                     timeout=timeout)
    except CannotRun:
        return None
    if done.returncode != 0:
        return None
    found = parse_dry_run(done.stdout)
    return Pending(found.cuda, found.other, found.steps, found.regenerates,
                   time.monotonic() - started)
