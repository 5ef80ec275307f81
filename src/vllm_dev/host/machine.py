"""What this machine (or container) really lets a build use: CPUs and memory.

``os.cpu_count()`` and ``MemTotal`` describe the host, not the container a build runs in: a
16-core host can give a container 4 CPUs through a cgroup quota and 8 GiB through a memory limit,
and a compile farm sized from the host's numbers gets nvcc killed. The readers here honour, in
order: the CPU affinity mask (``sched_getaffinity``, e.g. ``taskset``/``numactl``), the cgroup CPU
quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), the cgroup memory limit
(v2 ``memory.max`` - ``memory.current``, v1 ``memory.limit_in_bytes`` - ``memory.usage_in_bytes``,
page cache that can be dropped counted as free) and ``MemAvailable`` from ``/proc/meminfo``.

Every reader takes ``root`` (``/`` by default) so tests can build a fake ``/proc`` and ``/sys``
tree; nothing here runs a program or raises on a missing or odd file (a machine we cannot read is
reported as "unknown", never as an error).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
# cgroup v1 reports "no limit" as a huge page-aligned number (2**63 - 4096 on x86-64).
_V1_UNLIMITED = 2**60


@dataclass(frozen=True)
class Cpus:
    """Usable CPUs and what limited them (``"affinity"``, ``"cgroup v2 cpu.max"``, ...)."""

    count: int
    source: str


@dataclass(frozen=True)
class Memory:
    """Memory a build may take now, in bytes, and what bounded it; ``None`` when unreadable."""

    available: int | None
    source: str

    @property
    def gib(self) -> float | None:
        return None if self.available is None else self.available / GIB


@dataclass(frozen=True)
class Machine:
    cpus: Cpus
    memory: Memory


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _own_cgroups(root: Path) -> dict[str, str]:
    """Controller -> cgroup path of this process; key ``""`` is the v2 unified hierarchy."""
    found: dict[str, str] = {}
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


def _cgroup_dirs(mount: Path, path: str) -> list[Path]:
    """The process's cgroup dir and its ancestors up to the mount, innermost first.

    Inside a container the path in ``/proc/self/cgroup`` is often the host's (``/docker/<id>``)
    while the container sees its own cgroup at the mount point, so the mount itself is always a
    candidate. A limit on any ancestor applies too, hence the walk.
    """
    dirs: list[Path] = []
    rel = Path(path.lstrip("/")) if path and path != "/" else Path()
    current = mount / rel
    while True:
        if current.is_dir() and current not in dirs:
            dirs.append(current)
        if current == mount or mount not in current.parents:
            break
        current = current.parent
    if mount.is_dir() and mount not in dirs:
        dirs.append(mount)
    return dirs


def _v1_mount(root: Path, controller: str) -> Path | None:
    for name in (controller, f"{controller},cpuacct", f"cpuacct,{controller}"):
        candidate = root / "sys/fs/cgroup" / name
        if candidate.is_dir():
            return candidate
    return None


def cgroup_cpu_limit(root: Path = Path("/")) -> tuple[float, str] | None:
    """The tightest CPU quota (in CPUs, may be fractional) over the cgroup hierarchy, if any."""
    groups = _own_cgroups(root)
    best: tuple[float, str] | None = None
    unified = root / "sys/fs/cgroup"
    if "" in groups and (unified / "cgroup.controllers").is_file():
        for directory in _cgroup_dirs(unified, groups[""]):
            fields = (_read(directory / "cpu.max") or "").split()
            if len(fields) == 2 and fields[0] != "max":
                quota, period = _int(fields[0]), _int(fields[1])
                if quota and period and quota > 0 and period > 0:
                    cpus = quota / period
                    if best is None or cpus < best[0]:
                        best = (cpus, "cgroup v2 cpu.max")
    mount = _v1_mount(root, "cpu")
    if mount is not None:
        for directory in _cgroup_dirs(mount, groups.get("cpu", "/")):
            quota = _int(_read(directory / "cpu.cfs_quota_us"))
            period = _int(_read(directory / "cpu.cfs_period_us"))
            if quota and period and quota > 0 and period > 0:
                cpus = quota / period
                if best is None or cpus < best[0]:
                    best = (cpus, "cgroup v1 cpu.cfs_quota_us")
    return best


def usable_cpus(root: Path = Path("/"), *, affinity: int | None = None) -> Cpus:
    """CPUs this process may run on: the affinity mask, capped by the cgroup quota.

    A fractional quota (1.5 CPUs) rounds down, but never below 1. ``affinity`` replaces
    ``sched_getaffinity`` (for tests, and platforms without it).
    """
    source = "affinity mask"
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            affinity = os.cpu_count() or 1
            source = "cpu count"
    count = max(1, affinity)
    limit = cgroup_cpu_limit(root)
    if limit is not None and math.floor(limit[0]) < count:
        return Cpus(max(1, math.floor(limit[0])), f"{limit[1]} quota {limit[0]:g}")
    return Cpus(count, source)


def _meminfo_available(root: Path) -> int | None:
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            fields = line.split()
            kib = _int(fields[1]) if len(fields) >= 2 else None
            return kib * 1024 if kib is not None else None
    return None


def _stat_value(directory: Path, *keys: str) -> int:
    """A counter from ``memory.stat`` (0 when absent)."""
    for line in (_read(directory / "memory.stat") or "").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] in keys:
            return _int(fields[1]) or 0
    return 0


def cgroup_memory_free(root: Path = Path("/")) -> tuple[int, str] | None:
    """Bytes left under the tightest cgroup memory limit, counting inactive page cache as free
    (the kernel drops it before it kills a compiler); None without a limit."""
    groups = _own_cgroups(root)
    best: tuple[int, str] | None = None
    unified = root / "sys/fs/cgroup"
    if "" in groups and (unified / "cgroup.controllers").is_file():
        for directory in _cgroup_dirs(unified, groups[""]):
            raw = _read(directory / "memory.max")
            limit = _int(raw) if raw != "max" else None
            if limit is None:
                continue
            used = _int(_read(directory / "memory.current")) or 0
            used -= _stat_value(directory, "inactive_file")
            free = max(0, limit - max(0, used))
            if best is None or free < best[0]:
                best = (free, f"cgroup v2 memory.max {limit / GIB:.1f} GiB")
    mount = _v1_mount(root, "memory")
    if mount is not None:
        for directory in _cgroup_dirs(mount, groups.get("memory", "/")):
            limit = _int(_read(directory / "memory.limit_in_bytes"))
            if limit is None or limit >= _V1_UNLIMITED:
                continue
            used = _int(_read(directory / "memory.usage_in_bytes")) or 0
            used -= _stat_value(directory, "total_inactive_file", "inactive_file")
            free = max(0, limit - max(0, used))
            if best is None or free < best[0]:
                best = (free, f"cgroup v1 memory limit {limit / GIB:.1f} GiB")
    return best


def available_memory(root: Path = Path("/")) -> Memory:
    """Memory available now: MemAvailable, or less when a cgroup limit leaves less."""
    host = _meminfo_available(root)
    limited = cgroup_memory_free(root)
    if limited is not None and (host is None or limited[0] < host):
        return Memory(limited[0], limited[1])
    if host is not None:
        return Memory(host, "MemAvailable")
    return Memory(None, "unknown (no /proc/meminfo)")


def probe_machine(root: Path = Path("/"), *, affinity: int | None = None) -> Machine:
    return Machine(usable_cpus(root, affinity=affinity), available_memory(root))
