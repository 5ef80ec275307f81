"""What a build will cost before it starts: the steps ninja would run, and their time here.

The steps are ninja's own answer: ``ninja -n <targets>`` (a dry run: it reads the graph and the
files' times, runs nothing, and prints one status line per step it would run). CMake's Ninja
generator describes a compile as ``Building <LANG> object <output>``, so the objects and their
outputs are read from those lines; any other step (a link, an archive, a generated file) is
named by the last word of its description, which CMake makes its output.

Each step's time, in this order:

1. an expected compiler-cache hit (history.py: it went through the same cache before and every
   file it read is as it was): its last hit's time, else :data:`HIT_SECONDS`;
2. its last real compile in this checkout's history (history.py), kept outside the build dir;
3. else the per-kind model below, calibrated on the real vLLM tree.

The wall time is the steps' summed time over the compile slots (the job count, no more than the
usable CPUs unless a build farm compiles: then the farm's job count), never less than the
critical path (the longest compile, then the longest link: a link waits for its objects), plus
the overhead this machine showed in past builds (``cmake --build`` and ninja starting, the tail
of a build where fewer steps than slots are left). The range is narrow where
the history timed the steps and wide where the model did, and half a second wider either way (a
step of a second moves that much with the load of a shared machine):

=================================  =======  ==================================================
kind                               seconds  where from (one compile job, no cache)
=================================  =======  ==================================================
CPU device, a dependency's C++     14.7     real vLLM 0.33.0 CPU tree, 2-core EPYC VM, 2 jobs,
object (``_deps/``: oneDNN)                 a cold ``_C`` build (2026-12-03, load average 4 to 6:
                                            other builds shared the cores): mean of oneDNN's 427
                                            objects (median 9.6 s)
CPU device, vLLM's own C++ object  82.5     the same build, vLLM's ``csrc/cpu`` objects (mean of
                                            14; median 61 s, slowest 232 s)
CUDA ``.cu`` object, one arch      60.6     H200, real vLLM 0.33.0, arch 9.0: 7,029
                                            compiler-seconds for 116 objects (testbeds README)
each further CUDA arch             +60 %    vllm-build-facts.md: a job's time grows 1.6 to 2x
                                            with several arches; 0.6 per arch added
CUDA build, C++ object             16.0     assumed, not measured (host code and bindings)
link, archive or other step        2.0      assumed (the links of the one-file targets above take
                                            0.6 to 1.2 s; ``_C``'s more)
=================================  =======  ==================================================
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.errors import CannotRun, VllmDevError
from vllm_dev.process.runner import query
from vllm_dev.reporting.history import History, critical_path

HIT_SECONDS = 0.1
DEFAULT_OVERHEAD = 0.3
LARGE_BUILD_SECONDS = 60.0  # past builds longer than this teach the overhead as a fraction
MODEL_SECONDS = {"cpu-dep": 14.7, "cpu-own": 82.5, "cu": 60.6, "cuda-cpp": 16.0, "other": 2.0}
EXTRA_ARCH_FACTOR = 0.6
# The range around the point estimate: (low, high) factors for steps timed from the history and
# for steps timed by the model.
HISTORY_SPREAD = (0.8, 1.3)
# The CPU model's times were measured on a loaded machine: the whole CPU tree comes to about
# 105 min at 2 jobs by it, against about 47 min on 2 idle cores (testbeds README): the low end
# reaches that.
MODEL_SPREAD = (0.4, 1.6)
# ... and half a second either way: a compile phase of a few seconds (one object and its link)
# moves that much with the machine's load (fs_io_C's link: 0.57 to 1.2 s on the 2-core VM).
ABSOLUTE_SPREAD = 0.5
_STATUS = re.compile(r"^\[\d+/\d+\] (.+)$")


@dataclass(frozen=True)
class Step:
    """One step ninja would run: its output (relative to the build dir) and whether it is a
    compile."""

    output: str
    is_object: bool


def planned_steps(ninja: str, build_dir: Path, targets: Iterable[str]) -> list[Step]:
    """The steps ``ninja -n`` says building ``targets`` would run (nothing is run)."""
    argv = [ninja, "-C", str(build_dir), "-n", *targets]
    try:  # a query with the module default: no runner is at hand here (process/runner.py)
        done = query(argv, env={"NINJA_STATUS": "[%f/%t] "}, timeout=120)
    except CannotRun as exc:
        raise VllmDevError(f"cannot run {ninja} -n: {exc.detail}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines()
                or ["?"])[-1]
        raise VllmDevError(f"`ninja -n` failed in {build_dir}: {last}")
    steps = []
    for line in done.stdout.splitlines():
        found = _STATUS.match(line.strip())
        if not found:
            continue
        description = found.group(1).strip()
        if description.startswith("Building ") and " object " in description:
            steps.append(Step(description.split(" object ", 1)[1].strip(), True))
        else:
            steps.append(Step(description.rsplit(" ", 1)[-1], False))
    return steps


def model_seconds(step: Step, *, device: str, arch_count: int) -> float:
    """The per-kind model's time of one step (see the module docstring)."""
    if not step.is_object:
        return MODEL_SECONDS["other"]
    source = step.output.rsplit(".", 1)[0]  # foo.cu.o -> foo.cu
    if source.endswith(".cu"):
        return MODEL_SECONDS["cu"] * (1 + EXTRA_ARCH_FACTOR * max(0, arch_count - 1))
    if device == "cpu":
        return MODEL_SECONDS["cpu-dep" if step.output.startswith("_deps/") else "cpu-own"]
    return MODEL_SECONDS["cuda-cpp"]


