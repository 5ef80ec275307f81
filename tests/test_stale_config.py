"""Stale configuration, end to end: another venv or another torch makes `build` reconfigure from a
fresh CMake cache and say what changed (CMake alone would keep the cached interpreter)."""

from __future__ import annotations

import re
from pathlib import Path

import minivllm_tools as mv
from conftest import Project


def cache_value(build_dir: Path, name: str) -> str:
    for line in (build_dir / "CMakeCache.txt").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not in {build_dir}/CMakeCache.txt")


def fake_torch(python: Path, version: str) -> None:
    """A torch distribution as the interpreter probe sees it (metadata + torch/version.py); the
    test project does not import torch, so no 2 GB wheel is needed to prove the plumbing."""
    site = next((python.parent.parent / "lib").glob("python3*/site-packages"))
    for old in site.glob("torch-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"torch-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    (site / "torch").mkdir(exist_ok=True)
    (site / "torch" / "__init__.py").write_text("")
    (site / "torch" / "version.py").write_text(f"__version__ = '{version}'\ncuda = None\n")


def test_switching_venv_reconfigures_fresh(project: Project, tmp_path: Path) -> None:
    venv_a = project.python
    project.run("build", "--cache", "none")
    assert cache_value(project.build_dir, "VLLM_PYTHON_EXECUTABLE") == str(venv_a)
    assert project.value("_C") == 42

    venv_b = mv.make_venv(tmp_path / "venv-b")
    project.run("setup", "--python", str(venv_b))
    done = project.run("build", "--cache", "none", "--python", str(venv_b))
    # which change needs the fresh cache and what the build dir holds, before cmake runs
    # (venv-b has its own cmake and ninja: those changes are named too, each a real one)
    assert ("reconfiguring release with a fresh CMake cache (a new interpreter; a new cmake; the "
            "build dir holds 4 built object(s), which may recompile): ") in done.stderr
    assert f"python, VLLM_PYTHON_EXECUTABLE: {venv_a} -> {venv_b}; " in done.stderr
    assert "--fresh" in done.stderr  # the configure command line that ran
    assert cache_value(project.build_dir, "VLLM_PYTHON_EXECUTABLE") == str(venv_b)
    assert mv.import_value(str(venv_b), "_C", cwd=project.root) == 42

    again = project.run("build", "--cache", "none", "--python", str(venv_b))
    assert "reconfiguring" not in again.stderr


def test_torch_upgrade_reconfigures_fresh(project: Project) -> None:
    fake_torch(project.python, "2.13.0")
    project.run("build", "--cache", "none")
    fake_torch(project.python, "2.14.0")
    done = project.run("build", "--cache", "none")
    assert ("reconfiguring release with a fresh CMake cache (a new torch; the build dir holds 4 "
            "built object(s), which may recompile): torch: 2.13.0 -> 2.14.0") in done.stderr
    assert project.value("_C") == 42


def test_a_new_cmake_reconfigures_fresh_and_says_what_is_at_stake(project: Project) -> None:
    """A reason per fresh cache, made for real: another cmake installed into the target venv."""
    import subprocess

    from conftest import clean_env

    project.run("build", "--target", "_C")
    old = cache_value(project.build_dir, "CMAKE_COMMAND")
    subprocess.run([mv.find_uv(), "pip", "install", "-q", "-p", str(project.python),
                    "cmake>=3.26.1,<3.27"], check=True, env=clean_env())
    done = project.run("build", "--target", "_C")
    cmake = project.python.parent / "cmake"
    assert re.search(rf"reconfiguring release with a fresh CMake cache \(a new cmake; the build "
                     rf"dir holds 3 built object\(s\), which may recompile\): cmake: "
                     rf"{re.escape(str(cmake))} 4\.\S+ -> {re.escape(str(cmake))} 3\.26\.\d+",
                     done.stderr), done.stderr
    assert "--fresh" in done.stderr
    assert cache_value(project.build_dir, "CMAKE_COMMAND") == old  # the same path, new cmake
    assert project.value("_C") == 42
