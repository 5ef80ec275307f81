"""Which CUDA arches to build for (``TORCH_CUDA_ARCH_LIST`` in the configure preset's environment).

vLLM builds for every arch its nvcc supports unless told otherwise; narrowing the list to the GPUs
of this machine is the biggest saver of build time and compiler memory (116 instead of 159
compile steps for vLLM 0.33.0, each object compiled once instead of up to seven times). So by
default the list is this machine's compute capabilities (``nvidia-smi``), intersected with what the
nvcc in use can target (``nvcc --list-gpu-arch``). ``--arch 8.0,9.0`` names arches explicitly,
``--arch all`` keeps vLLM's own default list, and so does a machine without a visible GPU (a build
host without one still produces kernels that run everywhere).

Every probe has a timeout: a wedged driver makes ``nvidia-smi`` hang, and must not hang vllm-dev.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.errors import VllmDevError
from vllm_dev.process.runner import Runner

NVIDIA_SMI_TIMEOUT_S = 10.0
NVCC_TIMEOUT_S = 15.0
ALL = "all"
_ARCH_RE = re.compile(r"^(\d+)\.(\d+)([af]?)(\+PTX)?$")
_COMPUTE_RE = re.compile(r"compute_(\d+)([af]?)\b")


@dataclass(frozen=True)
class GpuProbe:
    """Compute capabilities of the visible GPUs (``()`` when none) and why, if none."""

    capabilities: tuple[str, ...]
    names: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class ArchSelection:
    """``archs`` None means "not narrowed": vLLM's own default list applies."""

    archs: tuple[str, ...] | None
    why: str

    @property
    def env_value(self) -> str | None:
        return ";".join(self.archs) if self.archs else None

    @property
    def fingerprint(self) -> str:
        return self.env_value or "vLLM default"

    def line(self) -> str:
        return f"TORCH_CUDA_ARCH_LIST={self.env_value or '(vLLM default)'}: {self.why}"


def _arch_key(arch: str) -> tuple[int, int, str]:
    match = _ARCH_RE.match(arch)
    return (int(match.group(1)), int(match.group(2)), arch) if match else (999, 0, arch)


def parse_arch_setting(text: str, *, origin: str) -> tuple[str, ...] | None:
    """``"8.0,9.0"`` / ``"8.0;9.0 9.0a"`` -> sorted arches; ``"all"`` -> None (vLLM's default)."""
    if text.strip().lower() == ALL:
        return None
    parts = [p for p in re.split(r"[,; ]+", text.strip()) if p]
    bad = [p for p in parts if not _ARCH_RE.match(p)]
    if not parts or bad:
        raise VllmDevError(
            f"{origin} {text!r} is not a list of CUDA arches: use e.g. 8.0,9.0 (compute "
            "capabilities, as nvidia-smi --query-gpu=compute_cap shows them) or all"
        )
    return tuple(sorted(set(parts), key=_arch_key))


def probe_gpus(*, runner: Runner, nvidia_smi: str | None = None) -> GpuProbe:
    """Visible GPUs via ``nvidia-smi``; never raises (no driver is an answer, not an error)."""
    smi = nvidia_smi or shutil.which("nvidia-smi")
    if smi is None:
        return GpuProbe((), problem="nvidia-smi not found")
    try:
        done = runner.query([smi, "--query-gpu=compute_cap,name", "--format=csv,noheader"],
                            timeout=NVIDIA_SMI_TIMEOUT_S)
    except VllmDevError as exc:  # timeout, or cannot execute
        return GpuProbe((), problem=str(exc))
    if not done.ok:
        last = (done.stdout + done.stderr).strip().splitlines()
        return GpuProbe((), problem=f"nvidia-smi failed: {last[-1] if last else done.returncode}")
    caps: list[str] = []
    names: list[str] = []
    for line in done.stdout.splitlines():
        cap, _, name = line.partition(",")
        cap = cap.strip()
        if _ARCH_RE.match(cap):
            caps.append(cap)
            names.append(name.strip())
    if not caps:
        return GpuProbe((), problem="nvidia-smi lists no GPU")
    return GpuProbe(tuple(caps), tuple(names))


def nvcc_arches(nvcc: Path, *, runner: Runner) -> tuple[str, ...] | None:
    """Arches this nvcc can compile for (``compute_90`` -> ``9.0``); None if it cannot say."""
    try:
        done = runner.query([nvcc, "--list-gpu-arch"], timeout=NVCC_TIMEOUT_S)
    except VllmDevError:
        return None
    if not done.ok:
        return None
    found = set()
    for digits, suffix in _COMPUTE_RE.findall(done.stdout):
        if suffix:
            continue
        found.add(f"{digits[:-1]}.{digits[-1]}")
    return tuple(sorted(found, key=_arch_key)) or None


def _base(arch: str) -> str:
    match = _ARCH_RE.match(arch)
    return f"{match.group(1)}.{match.group(2)}" if match else arch


def select_arches(
    setting: str | None,
    *,
    origin: str,
    device: str,
    gpus: GpuProbe | None,
    supported: tuple[str, ...] | None,
) -> ArchSelection:
    """The arch list for the preset, and a one-line reason. An arch list given on the command
    line for a build that compiles no CUDA is a mistake (one from the environment, such as an
    image's TORCH_CUDA_ARCH_LIST, is not: vLLM ignores it there, and so does vllm-dev)."""
    if device != "cuda":
        if setting and origin.startswith("--"):
            raise VllmDevError(f"{origin} {setting} is a CUDA arch list, and this is a {device} "
                               f"build, which compiles no CUDA code: drop {origin} (or build "
                               "with --device cuda)")
        return ArchSelection(None, f"not a CUDA build (device {device})")
    if setting:
        archs = parse_arch_setting(setting, origin=origin)
        if archs is None:
            return ArchSelection(None, f"{origin} all: vLLM's default arch list")
        if supported is not None:
            missing = [a for a in archs if _base(a) not in supported]
            if len(missing) == len(archs):
                raise VllmDevError(
                    f"{origin} {setting}: nvcc supports none of {', '.join(archs)} (it supports "
                    f"{', '.join(supported)}): pick supported arches or another CUDA toolkit"
                )
            if missing:  # vLLM drops these itself; say so now rather than at configure
                return ArchSelection(archs, f"set by {origin}; nvcc cannot target "
                                            f"{', '.join(missing)} (vLLM will skip it)")
        return ArchSelection(archs, f"set by {origin}")
    if gpus is None or not gpus.capabilities:
        problem = gpus.problem if gpus else "not probed"
        return ArchSelection(None, f"no GPU visible ({problem}): keeping vLLM's default arch "
                                   "list (narrow it with --arch)")
    caps = tuple(sorted(set(gpus.capabilities), key=_arch_key))
    if supported is None:
        return ArchSelection(caps, f"this machine's GPUs ({', '.join(caps)})")
    usable = tuple(c for c in caps if c in supported)
    if not usable:
        raise VllmDevError(
            f"this machine's GPUs are compute capability {', '.join(caps)}, which this nvcc "
            f"cannot target (it supports {', '.join(supported)}): install a newer CUDA toolkit, "
            "or pass --arch"
        )
    dropped = [c for c in caps if c not in usable]
    why = f"this machine's GPUs ({', '.join(caps)})"
    if dropped:
        why += f"; nvcc cannot target {', '.join(dropped)}"
    return ArchSelection(usable, why)