@dataclass(frozen=True)
class Estimate:
    """The wall time of a build's compile phase, as a point and a range, and what it rests on."""

    steps: int
    objects: int
    hits: int  # objects expected to be compiler-cache hits
    timed: int  # objects whose time came from the history (the rest: the model)
    slots: int  # compiles at once
    seconds: float
    low: float
    high: float

    def range_text(self) -> str:
        """``about 41 to 63 min`` / ``about 20 to 40 s``."""
        if self.high >= 120:
            low, high = self.low / 60, self.high / 60
            unit = "min"
        else:
            low, high, unit = self.low, self.high, "s"
        lo, hi = (f"{low:.0f}", f"{high:.0f}") if high >= 10 else (f"{low:.1f}", f"{high:.1f}")
        return f"about {lo} s" if (lo == hi and unit == "s") else f"about {lo} to {hi} {unit}"

    def basis(self) -> str:
        """Where the figures come from, in a few words."""
        if not self.objects:
            return "no compile"
        parts = [f"{self.timed} of {self.objects} objects timed by this checkout's history"
                 if self.timed else "no history of these objects here: the per-kind model"]
        parts.append(f"{self.hits} compiler-cache hit(s) expected")
        return "; ".join(parts)


def estimate(steps: list[Step], history: History, *, device: str, arch_count: int, jobs: int,
             cpus: int, farm: bool, cache: str) -> Estimate:
    """The compile phase's wall time for ``steps`` here (see the module docstring)."""
    slots = max(1, jobs if farm else min(jobs, cpus))
    timed = hits = 0
    from_history = from_model = 0.0
    timings: list[tuple[bool, float]] = []
    for step in steps:
        known = history.steps.get(step.output)
        if step.is_object and cache and history.expected_hit(step.output, cache):
            hits += 1
            timed += 1
            seconds = known.hit if known and known.hit is not None else HIT_SECONDS
            from_history += seconds
        elif known is not None and known.miss is not None:
            seconds = known.miss
            timed += step.is_object
            from_history += seconds
        else:
            seconds = model_seconds(step, device=device, arch_count=arch_count)
            from_model += seconds
        timings.append((step.is_object, seconds))
    fixed, share = _overhead(history, cpus=cpus, farm=farm)
    work = from_history + from_model
    point = max(work / slots, critical_path(timings)) * (1 + share) + fixed if steps else 0.0
    share = from_history / work if work else 1.0
    margin = ABSOLUTE_SPREAD if steps else 0.0
    low = max(0.0, point * (HISTORY_SPREAD[0] * share + MODEL_SPREAD[0] * (1 - share)) - margin)
    high = point * (HISTORY_SPREAD[1] * share + MODEL_SPREAD[1] * (1 - share)) + margin
    return Estimate(steps=len(steps), objects=sum(s.is_object for s in steps), hits=hits,
                    timed=timed, slots=slots, seconds=point, low=low, high=high)


def _overhead(history: History, *, cpus: int, farm: bool) -> tuple[float, float]:
    """What past compile phases took beyond their steps' time over their slots (or their
    critical path): (seconds, fraction). A build of seconds shows the fixed part (``cmake
    --build`` and ninja starting, the install target's check); a build of minutes the part that
    grows with it (the tail where fewer steps than slots are left): a 30-second excess of a
    25-minute build is no reason to add 30 seconds to a build of one object."""
    fixed: list[float] = []
    share: list[float] = []
    for b in history.builds[-10:]:
        if not b.steps:
            continue
        base = max(b.work / max(1, b.jobs if farm else min(b.jobs, cpus)), b.critical)
        if b.wall < LARGE_BUILD_SECONDS:
            fixed.append(b.wall - base)
        elif base > 0:
            share.append((b.wall - base) / base)
    return (min(30.0, max(0.0, statistics.median(fixed))) if fixed else DEFAULT_OVERHEAD,
            min(0.5, max(0.0, statistics.median(share))) if share else 0.0)
