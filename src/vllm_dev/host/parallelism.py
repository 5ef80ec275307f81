"""How many compile jobs and nvcc threads a build gets: fast, and never killed for memory.

The model
---------
A build runs ``jobs`` compiler processes at once (``cmake --build --parallel`` at build time, and
the build preset's ``jobs``: never a cache variable, so a new count never reconfigures); each
nvcc process may split its work over ``nvcc_threads`` threads
(``--threads``, one arch per thread). Two limits apply:

* CPUs: ``jobs * nvcc_threads <= usable CPUs`` (affinity mask and cgroup quota, see
  :mod:`vllm_dev.host.machine`). More only time-slices the same cores.
* Memory: the compilers' peak must fit in the memory available now (cgroup limit and
  ``MemAvailable``). Per job we assume ``avg * threads`` GiB, plus room for one outlier
  process that takes ``worst * threads``: ``jobs * avg * t + (worst - avg) * t <= available``.

Numbers (GiB per compile job and per nvcc thread), with their sources:

======  =====  =====  =======================================================================
device  avg    worst  where from
======  =====  =====  =======================================================================
cuda    4.5    12     measured on a 16-core/128 GiB H100 host, vLLM 0.33.0, arch 9.0: 16
                      parallel compiles of ``_C_stable_libtorch`` (CUTLASS, Machete) peaked at
                      73 GiB in total (4.5 GiB per job) and 12 GiB in one process; the same 16
                      jobs on ``_moe_C_stable_libtorch`` peaked at 7.7 GiB, so the estimate is
                      sized by the heavy kernels (../shared/vllm-build-facts.md, "Measured").
                      Per extra nvcc thread the estimate grows by the same amount: each thread
                      compiles one more arch at once, and vLLM's issue tracker reports 3 to 5 GB
                      per nvcc thread for heavy CUTLASS kernels.
rocm    4.5    12     no measurement of hipcc yet; assumed as heavy as nvcc.
cpu     1.0    2.0    C++ objects of the CPU backend (no nvcc): about 1 GiB or less per job;
                      the issue tracker's "1 to 2 GB per compile job" bounds the outlier.
======  =====  =====  =======================================================================

Threads: with one arch ``--threads`` has nothing to split. Measured on the same H100 host,
``_moe_C_stable_libtorch`` (24 objects, arch 9.0) built in 218 s with 16 jobs x 1 thread and
about 822 s with 4 jobs x 4 threads (vLLM's own preset generator's choice for 16 cores). So one
arch gets one thread and as many jobs as CPUs and memory allow. With several arches a job's
wall time grows 1.6 to 2 times (facts file) and threads shorten the slowest objects, which bound a
build's tail; we spend them only where CPUs are plentiful: ``threads = clamp(cpus // 8, 1,
min(4, arches))``, keeping at least 8 jobs' worth of CPUs for the many objects of a build.

Overrides (flag > env > config): ``--jobs``/``VLLM_DEV_JOBS`` (compile jobs), ``MAX_JOBS`` (vLLM's
meaning: the total, divided by ``NVCC_THREADS`` as setup.py does), ``--nvcc-threads``/
``NVCC_THREADS``, ``--job-memory-gib``/``VLLM_DEV_JOB_MEMORY_GIB`` (replaces the per-job estimate,
whatever the threads). An explicit ``--jobs`` over :data:`JOBS_PER_CPU` per CPU is lowered to
that, in the one parallelism line with the reason; one over the memory's room is kept, with a
warning in the same line. Under ``--dist`` neither applies: the farm's CPUs size the jobs.

Splitting one unit (``-split-compile``)
---------------------------------------
The model above sizes a build of many objects. The edit loop compiles one or two: 15 of 16 cores
sit idle while one nvcc runs. nvcc can spread one unit's optimizer (cicc) and assembler (ptxas)
over threads (``-split-compile=N``; NVIDIA documents "minimal (if any) impact on performance of the
compiled binary"), so :func:`split_threads` hands the idle part of the *thread budget* to the CUDA
units about to compile: ``units * nvcc_threads * N`` stays within the budget, which is the usable
CPUs when vllm-dev sized the jobs, or what ``--jobs``/``MAX_JOBS`` allow when the user did (their
cap is a cap on threads too). The other compiles of the same build (C++ units) keep one CPU each.
No split when more CUDA units wait than jobs run at once: every core is busy already.

With one arch and ``nvcc_threads`` 1 the command carries ``--threads=1``, and nvcc runs its host
front end (preprocessing, ``cudafe++``: about 3 s of ``topk_softmax_kernels.cu``) after the device
chain instead of beside it. A split unit also gets ``-t 2`` (the last ``--threads`` on the command
line wins): the front end then runs beside the device chain's unsplit start (cicc kept 6.3 s
of its 12 s under the split; we take that for its front end, which runs before the split's
threads start: inferred, not traced), so it is not counted in the thread budget (its memory is:
one :data:`SPLIT_THREAD_GIB`). Measured on an H200 (real vLLM
0.33.0, arch 9.0, ``topk_softmax_kernels.cu`` alone, interleaved, bench/nvcc_phases.py,
2026-12-03): ``-split-compile=16`` 21.29/21.02/20.45 s, with ``-t 2`` 20.42/20.14/19.94 s; the
object's size and SASS are the same with or without ``-t 2`` at one split count. nvcc warns of the
redefined ``--threads`` on every such compile; the build drops that one line from its output
(steps/build.py), since vllm-dev caused it and it says nothing about the user's code.

Memory: nvcc's split threads share one process tree, and what they add depends on the unit.
Measured on H200 hosts (real vLLM 0.33.0, arch 9.0, memory summed over every process of the
build, sampled every 0.1 s; bench/gpu_split.sh, 2026-12-03): ``csrc/moe/topk_softmax_kernels.cu``
alone, 906 MiB without the split and 902 MiB with 16 split threads (issue 21 saw 0.84 GiB either
way); the cold build of ``_moe_C_stable_libtorch`` (23 CUDA units, 16 jobs) peaked at 7.9 GiB
with every unit on one thread and 12.0 GiB with its 8 longest (the Marlin kernels) on two (largest
process 1.06 -> 2.2 GiB): about 0.5 GiB per extra split thread of a heavy unit. The model charges
``SPLIT_THREAD_GIB`` = 0.6 GiB per extra split thread (per nvcc thread), on top of the per-job
estimate, and gives a unit only the threads whose memory fits beside the outlier reserve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vllm_dev.config.settings import Settings
from vllm_dev.host.machine import Machine, probe_machine


@dataclass(frozen=True)
class JobMemory:
    """Per-job compiler memory at one nvcc thread: the average at the peak and the worst case."""

    avg_gib: float
    worst_gib: float


JOB_MEMORY: dict[str, JobMemory] = {
    "cuda": JobMemory(avg_gib=4.5, worst_gib=12.0),
    "rocm": JobMemory(avg_gib=4.5, worst_gib=12.0),
    "cpu": JobMemory(avg_gib=1.0, worst_gib=2.0),
}
# Arches vLLM builds when TORCH_CUDA_ARCH_LIST is not narrowed (for the thread choice only).
DEFAULT_ARCH_COUNT = 7
MAX_THREADS = 4
# An explicit --jobs above this many per CPU is lowered (with a warning), except under --dist.
JOBS_PER_CPU = 2
CPUS_PER_THREAD_STEP = 8
#: GiB charged per extra ``-split-compile`` thread (see "Splitting one unit" above).
SPLIT_THREAD_GIB = 0.6
#: The nvcc option that the split uses (one value for a whole ninja run, see steps/build.py).
SPLIT_OPTION = "-split-compile"
#: ``-t`` given beside the split for nvcc's host front end (see "Splitting one unit" above).
HOST_THREADS = 2


@dataclass(frozen=True)
class Parallelism:
    jobs: int
    nvcc_threads: int
    why: str
    #: Threads the build may run at once (see "Splitting one unit"): the usable CPUs when
    #: vllm-dev chose the jobs, ``jobs * nvcc_threads`` (or ``MAX_JOBS``) when the user did;
    #: 0 when unknown (a farm build: no split).
    thread_budget: int = 0
    #: Memory available to the build (GiB; None: unknown) and the model's per-job estimate and
    #: outlier reserve at ``nvcc_threads``, for the split's memory check.
    available_gib: float | None = None
    per_job_gib: float = 0.0
    outlier_gib: float = 0.0
    #: The arches each CUDA unit compiles for (the split's host thread needs exactly one).
    arch_count: int = 1

    def line(self) -> str:
        return f"jobs={self.jobs} nvcc_threads={self.nvcc_threads}: {self.why}"


@dataclass(frozen=True)
class Split:
    """How many ``-split-compile`` threads each CUDA unit of one build gets (1: no split)."""

    threads: int  # per unit; with ``per_object``, the most any unit gets
    cuda_units: int
    why: str
    per_object: bool = False  # chosen per object by the launcher's plan (host/split_launcher)
    #: ``-t`` appended beside the split for nvcc's host front end (0: the command's own).
    host_threads: int = 0

    @property
    def flag(self) -> str | None:
        """The nvcc options, or None when the units are not split."""
        if self.threads <= 1:
            return None
        return f"{SPLIT_OPTION}={self.threads}" + (f" -t {self.host_threads}"
                                                   if self.host_threads else "")

    def line(self) -> str:
        if self.flag is None:
            return f"split: none ({self.why})"
        if self.per_object:
            return f"split: up to {self.flag} ({self.why})"
        return f"split: {self.flag} for {self.cuda_units} CUDA unit(s) ({self.why})"


def split_threads(par: Parallelism, *, cuda_units: int, other_units: int = 0,
                  host_thread: bool = True) -> Split:
    """The split for a build that will compile ``cuda_units`` CUDA and ``other_units`` other
    units (see the module docstring): the idle part of the thread budget, within memory;
    ``host_thread=False`` when the user's own nvcc flags choose ``--threads``."""
    if cuda_units <= 0:
        return Split(1, 0, "no CUDA unit to compile")
    if par.thread_budget <= 0:
        return Split(1, cuda_units, "no thread budget (build farm)")
    if cuda_units > par.jobs:
        return Split(1, cuda_units, f"{cuda_units} CUDA units for {par.jobs} jobs: every job "
                                    "slot is busy")
    others = min(other_units, par.jobs - cuda_units)
    free = par.thread_budget - others
    per_unit = free // cuda_units // max(1, par.nvcc_threads)
    budget = (f"{par.thread_budget} threads for {cuda_units} CUDA unit(s)"
              + (f" and {others} other compile(s)" if others else "")
              + (f" at nvcc_threads={par.nvcc_threads}" if par.nvcc_threads > 1 else ""))
    if per_unit < 2:
        return Split(1, cuda_units, f"{budget}: no thread to spare")
    threads = per_unit
    host = host_thread and par.nvcc_threads == 1 and par.arch_count == 1
    note = ""
    if par.available_gib is not None and par.per_job_gib > 0:
        # cuda_units * (per_job + (n - 1 + host) * split) + outlier <= available, per nvcc thread
        room = (par.available_gib - par.outlier_gib) / cuda_units - par.per_job_gib
        fit = 1 + int(room // (SPLIT_THREAD_GIB * max(1, par.nvcc_threads))) if room >= 0 else 1
        fit -= host  # the host front end's memory, as one more split thread
        if fit < threads:
            threads = max(1, fit)
            note = f"; limited by memory ({_gib(par.available_gib)} GiB available)"
            if threads < 2:
                return Split(1, cuda_units, f"{budget}: no memory to spare"
                                            f" ({_gib(par.available_gib)} GiB available)")
    return Split(threads, cuda_units, budget + note, host_threads=HOST_THREADS if host else 0)


def auto_threads(*, cpus: int, arch_count: int, device: str) -> int:
    """nvcc threads when nobody chose: 1 for one arch (or no nvcc), more only on big machines."""
    if device != "cuda" or arch_count <= 1:
        return 1
    return max(1, min(cpus // CPUS_PER_THREAD_STEP, MAX_THREADS, arch_count))


def memory_jobs(available_gib: float, *, per_job_gib: float, outlier_gib: float) -> int:
    """Jobs whose estimated peak, plus one outlier's extra, fits in ``available_gib`` (>= 0)."""
    if per_job_gib <= 0:
        return 1 << 30
    return max(0, int((available_gib - outlier_gib) // per_job_gib))


def _ceilings(cpus: int, threads: int, available: float | None, per_job: float,
              outlier: float) -> tuple[int, int | None]:
    """The most jobs here by CPUs and by memory (None: memory unknown). An explicit count over
    :data:`JOBS_PER_CPU` per CPU is lowered (more only time-slices the same cores); one over the
    memory's room is kept with a warning (the per-job figure is an estimate: the user may know
    their kernels are lighter)."""
    by_cpu = max(1, cpus * JOBS_PER_CPU // threads)
    if available is None:
        return by_cpu, None
    return by_cpu, max(1, memory_jobs(available, per_job_gib=per_job, outlier_gib=outlier))


def _gib(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def choose(
    settings: Settings, *, device: str, arch_count: int = 1, machine: Machine | None = None
) -> Parallelism:
    """Jobs and nvcc threads for this machine; explicit settings always win.

    ``machine`` defaults to a probe of this machine (tests pass fake ones).
    """
    machine = machine or probe_machine()
    cpus = machine.cpus.count
    available = machine.memory.gib
    model = JOB_MEMORY.get(device, JOB_MEMORY["cuda"])
    notes: list[str] = []

    if settings.nvcc_threads:
        threads = settings.nvcc_threads
        notes.append(f"threads set by {settings.origin('nvcc_threads')}")
    else:
        threads = auto_threads(cpus=cpus, arch_count=arch_count, device=device)
        if device == "cuda":
            notes.append("1 arch: nvcc threads would not help" if arch_count <= 1
                         else f"{arch_count} arches")

    if settings.job_memory_gib:
        per_job, outlier = settings.job_memory_gib, 0.0
        estimate = f"~{_gib(per_job)} GiB per job (set by {settings.origin('job_memory_gib')})"
    else:
        per_job = model.avg_gib * threads
        outlier = (model.worst_gib - model.avg_gib) * threads
        estimate = f"~{_gib(per_job)} GiB per job"
    memory_text = ("memory unknown" if available is None
                   else f"{_gib(available)} GiB available at {estimate}")
    facts = f"{cpus} CPUs ({machine.cpus.source}), {memory_text}"

    def sized(jobs: int, why: str, budget: int) -> Parallelism:
        return Parallelism(jobs, threads, why, thread_budget=budget, available_gib=available,
                           per_job_gib=per_job, outlier_gib=outlier, arch_count=arch_count)

    if settings.jobs:
        by_cpu, by_memory = _ceilings(cpus, threads, available, per_job, outlier)
        farm = getattr(settings, "dist", None)  # a farm's jobs are the farm's to size
        room = "" if by_memory is None else f", {memory_text} (room for {by_memory})"
        if by_cpu < settings.jobs and not farm:
            return sized(by_cpu, f"{settings.origin('jobs')} {settings.jobs} "
                         f"lowered to {by_cpu}: {cpus} CPUs allow {by_cpu} "
                         f"({JOBS_PER_CPU} per CPU){room}" + "".join(f"; {n}" for n in notes),
                         min(cpus, by_cpu * threads))
        if by_memory is not None and by_memory < settings.jobs and not farm:
            notes.append(f"more jobs than the memory has room for ({by_memory}): expect "
                         "swapping or a killed compiler, or lower --jobs")
        return sized(settings.jobs, f"jobs set by {settings.origin('jobs')}; {facts}"
                     + "".join(f"; {n}" for n in notes), min(cpus, settings.jobs * threads))
    if settings.max_jobs:
        jobs = max(1, settings.max_jobs // threads)
        return sized(jobs, f"{settings.origin('max_jobs')}={settings.max_jobs} divided by "
                     f"nvcc_threads={threads}; {facts}" + "".join(f"; {n}" for n in notes),
                     min(cpus, settings.max_jobs))

    by_cpu = max(1, cpus // threads)
    jobs = by_cpu
    if available is not None:
        by_memory = memory_jobs(available, per_job_gib=per_job, outlier_gib=outlier)
        if by_memory < 1:
            notes.append("less memory than one job needs: expect swapping or a killed compiler; "
                         "free memory or lower --job-memory-gib")
            jobs = 1
        elif by_memory < by_cpu:
            notes.append("limited by memory")
            jobs = by_memory
    return sized(jobs, facts + "".join(f"; {n}" for n in notes), cpus)


def plan_unit_threads(weights: dict[str, float | None], par: Parallelism) -> dict[str, int]:
    """``-split-compile`` threads per CUDA object for a build with a per-object launcher
    (host/split_launcher.py), from each object's past compile time (``weights``; None: never
    built here).

    A build's wall time is at least its work spread over the thread budget, ``T = sum(w) / B``,
    and at least its longest object. An object longer than ``T`` would hold the build up after
    the others are done: it gets ``ceil(w / T)`` threads, so that its split part ends near
    ``T``; the others keep one (as many as fit when every object runs at once, as in the edit
    loop). Unknown times count as the median of the known ones (all 1 when none is known).
    Threads per object never exceed the budget over nvcc's own ``--threads``, nor what memory
    allows: one unit's (:func:`split_threads`' rule), and, with every job slot busy, the extra
    threads (``SPLIT_THREAD_GIB`` each) beside all jobs and the outlier, longest objects first."""
    if not weights or par.thread_budget <= 0:
        return {}
    known = sorted(w for w in weights.values() if w)
    median = known[len(known) // 2] if known else 1.0
    filled = {obj: (w if w else median) for obj, w in weights.items()}
    most = max(1, par.thread_budget // max(1, par.nvcc_threads))
    cap = min(most, split_threads(par, cuda_units=1, host_thread=False).threads)  # memory, one unit
    if len(filled) <= par.jobs:  # every object runs at once: the part-1 rule, by weight
        if split_threads(par, cuda_units=len(filled), host_thread=False).threads <= 1:
            return dict.fromkeys(filled, 1)
        total = sum(filled.values())
        spare = max(0, most - len(filled))  # threads beyond one per object, by weight
        return {obj: max(1, min(cap, 1 + int(spare * w / total))) for obj, w in filled.items()}
    ideal = sum(filled.values()) / par.thread_budget
    wanted = {obj: max(1, min(cap, math.ceil(w / ideal) if w > ideal else 1))
              for obj, w in filled.items()}
    if par.available_gib is None or par.per_job_gib <= 0:
        return wanted
    # Every job slot is busy: the extra threads must fit beside all of them and the outlier,
    # and go to the longest objects first.
    room = par.available_gib - par.outlier_gib - par.jobs * par.per_job_gib
    extra = max(0, int(room // (SPLIT_THREAD_GIB * max(1, par.nvcc_threads))))
    granted = dict.fromkeys(wanted, 1)
    for obj in sorted(wanted, key=lambda o: -filled[o]):
        give = min(wanted[obj] - 1, extra)
        granted[obj] += give
        extra -= give
    return granted
