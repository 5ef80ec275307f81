"""Finding the build tools (cmake, ninja, nvcc, compiler caches) and their versions.

Tools installed by the build requirements into the target interpreter's environment win over
those on PATH: Debian's cmake 3.25 is too old for vLLM, while the venv's PyPI cmake is the one
the build requirements pin.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.errors import VllmDevError
from vllm_dev.process.runner import Runner
from vllm_dev.toolchain.interpreter import Interpreter

VERSION_TIMEOUT_S = 15.0
# The first dotted version in a tool's free-form --version text (packaging parses a version
# string; it does not find one inside other text).
_VERSION_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Tool:
    """A located program and the version it reports."""

    name: str
    path: Path
    version: tuple[int, ...]

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


def _which(name: str, *, first: list[Path]) -> Path | None:
    for directory in first:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def version_of(path: Path, *, runner: Runner, flag: str = "--version") -> tuple[int, ...]:
    """The first dotted version a tool prints (every tool here prints one early)."""
    done = runner.query([path, flag], timeout=VERSION_TIMEOUT_S)
    if flag == "--version" and path.name.startswith("nvcc"):
        match = re.search(r"release (\d+)\.(\d+)", done.stdout)
        if match:
            return (int(match.group(1)), int(match.group(2)))
    match = _VERSION_RE.search(done.stdout + done.stderr)
    if not done.ok or not match:
        raise VllmDevError(f"{path} --version failed: is it a working {path.name}?")
    return tuple(int(g) for g in match.groups() if g is not None)


def tool_dirs(interpreter: Interpreter | None) -> list[Path]:
    """Where a tool is looked for before PATH: the target venv, then vllm-dev's own venv."""
    dirs = [interpreter.bin_dir] if interpreter else []
    own = Path(sys.executable).parent
    if own not in dirs:
        dirs.append(own)
    return dirs


def find_cmake(*, interpreter: Interpreter, runner: Runner, minimum: tuple[int, ...],
               version: Callable[[Path], tuple[int, ...]] | None = None) -> Tool:
    """The cmake to run, checked against the checkout's ``cmake_minimum_required``.

    ``version`` replaces ``cmake --version`` (the workspace passes a remembered answer)."""
    path = _which("cmake", first=[interpreter.bin_dir])
    if path is None:
        raise VllmDevError(
            "no cmake found: run `vllm-dev setup` (it installs cmake from the build "
            "requirements) or `uv pip install 'cmake>=3.26'` into the target environment"
        )
    found = version(path) if version is not None else version_of(path, runner=runner)
    if found < minimum:
        need = ".".join(str(v) for v in minimum)
        have = ".".join(str(v) for v in found)
        raise VllmDevError(
            f"cmake {have} at {path} is older than the {need} this checkout requires: run "
            f"`vllm-dev setup` or `uv pip install --python {interpreter.path} 'cmake>={need}'`"
        )
    return Tool("cmake", path, found)


def find_ninja(*, interpreter: Interpreter | None) -> Path | None:
    return _which("ninja", first=tool_dirs(interpreter))


def find_nvcc(environ: Mapping[str, str]) -> Path | None:
    """nvcc the way CMake and vLLM look for it: CUDACXX, CUDA_HOME, PATH, /usr/local/cuda."""
    if environ.get("CUDACXX"):
        path = Path(environ["CUDACXX"])
        return path if path.is_file() else None
    for home in (environ.get("CUDA_HOME"), environ.get("CUDA_PATH")):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return Path(home) / "bin" / "nvcc"
    found = shutil.which("nvcc", path=environ.get("PATH"))
    if found:
        return Path(found)
    default = Path("/usr/local/cuda/bin/nvcc")
    return default if default.is_file() else None


def require_nvcc(environ: Mapping[str, str]) -> Path:
    nvcc = find_nvcc(environ)
    if nvcc is None:
        raise VllmDevError(
            "the target device is cuda but no nvcc was found (CUDACXX, CUDA_HOME, PATH, "
            "/usr/local/cuda): install the CUDA toolkit or pass --device cpu"
        )
    return nvcc


def find_launcher(name: str, *, interpreter: Interpreter | None) -> Path | None:
    """A compiler cache (ccache/sccache), as an absolute path: a bare name that is missing
    passes configure and only fails at build time."""
    return _which(name, first=tool_dirs(interpreter))
