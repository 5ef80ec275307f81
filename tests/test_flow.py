"""The core flow end to end on the test project, with the real tools (uv, cmake, ninja, ccache,
and nvcc when present)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import minivllm_tools as mv
from conftest import BIN_DIR, NVCC, Project, make_project, requires_nvcc


def ccache_stats(project: Project) -> dict[str, int]:
    """ccache's own counters for the project's private cache directory."""
    ccache = shutil.which("ccache", path=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    assert ccache, "ccache is a dependency of vllm-dev and must be installed"
    done = subprocess.run([ccache, "--print-stats"], capture_output=True, text=True, check=True,
                          env={**os.environ, "CCACHE_DIR": project.env["CCACHE_DIR"]})
    stats = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("\t")
        if value.strip().isdigit():
            stats[key] = int(value)
    return stats


@pytest.mark.flow
# The "new" layout is the fast lane's one real cmake + ninja build (CONTRIBUTING.md: the fast lane).
@pytest.mark.parametrize("layout", [pytest.param("new", marks=pytest.mark.fast), "old"])
def test_setup_build_import(tmp_path: Path, layout: str) -> None:
    project = make_project(tmp_path, layout=layout)
    project.run("build")
    assert project.value("_C") == 42
    assert project.value("_fast_C") == 7
    cache = (project.build_dir / "CMakeCache.txt").read_text()
    assert f"VLLM_PYTHON_EXECUTABLE:FILEPATH={project.python}" in cache or \
        f"VLLM_PYTHON_EXECUTABLE:UNINITIALIZED={project.python}" in cache or \
        f"VLLM_PYTHON_EXECUTABLE:STRING={project.python}" in cache


@requires_nvcc
def test_cuda_target_is_compiled_and_imports(cuda_project: Project) -> None:
    cuda_project.run("build")
    assert cuda_project.value("_cuda_C") == 1234
    assert cuda_project.value("_cuda_C", "device_count") >= 0
    commands = json.loads((cuda_project.build_dir / "compile_commands.json").read_text())
    assert any(c["file"].endswith("saxpy.cu") and "nvcc" in c["command"] for c in commands)


@pytest.mark.flow
def test_precompiled_wheel_then_local_build(tmp_path: Path) -> None:
    project = make_project(tmp_path, setup=False)
    wheel = mv.build_precompiled_wheel(tmp_path / "wheel", python=str(project.python),
                                       cmake=str(BIN_DIR / "cmake"))
    project.run("setup", env={"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel)})
    assert project.value("_C") == 1  # the prebuilt kernel
    project.run("build")
    assert project.value("_C") == 42  # replaced by the local build


def test_incremental_build_recompiles_exactly_one_file(project: Project) -> None:
    project.run("build")
    source = project.root / "csrc" / "ops" / "add.cpp"
    source.write_text(source.read_text() + "\n// touched\n")
    mark = project.ninja_log_mark()
    done = project.run("build")
    rebuilt = project.ninja_log_entries(since=mark)
    compiled = [o for o in rebuilt if o.endswith(".o")]
    assert compiled == ["CMakeFiles/_C.dir/csrc/ops/add.cpp.o"], rebuilt
    assert "_C.abi3.so" in rebuilt
    assert "--preset release\n" not in done.stderr  # no reconfigure
    assert "Installing: " in done.stdout and "_C.abi3.so" in done.stdout
    assert project.value("_C") == 42


def test_noop_build_compiles_nothing_and_does_not_reconfigure(project: Project) -> None:
    project.run("build")
    log = (project.build_dir / ".ninja_log").read_text()
    cache_mtime = (project.build_dir / "CMakeCache.txt").stat().st_mtime_ns
    done = project.run("build")
    new_log = (project.build_dir / ".ninja_log").read_text()
    assert new_log.startswith(log)
    new_steps = [line.split("\t")[3] for line in new_log[len(log):].splitlines()]
    assert all(step.endswith("install.util") for step in new_steps), new_steps
    assert (project.build_dir / "CMakeCache.txt").stat().st_mtime_ns == cache_mtime
    assert "cmake --preset" not in done.stderr
    assert "Building CXX" not in done.stdout


def test_clean_then_warm_ccache_build_hits_every_compile(project: Project) -> None:
    project.run("build")
    project.run("clean")
    assert not project.build_dir.exists()
    before = ccache_stats(project)
    project.run("build")
    after = ccache_stats(project)
    hits = sum(after.get(k, 0) - before.get(k, 0)
               for k in ("direct_cache_hit", "preprocessed_cache_hit"))
    misses = after.get("cache_miss", 0) - before.get("cache_miss", 0)
    compiled = [o for o in project.ninja_log_entries() if o.endswith(".o")]
    assert misses == 0
    assert hits == len(compiled) >= 4
    assert project.value("_C") == 42


def test_target_builds_and_installs_only_that_component(project: Project) -> None:
    done = project.run("build", "--target", "_fast_C")
    assert (project.root / "vllm" / "_fast_C.abi3.so").is_file()
    assert not (project.root / "vllm" / "_C.abi3.so").exists()
    assert not (project.build_dir / "_C.abi3.so").exists()
    assert "_fast_C" in done.stderr
    assert project.value("_fast_C") == 7


def test_no_install_compiles_only(project: Project) -> None:
    project.run("build", "--no-install")
    assert (project.build_dir / "_C.abi3.so").is_file()
    assert not (project.root / "vllm" / "_C.abi3.so").exists()
    project.run("install")
    assert project.value("_C") == 42


def test_install_repairs_same_second_stale_file(project: Project) -> None:
    """CMake skips a file whose timestamp matches; vllm-dev must still leave the build's bytes."""
    project.run("build")
    installed = project.root / "vllm" / "_C.abi3.so"
    built = project.build_dir / "_C.abi3.so"
    good = built.read_bytes()
    installed.write_bytes(good[:-64] + b"\0" * 64)  # different content ...
    st = built.stat()
    os.utime(installed, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... same timestamp
    project.run("install")
    assert installed.read_bytes() == good
    assert project.value("_C") == 42


def test_install_component_and_manifest_report(project: Project) -> None:
    project.run("build", "--no-install")
    done = project.run("install", "--component", "_C")
    assert f"into {project.root / 'vllm'}" in done.stderr
    assert (project.root / "vllm" / "_C.abi3.so").is_file()
    assert not (project.root / "vllm" / "_fast_C.abi3.so").exists()


def test_clean_installed_removes_only_manifest_files(project: Project) -> None:
    project.run("build")
    keep = project.root / "vllm" / "mine.so"
    keep.write_bytes(b"user file")
    project.run("clean", "--installed")
    assert not (project.root / "vllm" / "_C.abi3.so").exists()
    assert not (project.root / "vllm" / "_fast_C.abi3.so").exists()
    assert keep.read_bytes() == b"user file"
    assert (project.root / "vllm" / "__init__.py").is_file()
    assert not project.build_dir.exists()


def test_clean_all_removes_every_build_dir_of_ours(project: Project) -> None:
    project.run("build")
    project.run("build", "--preset", "debug")
    foreign = project.root / "cmake-build-mine"
    foreign.mkdir()
    project.run("clean", "--all")
    assert not project.build_dir.exists()
    assert not (project.root / "cmake-build-debug").exists()
    assert foreign.is_dir()


def test_setup_rerun_is_skipped_fast_and_force_redoes(project: Project) -> None:
    import time

    start = time.monotonic()
    done = project.run("setup")
    assert time.monotonic() - start < 2.0
    assert "skipped" in done.stderr
    done = project.run("setup", "--force")
    assert "uv pip install" in done.stderr and "nothing changed" not in done.stderr


def test_dry_run_changes_nothing_and_shows_commands(project: Project) -> None:
    done = project.run("--dry", "build")
    assert "cmake --preset release" in done.stderr
    assert "cmake --build --preset release --target all" in done.stderr
    assert f"cmake --install {project.build_dir} --prefix" in done.stderr  # staged install
    assert not project.build_dir.exists()
    assert not (project.root / "CMakeUserPresets.json").exists()


@pytest.mark.flow
def test_demo_runs_the_whole_flow(tmp_path: Path) -> None:
    project = Project(root=tmp_path, python=Path("unused"),
                      env={"CCACHE_DIR": str(tmp_path / "ccache"), "TMPDIR": str(tmp_path)})
    done = project.run("demo", "--device", "cuda" if NVCC else "cpu")
    assert "vllm._C.add(2, 3): 5 before the edit, 6 after it" in done.stderr, done.stderr
    assert "incremental build" in done.stderr
    assert not list(tmp_path.glob("vllm-dev-demo-*"))  # cleaned up unless --keep
