"""Usable CPUs and available memory read from fake /proc and /sys trees (cgroup v1 and v2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_dev.host.machine import GIB, available_memory, probe_machine, usable_cpus

pytestmark = pytest.mark.unit


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def meminfo(root: Path, available_gib: float) -> None:
    write(root, "proc/meminfo",
          f"MemTotal:       999999999 kB\nMemAvailable:   {int(available_gib * 1024 * 1024)} kB\n")


def v2(root: Path, path: str = "/") -> Path:
    """A cgroup v2 layout; returns the process's cgroup dir."""
    write(root, "proc/self/cgroup", f"0::{path}\n")
    write(root, "sys/fs/cgroup/cgroup.controllers", "cpu memory\n")
    directory = root / "sys/fs/cgroup" / path.lstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_bare_host_uses_affinity_and_meminfo(tmp_path: Path) -> None:
    meminfo(tmp_path, 100)
    machine = probe_machine(tmp_path, affinity=12)
    assert machine.cpus.count == 12 and machine.cpus.source == "affinity mask"
    assert machine.memory.available == 100 * GIB and machine.memory.source == "MemAvailable"


def test_cgroup_v2_quota_and_memory_limit(tmp_path: Path) -> None:
    group = v2(tmp_path, "/kubepods/pod1")
    (group / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs
    (group / "memory.max").write_text(str(8 * GIB))
    (group / "memory.current").write_text(str(3 * GIB))
    (group / "memory.stat").write_text(f"anon 1\ninactive_file {1 * GIB}\n")
    meminfo(tmp_path, 200)
    cpus = usable_cpus(tmp_path, affinity=64)
    assert cpus.count == 2 and "cpu.max" in cpus.source
    memory = available_memory(tmp_path)
    # 8 GiB limit - (3 GiB used - 1 GiB droppable cache) = 6 GiB
    assert memory.available == 6 * GIB and "memory.max" in memory.source


def test_cgroup_v2_unlimited_falls_back_to_meminfo(tmp_path: Path) -> None:
    group = v2(tmp_path, "/user.slice")
    (group / "cpu.max").write_text("max 100000\n")
    (group / "memory.max").write_text("max\n")
    meminfo(tmp_path, 30)
    assert usable_cpus(tmp_path, affinity=8).count == 8
    assert available_memory(tmp_path).available == 30 * GIB


def test_cgroup_v2_parent_limit_applies(tmp_path: Path) -> None:
    group = v2(tmp_path, "/outer/inner")
    (group.parent / "cpu.max").write_text("400000 100000\n")
    (group.parent / "memory.max").write_text(str(4 * GIB))
    (group.parent / "memory.current").write_text("0")
    meminfo(tmp_path, 64)
    assert usable_cpus(tmp_path, affinity=32).count == 4
    assert available_memory(tmp_path).available == 4 * GIB


def test_cgroup_v1_with_host_path_not_mounted(tmp_path: Path) -> None:
    # Inside a docker container the path is the host's, the limit sits at the mount point.
    write(tmp_path, "proc/self/cgroup", "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "150000\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", str(2 * GIB))
    write(tmp_path, "sys/fs/cgroup/memory/memory.usage_in_bytes", str(GIB))
    write(tmp_path, "sys/fs/cgroup/memory/memory.stat", "total_inactive_file 0\n")
    meminfo(tmp_path, 500)
    assert usable_cpus(tmp_path, affinity=16).count == 1  # 1.5 CPUs round down
    assert available_memory(tmp_path).available == GIB


def test_cgroup_v1_unlimited_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "4:memory:/x\n1:cpu:/\n")
    write(tmp_path, "sys/fs/cgroup/memory/x/memory.limit_in_bytes", "9223372036854771712\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
    meminfo(tmp_path, 20)
    assert usable_cpus(tmp_path, affinity=2).count == 2
    assert available_memory(tmp_path).available == 20 * GIB


def test_tiny_quota_still_one_cpu_and_garbage_files_are_ignored(tmp_path: Path) -> None:
    group = v2(tmp_path)
    (group / "cpu.max").write_text("10000 100000\n")  # 0.1 CPU
    (group / "memory.max").write_text("not a number\n")
    assert usable_cpus(tmp_path, affinity=4).count == 1
    memory = available_memory(tmp_path)  # no meminfo, unreadable limit
    assert memory.available is None and "unknown" in memory.source


def test_this_machine_is_readable() -> None:
    machine = probe_machine()
    assert machine.cpus.count >= 1
    assert machine.memory.available is not None and machine.memory.available > 0
