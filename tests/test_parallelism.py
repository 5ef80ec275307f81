"""The jobs/threads model over machine shapes from 1 CPU / 2 GiB to 128 CPUs / 2 TiB."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.host.machine import GIB, Cpus, Machine, Memory, probe_machine
from vllm_dev.host.parallelism import JOB_MEMORY, Parallelism, choose

pytestmark = pytest.mark.unit


def shape(cpus: int, gib: float) -> Machine:
    return Machine(Cpus(cpus, "test"), Memory(int(gib * GIB), "test"))


def pick(cpus: int, gib: float, *, device: str = "cuda", arches: int = 1,
         env: dict[str, str] | None = None, **flags: object) -> Parallelism:
    settings = Settings.resolve(flags=flags, environ=env or {})
    return choose(settings, device=device, arch_count=arches, machine=shape(cpus, gib))


def fits(par: Parallelism, gib: float, device: str = "cuda") -> bool:
    model = JOB_MEMORY[device]
    t = par.nvcc_threads
    return par.jobs * model.avg_gib * t + (model.worst_gib - model.avg_gib) * t <= gib


def test_h100_host_single_arch_is_16_jobs_1_thread() -> None:
    # The measured host: 16 cores, 128 GiB (about 120 available). 4x4 took 822 s, 16x1 218 s.
    par = pick(16, 120)
    assert (par.jobs, par.nvcc_threads) == (16, 1)
    assert fits(par, 120)
    assert par.line().startswith("jobs=16 nvcc_threads=1: 16 CPUs")
    assert "120 GiB available at ~4.5 GiB per job" in par.line()


def test_64_gib_host_gets_fewer_jobs() -> None:
    # 16 heavy compiles peaked at 73 GiB: cores alone would be killed here.
    par = pick(16, 60)
    assert par.jobs < 16 and par.nvcc_threads == 1
    assert par.jobs * 4.5 + 7.5 <= 60
    assert par.jobs >= 11
    assert "limited by memory" in par.why


@pytest.mark.parametrize(("cpus", "gib", "device", "arches", "expected"), [
    (1, 2, "cuda", 1, (1, 1)),          # below one job's estimate: still 1, with a warning
    (1, 2, "cpu", 1, (1, 1)),
    (2, 24, "cpu", 1, (2, 1)),          # this CI machine
    (4, 8, "cuda", 1, (1, 1)),          # small container
    (8, 32, "cuda", 1, (5, 1)),
    (16, 120, "cuda", 7, (8, 2)),       # several arches: threads on a big enough machine
    (32, 250, "cuda", 7, (8, 4)),
    (64, 500, "cuda", 1, (64, 1)),
    (128, 2048, "cuda", 1, (128, 1)),
    (128, 2048, "cuda", 7, (32, 4)),
    (128, 64, "cpu", 1, (63, 1)),       # many cores, little memory, CPU device
])
def test_machine_shapes(cpus: int, gib: float, device: str, arches: int,
                        expected: tuple[int, int]) -> None:
    par = pick(cpus, gib, device=device, arches=arches)
    assert (par.jobs, par.nvcc_threads) == expected
    assert par.jobs * par.nvcc_threads <= cpus
    assert par.jobs == 1 or fits(par, gib, device)


def test_too_little_memory_warns() -> None:
    par = pick(1, 2)
    assert "less memory than one job needs" in par.why


def test_threads_grow_the_estimate() -> None:
    one = pick(16, 120, nvcc_threads=1)
    four = pick(16, 120, nvcc_threads=4)
    assert "~4.5 GiB per job" in one.why and "~18 GiB per job" in four.why
    assert four.jobs == 4  # 16 CPUs / 4 threads; memory allows (120-30)/18 = 5


def test_single_arch_never_threads() -> None:
    for cpus in (8, 16, 64, 128):
        assert pick(cpus, 2048).nvcc_threads == 1


def test_explicit_jobs_and_threads_win() -> None:
    par = pick(16, 10, jobs=12, nvcc_threads=2)
    assert (par.jobs, par.nvcc_threads) == (12, 2)
    assert "jobs set by --jobs" in par.why and "threads set by --nvcc-threads" in par.why


def test_max_jobs_keeps_vllm_meaning() -> None:
    par = pick(64, 500, env={"MAX_JOBS": "16", "NVCC_THREADS": "4"})
    assert (par.jobs, par.nvcc_threads) == (4, 4)
    assert par.why.startswith("MAX_JOBS=16 divided by nvcc_threads=4")


def test_job_memory_override_by_env_and_flag() -> None:
    by_env = pick(16, 60, env={"VLLM_DEV_JOB_MEMORY_GIB": "10"})
    assert by_env.jobs == 6 and "set by VLLM_DEV_JOB_MEMORY_GIB" in by_env.why
    by_flag = pick(16, 60, env={"VLLM_DEV_JOB_MEMORY_GIB": "10"}, job_memory_gib="2")
    assert by_flag.jobs == 16


def test_cgroup_limited_container(tmp_path: Path) -> None:
    """A 4-CPU, 16 GiB container on a 64-core host with 500 GiB free."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/\n")
    (tmp_path / "proc/meminfo").write_text(f"MemAvailable: {500 * 1024 * 1024} kB\n")
    cg = tmp_path / "sys/fs/cgroup"
    cg.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpu memory\n")
    (cg / "cpu.max").write_text("400000 100000\n")
    (cg / "memory.max").write_text(str(16 * GIB))
    (cg / "memory.current").write_text(str(1 * GIB))
    machine = probe_machine(tmp_path, affinity=64)
    par = choose(Settings(), device="cuda", arch_count=1, machine=machine)
    assert (par.jobs, par.nvcc_threads) == (1, 1)  # (15 - 7.5) // 4.5 = 1
    assert "4 CPUs (cgroup v2 cpu.max quota 4)" in par.why
    cpu = choose(Settings(), device="cpu", arch_count=1, machine=machine)
    assert cpu.jobs == 4


@pytest.mark.parametrize("bad", ["0", "-1", "lots", "inf"])
def test_bad_job_memory_is_one_line(bad: str) -> None:
    with pytest.raises(VllmDevError, match="VLLM_DEV_JOB_MEMORY_GIB must be a positive number"):
        Settings.resolve(flags={}, environ={"VLLM_DEV_JOB_MEMORY_GIB": bad})
