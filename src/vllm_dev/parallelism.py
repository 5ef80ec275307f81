"""How many compile jobs and nvcc threads a build gets.

Placeholder model: one job per usable CPU and one nvcc thread (with a single arch, nvcc threads buy
nothing; see the facts file). Explicit settings always win.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from vllm_dev.settings import Settings


@dataclass(frozen=True)
class Parallelism:
    jobs: int
    nvcc_threads: int
    why: str

    def line(self) -> str:
        return f"jobs={self.jobs} nvcc_threads={self.nvcc_threads}: {self.why}"


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose(settings: Settings, *, device: str, arch_count: int = 1) -> Parallelism:
    cpus = usable_cpus()
    threads = settings.nvcc_threads or 1
    if settings.jobs:
        return Parallelism(settings.jobs, threads, f"set by {settings.origin('jobs')}")
    if settings.max_jobs:
        jobs = max(1, settings.max_jobs // threads)
        return Parallelism(jobs, threads, f"{settings.origin('max_jobs')}={settings.max_jobs} "
                                          f"divided by nvcc_threads={threads}")
    return Parallelism(cpus, threads, f"{cpus} usable CPUs")
