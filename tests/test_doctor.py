"""doctor: the checks table on the real test project, blockers and exit codes, JSON, and a hung
nvidia-smi that must not hang it."""

from __future__ import annotations

import json
import platform
import stat
import subprocess
import time
from pathlib import Path

import pytest

from vllm_dev.config.settings import Settings
from vllm_dev.planning.workspace import Workspace
from vllm_dev.process.runner import SubprocessRunner
from vllm_dev.steps.doctor import Doctor

from conftest import Project


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def gcc_blocks_cpu_build() -> bool:
    """The test project states gcc >= 11.3 (vLLM's minimum for every device) in CMakeLists.txt;
    doctor reads it from there, so 12.2 here is not a blocker of this project's build."""
    out = subprocess.run(["g++", "-dumpfullversion"], capture_output=True, text=True).stdout
    version = tuple(int(p) for p in out.strip().split("."))
    return platform.machine() == "x86_64" and version < (11, 3)


def test_doctor_table_on_a_set_up_project(project: Project) -> None:
    done = project.run("doctor", check=False)
    assert done.returncode == (1 if gcc_blocks_cpu_build() else 0)
    for name in ("checkout", "python", "vllm install", "build requirements", "cmake", "ninja",
                 "ccache", "host compiler", "GPUs", "CPUs", "memory", "disk", "parallelism"):
        assert name in done.stdout, name
    assert "vllm-dev doctor" in done.stdout


def test_doctor_json(project: Project) -> None:
    data = json.loads(project.run("doctor", "--json", check=False).stdout)
    by_name = {c["name"]: c for c in data["checks"]}
    assert data["blockers"] == (["host compiler"] if gcc_blocks_cpu_build() else [])
    assert by_name["vllm install"]["status"] == "ok"
    assert by_name["cmake"]["status"] == "ok" and "4." in by_name["cmake"]["detail"]
    assert by_name["parallelism"]["detail"].startswith("jobs=")
    assert all(c["status"] in ("ok", "warn", "fail", "info") for c in data["checks"])


def test_old_gcc_blocks_with_exit_1(project: Project, tmp_path: Path) -> None:
    old = script(tmp_path / "bin" / "old-g++",
                 'case "$1" in -dumpfullversion) echo 9.4.0;; *) echo "g++ (GCC) 9.4.0";; esac')
    done = project.run("doctor", "--json", check=False, env={"CXX": str(old)})
    assert done.returncode == 1
    gcc = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "host compiler")
    assert gcc["status"] == "fail"
    assert "gcc 9.4.0; this checkout needs >= 11.3 for the cpu build (CMakeLists.txt:" \
        in gcc["detail"]
    assert "vllm-dev: 1 check(s) block the build: host compiler" in done.stderr
    assert "Traceback" not in done.stderr


def test_wrong_interpreter_is_a_blocker_not_a_crash(project: Project, tmp_path: Path) -> None:
    done = project.run("doctor", "--json", "--python", str(tmp_path / "nope"), check=False)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert "python" in data["blockers"]
    assert any(c["name"] == "memory" for c in data["checks"])  # the others still ran


def test_hung_nvidia_smi_does_not_hang_doctor(project: Project, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "hung"
    script(bin_dir / "nvidia-smi", "exec /bin/sleep 60")
    monkeypatch.setenv("PATH", f"{bin_dir}:{project.python.parent}:/usr/bin:/bin")
    monkeypatch.setattr("vllm_dev.toolchain.arch.NVIDIA_SMI_TIMEOUT_S", 1.0)
    settings = Settings.resolve(flags={"source": str(project.root), "python": str(project.python),
                                       "device": "cpu"}, environ={})
    ws = Workspace(settings=settings, runner=SubprocessRunner(), environ={}, cwd=project.root)
    start = time.monotonic()
    checks = Doctor(ws).run()
    assert time.monotonic() - start < 30
    gpu = next(c for c in checks if c.name == "GPUs")
    assert "did not answer within 1 s" in gpu.detail


def test_no_interpreter_is_one_row_with_its_fix(project: Project) -> None:
    """Outside any venv: one row for the interpreter, with the fix, then only the checks that
    need none (not one failing row per check that would ask it)."""
    (project.root / ".venv").rename(project.root / "venv-aside")
    try:
        done = project.run("doctor", "--json", check=False)
    finally:
        (project.root / "venv-aside").rename(project.root / ".venv")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    data = json.loads(done.stdout)
    rows = {c["name"]: c for c in data["checks"]}
    assert list(rows) == ["checkout", "python", "GPUs", "CPUs", "memory", "disk"], list(rows)
    assert data["blockers"] == ["python"]
    assert rows["python"]["detail"] == "no target interpreter"
    assert "uv venv --python 3.12" in rows["python"]["fix"] and "--python" in rows["python"]["fix"]
    assert rows["GPUs"]["status"] in ("ok", "info")
