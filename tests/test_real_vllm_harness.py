"""The real-vLLM tier's harness itself (tests/real_vllm.py, the conftest hooks), on small trees.

These run without ``VLLM_DEV_REAL_VLLM``: they prove the cache is reused instead of re-extracted,
the adaptations happen only where the local gcc needs them, clones share no file with the cache,
and that the tier skips with one line (and fails in CI).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import real_vllm as rv

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parent

CPU_CMAKE = """\
if (CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64")
    if (NOT (CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND
            CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12.3))
        message(FATAL_ERROR "X86 backend requires gcc/g++ >= 12.3")
    endif()
    if (CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 15)
    endif()
endif()
"""
FLASH_MLA = """\
template <typename T> void f() {
  constexpr int64_t kBLOCK_H_MAX = 16;
}
template <typename T> void g() {
  static constexpr int64_t kBLOCK_H_MAX = 16;
}
"""


def _tree(root: Path) -> Path:
    (root / "cmake").mkdir(parents=True)
    (root / "csrc" / "cpu" / "sgl-kernels").mkdir(parents=True)
    (root / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.26)\n")
    (root / "cmake" / "cpu_extension.cmake").write_text(CPU_CMAKE)
    (root / "csrc" / "cpu" / "sgl-kernels" / "flash_mla.cpp").write_text(FLASH_MLA)
    (root / "csrc" / "fs_io.cpp").write_text("int x;\n")
    return root


def _archive(tmp_path: Path, name: str = "vllm-9.9.9-src.tar.xz") -> Path:
    tree = _tree(tmp_path / "src" / "vllm-9.9.9")
    archive = tmp_path / name
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(tree, arcname="vllm-9.9.9")
    return archive


def test_adaptations_only_on_an_older_gcc(tmp_path: Path) -> None:
    old = _tree(tmp_path / "old")
    done = rv.adapt_tree(old, (12, 2, 0))
    cmake = (old / "cmake" / "cpu_extension.cmake").read_text()
    assert "VERSION_GREATER_EQUAL 12.2.0))" in cmake and "VERSION_GREATER_EQUAL 15)" in cmake
    mla = (old / "csrc" / "cpu" / "sgl-kernels" / "flash_mla.cpp").read_text()
    assert mla.count("static constexpr int64_t kBLOCK_H_MAX") == 2
    assert "static static" not in mla
    assert len(done) == 3 and (old / ".gitignore").is_file()

    new = _tree(tmp_path / "new")
    (new / ".gitignore").write_text("mine\n")
    assert rv.adapt_tree(new, (13, 3, 0)) == []
    assert (new / "cmake" / "cpu_extension.cmake").read_text() == CPU_CMAKE
    assert (new / ".gitignore").read_text() == "mine\n"


def test_unpacked_once_and_keyed_by_the_archive(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    cache = tmp_path / "cache"
    top = rv.unpacked(archive, cache)
    (top / "marker").write_text("kept")  # a re-extraction would not keep it
    assert rv.unpacked(archive, cache) == top and (top / "marker").read_text() == "kept"
    os.utime(archive, ns=(1, 1))  # a different archive (mtime) is a new entry
    again = rv.unpacked(archive, cache)
    assert again != top and not (again / "marker").exists()
    assert not list(cache.glob("*.partial"))


def test_adapted_repo_history_and_independent_clones(tmp_path: Path) -> None:
    source = rv.RealSource(vllm=_archive(tmp_path), onednn=None)
    repo = rv.adapted_repo(source, tmp_path / "cache")
    assert rv.adapted_repo(source, tmp_path / "cache") == repo
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert log == ["testbed adaptations for this machine (tests/real_vllm.py adapt_tree)",
                   "vLLM tree as unpacked from vllm-9.9.9-src.tar.xz"]
    clone = rv.fresh_clone(repo, tmp_path / "clone")
    for name in ("CMakeLists.txt", "csrc/fs_io.cpp"):
        mine, cached = (clone / name).stat(), (repo / name).stat()
        assert mine.st_ino != cached.st_ino and mine.st_nlink == 1
    (clone / "csrc" / "fs_io.cpp").write_text("int y;\n")
    (clone / "cmake-build-release").mkdir()
    (clone / "cmake-build-release" / "x.o").write_bytes(b"")
    assert (repo / "csrc" / "fs_io.cpp").read_text() == "int x;\n"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout
    assert status.splitlines() == [" M csrc/fs_io.cpp"]  # the build dir is ignored


def test_checkout_source_copies_the_tracked_tree(tmp_path: Path) -> None:
    checkout = _tree(tmp_path / "mine")
    (checkout / "requirements" / "build").mkdir(parents=True)
    (checkout / "requirements" / "build" / "cpu.txt").write_text("cmake\n")
    (checkout / "cmake-build-release").mkdir()
    (checkout / "cmake-build-release" / "big.o").write_bytes(b"o")
    repo = rv.adapted_repo(rv.RealSource(vllm=checkout, onednn=None), tmp_path / "cache")
    assert (repo / "requirements" / "build" / "cpu.txt").is_file()
    assert not (repo / "cmake-build-release").exists()
    (checkout / "csrc" / "fs_io.cpp").write_text("int edited;\n")  # an edit: a new entry
    again = rv.adapted_repo(rv.RealSource(vllm=checkout, onednn=None), tmp_path / "cache")
    assert again != repo and (again / "csrc" / "fs_io.cpp").read_text() == "int edited;\n"


def test_source_from_env(tmp_path: Path) -> None:
    assert rv.RealSource.from_env({}) is None
    with pytest.raises(ValueError, match="VLLM_DEV_REAL_VLLM=.*not a vLLM checkout"):
        rv.RealSource.from_env({rv.ENV_VAR: str(tmp_path)})
    archive = _archive(tmp_path)
    onednn = tmp_path / "onednn-v3.13-min.tar.xz"
    onednn.write_bytes(b"")
    assert rv.RealSource.from_env({rv.ENV_VAR: str(archive)}) == rv.RealSource(archive, onednn)
    other = tmp_path / "dnnl"
    other.mkdir()
    assert rv.RealSource.from_env({rv.ENV_VAR: str(archive), rv.ONEDNN_ENV_VAR: str(other)}
                                  ) == rv.RealSource(archive, other)


def _pytest_tier(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", rv.ENV_VAR, rv.ONEDNN_ENV_VAR, "PYTEST_ADDOPTS")}
    argv = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
            str(TESTS / "test_real_vllm.py")]
    return subprocess.run(argv, cwd=TESTS.parent, env={**env, **extra}, capture_output=True,
                          text=True, timeout=300, check=False)


def test_without_the_variable_the_tier_skips_with_one_line_and_fails_in_ci() -> None:
    off = _pytest_tier({})
    assert off.returncode == 0, off.stdout + off.stderr
    skipped = [ln for ln in off.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert len(skipped) == 1 and rv.SKIP_REASON in skipped[0], off.stdout
    ci = _pytest_tier({"CI": "true"})
    assert ci.returncode == 1, ci.stdout + ci.stderr
    # a skip in setup (the tier's case) reports as an error, one in the test body as a failure
    assert ci.stdout.count("skipped in CI (CI is set, a skip is a failure)") == 4, ci.stdout
    assert "4 errors" in ci.stdout and "skipped" not in ci.stdout.splitlines()[-1], ci.stdout
