"""GPU-arch selection: nvidia-smi and nvcc probes (fake runner), the selection rules, and the
preset's TORCH_CUDA_ARCH_LIST through a real prime of the CUDA test project."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vllm_dev.errors import VllmDevError
from vllm_dev.process.runner import Completed, SubprocessRunner
from vllm_dev.toolchain.arch import (
    GpuProbe,
    nvcc_arches,
    parse_arch_setting,
    probe_gpus,
    select_arches,
)

from conftest import NVCC, Project, requires_nvcc

NVCC_LIST = "compute_75\ncompute_80\ncompute_86\ncompute_89\ncompute_90\ncompute_90a\n" \
            "compute_100\ncompute_120\n"


@dataclass
class FakeRunner:
    answer: Callable[[list[str]], Completed]
    dry: bool = False
    calls: list[list[str]] = field(default_factory=list)

    def query(self, argv, **kwargs):  # type: ignore[no-untyped-def]
        args = [os.fspath(a) for a in argv]
        self.calls.append(args)
        return self.answer(args)


def answering(stdout: str, code: int = 0) -> FakeRunner:
    return FakeRunner(lambda argv: Completed(argv, code, stdout, ""))


@pytest.mark.unit
def test_nvidia_smi_output_parsed() -> None:
    runner = answering("9.0, NVIDIA H100 80GB HBM3\n9.0, NVIDIA H100 80GB HBM3\n")
    gpus = probe_gpus(runner=runner, nvidia_smi="/usr/bin/nvidia-smi")
    assert gpus.capabilities == ("9.0", "9.0")
    assert gpus.names[0] == "NVIDIA H100 80GB HBM3"
    assert "--query-gpu=compute_cap,name" in runner.calls[0]


@pytest.mark.unit
def test_nvidia_smi_failure_is_no_gpu() -> None:
    gpus = probe_gpus(runner=answering("NVIDIA-SMI has failed\n", 9), nvidia_smi="nvidia-smi")
    assert gpus.capabilities == () and "NVIDIA-SMI has failed" in (gpus.problem or "")


@pytest.mark.unit
def test_hung_nvidia_smi_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wedged driver makes nvidia-smi hang; the probe must come back within its timeout."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nsleep 60\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr("vllm_dev.toolchain.arch.NVIDIA_SMI_TIMEOUT_S", 0.5)
    start = time.monotonic()
    gpus = probe_gpus(runner=SubprocessRunner(), nvidia_smi=str(smi))
    assert time.monotonic() - start < 10
    assert gpus.capabilities == () and "did not answer" in (gpus.problem or "")


@pytest.mark.unit
def test_nvcc_list_parsed_without_arch_specific_variants() -> None:
    archs = nvcc_arches(Path("nvcc"), runner=answering(NVCC_LIST))
    assert archs == ("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0")


@requires_nvcc
def test_real_nvcc_lists_its_arches() -> None:
    archs = nvcc_arches(Path(str(NVCC)), runner=SubprocessRunner())
    assert archs is not None and "9.0" in archs


@pytest.mark.unit
@pytest.mark.parametrize(("text", "expected"), [
    ("9.0", ("9.0",)), ("9.0,8.0", ("8.0", "9.0")), ("8.0;9.0 9.0", ("8.0", "9.0")),
    ("9.0a,10.0+PTX", ("9.0a", "10.0+PTX")), ("all", None), ("ALL", None),
])
def test_parse_arch_setting(text: str, expected: tuple[str, ...] | None) -> None:
    assert parse_arch_setting(text, origin="--arch") == expected


@pytest.mark.unit
@pytest.mark.parametrize("bad", ["sm_90", "9", "", "9.0,hopper"])
def test_bad_arch_is_one_line(bad: str) -> None:
    with pytest.raises(VllmDevError, match="--arch .* is not a list of CUDA arches"):
        parse_arch_setting(bad, origin="--arch")


SUPPORTED = ("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0")


@pytest.mark.unit
def test_auto_uses_local_gpus_intersected_with_nvcc() -> None:
    sel = select_arches(None, origin="--arch", device="cuda",
                        gpus=GpuProbe(("9.0", "8.6", "9.0", "3.7")), supported=SUPPORTED)
    assert sel.archs == ("8.6", "9.0") and sel.env_value == "8.6;9.0"
    assert "nvcc cannot target 3.7" in sel.why


@pytest.mark.unit
def test_no_gpu_keeps_vllm_default_and_says_so() -> None:
    sel = select_arches(None, origin="--arch", device="cuda",
                        gpus=GpuProbe((), problem="nvidia-smi not found"), supported=SUPPORTED)
    assert sel.archs is None and sel.env_value is None
    assert "no GPU visible (nvidia-smi not found): keeping vLLM's default" in sel.line()


@pytest.mark.unit
def test_explicit_and_all_override_gpus() -> None:
    gpus = GpuProbe(("9.0",))
    sel = select_arches("8.0,9.0", origin="--arch", device="cuda", gpus=gpus, supported=SUPPORTED)
    assert sel.archs == ("8.0", "9.0") and sel.why == "set by --arch"
    every = select_arches("all", origin="VLLM_DEV_ARCH", device="cuda", gpus=gpus,
                          supported=SUPPORTED)
    assert every.archs is None and "vLLM's default" in every.why


@pytest.mark.unit
def test_partly_unsupported_explicit_arches_are_named() -> None:
    sel = select_arches("3.5,9.0", origin="--arch", device="cuda", gpus=None, supported=SUPPORTED)
    assert sel.archs == ("3.5", "9.0") and "nvcc cannot target 3.5" in sel.why


@pytest.mark.unit
def test_unsupported_gpu_or_arch_is_an_error() -> None:
    with pytest.raises(VllmDevError, match="cannot target"):
        select_arches(None, origin="--arch", device="cuda", gpus=GpuProbe(("3.5",)),
                      supported=SUPPORTED)
    with pytest.raises(VllmDevError, match="nvcc supports none of 3.5"):
        select_arches("3.5", origin="--arch", device="cuda", gpus=None, supported=SUPPORTED)


@pytest.mark.unit
def test_cpu_device_sets_no_arch() -> None:
    """An arch list from the environment (an image's TORCH_CUDA_ARCH_LIST) is ignored on a CPU
    build, as vLLM does; one given as --arch is a mistake, said in one line."""
    sel = select_arches("9.0", origin="TORCH_CUDA_ARCH_LIST", device="cpu", gpus=None,
                        supported=None)
    assert sel.archs is None
    with pytest.raises(VllmDevError, match=r"^--arch 9.0 is a CUDA arch list, and this is a "
                                           r"cpu build.*drop --arch"):
        select_arches("9.0", origin="--arch", device="cpu", gpus=None, supported=None)


def _arch_env(project: Project) -> str | None:
    doc = json.loads((project.root / "CMakeUserPresets.json").read_text())
    base = next(p for p in doc["configurePresets"] if p["name"] == "vllm-dev-base")
    return base.get("environment", {}).get("TORCH_CUDA_ARCH_LIST")


def _cache(project: Project, name: str) -> str:
    for line in (project.build_dir / "CMakeCache.txt").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not in CMakeCache.txt")


@requires_nvcc
def test_arch_flag_reaches_the_build_and_a_change_reconfigures(cuda_project: Project) -> None:
    """No GPU here: the default is vLLM's list (the test project's 7.5); --arch narrows it, and
    changing it reconfigures and says so."""
    env = {"PATH": f"{cuda_project.root}/no-gpu-bin:{os.environ['PATH']}"}
    done = cuda_project.run("prime", "--cache", "none", env=env)
    if "no GPU visible" in done.stderr:
        assert _arch_env(cuda_project) is None
        assert _cache(cuda_project, "MINIVLLM_CUDA_ARCHS") == "75"
    done = cuda_project.run("prime", "--cache", "none", "--arch", "8.0,9.0")
    assert _arch_env(cuda_project) == "8.0;9.0"
    # the line names the real change, before -> after (issue 19's format), and keeps the cache
    assert re.search(r"^vllm-dev: reconfiguring release: arch: [^;]+ -> 8\.0;9\.0$",
                     done.stderr, re.M), done.stderr
    assert "fresh CMake cache" not in done.stderr
    assert "TORCH_CUDA_ARCH_LIST=8.0;9.0: set by --arch" in done.stderr
    assert _cache(cuda_project, "MINIVLLM_CUDA_ARCHS") == "80;90"
    again = cuda_project.run("prime", "--cache", "none", "--arch", "9.0,8.0")
    assert "reconfiguring" not in again.stderr  # same set, other order: nothing to do
