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
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Parallelism:
    jobs: int
    nvcc_threads: int
    why: str

    def line(self) -> str:
        return f"jobs={self.jobs} nvcc_threads={self.nvcc_threads}: {self.why}"


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

    if settings.jobs:
        by_cpu, by_memory = _ceilings(cpus, threads, available, per_job, outlier)
        farm = getattr(settings, "dist", None)  # a farm's jobs are the farm's to size
        room = "" if by_memory is None else f", {memory_text} (room for {by_memory})"
        if by_cpu < settings.jobs and not farm:
            return Parallelism(by_cpu, threads, f"{settings.origin('jobs')} {settings.jobs} "
                               f"lowered to {by_cpu}: {cpus} CPUs allow {by_cpu} "
                               f"({JOBS_PER_CPU} per CPU){room}"
                               + "".join(f"; {n}" for n in notes))
        if by_memory is not None and by_memory < settings.jobs and not farm:
            notes.append(f"more jobs than the memory has room for ({by_memory}): expect "
                         "swapping or a killed compiler, or lower --jobs")
        return Parallelism(settings.jobs, threads,
                           f"jobs set by {settings.origin('jobs')}; {facts}"
                           + "".join(f"; {n}" for n in notes))
    if settings.max_jobs:
        jobs = max(1, settings.max_jobs // threads)
        return Parallelism(jobs, threads,
                           f"{settings.origin('max_jobs')}={settings.max_jobs} divided by "
                           f"nvcc_threads={threads}; {facts}" + "".join(f"; {n}" for n in notes))

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
    return Parallelism(jobs, threads, facts + "".join(f"; {n}" for n in notes))
