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

**The machine's load.** A step's time in the history is what it took under the load of that
build; on a shared machine that load changes by the hour (on the 2-core VM, 40 of ``_C``'s
objects timed at load 4 to 6 were estimated at 428 s and took 124 s on the idle machine). So
each history time that knows its load (history.py records it per build) is scaled by the
contention now over the contention then, where ::

    contention = max(1, load / online CPUs + own compiles / usable CPUs)

``load`` is the 1-minute load average when the build starts (other people's work: its own
compiles have not started), ``own compiles`` the compiles it runs at once (its job count, or
fewer objects). Why this model: the kernel shares the CPUs fairly among runnable tasks, so a
compile, which is CPU-bound, gets ``1 / contention`` of a CPU once the runnable tasks outnumber
the CPUs, and all of one while they do not. It needs nothing but ``os.getloadavg()`` and the CPU
count, one reading per build, and says in one line what it did ("load 4.1 now, 0.3 when timed:
x1.8"). What it leaves out, on purpose: the load average lags (a one-minute mean: a load that
started or stopped a minute or two before still counts in part, so the correction then falls
short), a load that changes during the build is not foreseen, tasks that wait on the disk count
as load, and a kernel that shares the CPUs by session first (``sched_autogroup_enabled``, on this
VM) gives a build less when the others' tasks sit in many sessions; the range's spread covers
part of that. Measured on the real tree (docs/benchmarks.md): steady loads come out inside the
range, loads that changed within two minutes of the reading are corrected in the right direction
but short of the actual. A time whose load is not known (an older vllm-dev's, a ``.ninja_log``
entry, a farm's build) is not corrected; nor is anything under a build farm (its compiles run
elsewhere), nor a cache hit's time (milliseconds). The CPU device's model times were measured at
a known load, others' load about 2.5 on 2 CPUs at 2 jobs (:data:`MODEL_LOAD`: the 105 minutes
they add up to for the whole tree over 2.25 gives the 47 minutes the tree took on 2 idle cores),
so they are corrected the same way; the CUDA ones (another machine, load not recorded) are not.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.errors import CannotRun, VllmDevError
from vllm_dev.process.runner import query
from vllm_dev.reporting.history import History, Load, critical_path

HIT_SECONDS = 0.1
DEFAULT_OVERHEAD = 0.3
LARGE_BUILD_SECONDS = 60.0  # past builds longer than this teach the overhead as a fraction
MODEL_SECONDS = {"cpu-dep": 14.7, "cpu-own": 82.5, "cu": 60.6, "cuda-cpp": 16.0, "other": 2.0}
EXTRA_ARCH_FACTOR = 0.6
# The load the model's times were measured under, per kind (see the module docstring): the CPU
# kinds, on the 2-core VM at 2 jobs while other builds ran (load average 4 to 6 with the build's
# own 2 compiles).
MODEL_LOAD = {"cpu-dep": Load(2.5, 2, 2, 2), "cpu-own": Load(2.5, 2, 2, 2)}
# The range around the point estimate: (low, high) factors for steps timed from the history and
# for steps timed by the model.
HISTORY_SPREAD = (0.8, 1.3)
# The CPU model's times were measured on a loaded machine: the whole CPU tree comes to about
# 105 min at 2 jobs by it, against about 47 min on 2 idle cores (testbeds README): the low end
# reaches that where the load is not corrected (MODEL_LOAD: with it, the point does); the
# objects of one kind also vary (oneDNN's: mean 14.7 s, median 9.6 s).
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


def model_kind(step: Step, *, device: str) -> str:
    """The per-kind model's kind of one step (a key of :data:`MODEL_SECONDS`)."""
    if not step.is_object:
        return "other"
    source = step.output.rsplit(".", 1)[0]  # foo.cu.o -> foo.cu
    if source.endswith(".cu"):
        return "cu"
    if device == "cpu":
        return "cpu-dep" if step.output.startswith("_deps/") else "cpu-own"
    return "cuda-cpp"


def model_seconds(step: Step, *, device: str, arch_count: int) -> float:
    """The per-kind model's time of one step (see the module docstring)."""
    kind = model_kind(step, device=device)
    if kind == "cu":
        return MODEL_SECONDS["cu"] * (1 + EXTRA_ARCH_FACTOR * max(0, arch_count - 1))
    return MODEL_SECONDS[kind]


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
    # the load correction (see the module docstring): the load now and, weighted by the
    # corrected steps' times, when they were timed (None: nothing corrected), the factor it
    # applied to those steps, and whether they were all the model's
    load_now: float | None = None
    load_then: float | None = None
    factor: float = 1.0
    model_only: bool = False

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
        if self.load_then is not None and self.load_now is not None and \
                f"{self.factor:.1f}" != "1.0":
            when = "when the model was measured" if self.model_only else "when timed"
            parts.append(f"load {self.load_now:.1f} now, {self.load_then:.1f} {when}: "
                         f"x{self.factor:.1f}")
        return "; ".join(parts)


def estimate(steps: list[Step], history: History, *, device: str, arch_count: int, jobs: int,
             cpus: int, farm: bool, cache: str, now: Load | None = None) -> Estimate:
    """The compile phase's wall time for ``steps`` here (see the module docstring). ``now``:
    the machine's load now (history.machine_load; None: no load correction)."""
    slots = max(1, jobs if farm else min(jobs, cpus))
    timed = hits = 0
    from_history = from_model = 0.0
    timings: list[tuple[bool, float]] = []
    # the load correction: contention now (this build's compiles at once: its slots, or fewer
    # objects) over contention then, per step whose load then is known
    objects = sum(s.is_object for s in steps)
    contention = None if now is None or farm else now.contention(min(slots, max(1, objects)))
    before = after = weighted_load = 0.0
    model_only = True
    for step in steps:
        known = history.steps.get(step.output)
        then: Load | None = None
        modelled = False
        if step.is_object and cache and history.expected_hit(step.output, cache):
            hits += 1
            timed += 1
            seconds = known.hit if known and known.hit is not None else HIT_SECONDS
        elif known is not None and known.miss is not None:
            seconds = known.miss
            timed += step.is_object
            then = history.loads.get(step.output)
        else:
            seconds = model_seconds(step, device=device, arch_count=arch_count)
            then = MODEL_LOAD.get(model_kind(step, device=device))
            modelled = True
        if contention is not None and then is not None:
            scaled = seconds * contention / then.contention()
            before += seconds
            after += scaled
            weighted_load += seconds * then.load
            model_only = model_only and modelled
            seconds = scaled
        if modelled:
            from_model += seconds
        else:
            from_history += seconds
        timings.append((step.is_object, seconds))
    fixed, share = _overhead(history, cpus=cpus, farm=farm)
    work = from_history + from_model
    point = max(work / slots, critical_path(timings)) * (1 + share) + fixed if steps else 0.0
    share = from_history / work if work else 1.0
    margin = ABSOLUTE_SPREAD if steps else 0.0
    low = max(0.0, point * (HISTORY_SPREAD[0] * share + MODEL_SPREAD[0] * (1 - share)) - margin)
    high = point * (HISTORY_SPREAD[1] * share + MODEL_SPREAD[1] * (1 - share)) + margin
    corrected = before > 0 and now is not None
    return Estimate(steps=len(steps), objects=objects, hits=hits, timed=timed, slots=slots,
                    seconds=point, low=low, high=high,
                    load_now=now.load if corrected and now else None,
                    load_then=weighted_load / before if corrected else None,
                    factor=after / before if corrected else 1.0, model_only=model_only)


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
