"""Helpers for tests that drive the minivllm fixture project (tests/minivllm).

minivllm is a tiny C++/CUDA project shaped like vLLM's build (same CMake cache
variables, extension names, install layout and setup.py precompiled mode), so
tests can exercise vllm-dev end to end in seconds instead of the hours a real
vLLM build takes. These are plain functions (no pytest fixtures) so that both
tests and benchmark scripts can use them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = [
    "PROJECT_DIR",
    "WHEEL_NAME",
    "find_uv",
    "copy_project",
    "make_venv",
    "build_precompiled_wheel",
    "import_value",
]

#: The fixture project. Tests must work on a copy (see copy_project), never here.
PROJECT_DIR: Path = Path(__file__).resolve().parent / "minivllm"

#: File name of the wheel that build_precompiled_wheel writes.
WHEEL_NAME = "vllm-0.0.1-cp310-abi3-linux_x86_64.whl"

# Build outputs and per-checkout state that must not travel with a copy: a
# copied build directory or .so would make tests pass for the wrong reason.
_IGNORED = shutil.ignore_patterns(
    "cmake-build-*",
    ".venv",
    "*.so",
    "CMakeUserPresets.json",
    ".deps",
    ".vllm-dev",
    "__pycache__",
    "*.egg-info",
)

_BUILD_REQUIREMENTS = "cmake>=3.26.1\nninja\nsetuptools>=64\n"


def find_uv() -> str:
    """Path of the uv executable, found as vllm-dev finds it (the `uv` package, then PATH).

    Imported lazily: scripts that only copy the project need not have vllm_dev importable."""
    from vllm_dev.steps.setup import find_uv as find

    return find()


def copy_project(dest: Path, *, layout: str = "new") -> Path:
    """Copy minivllm to `dest` (created if missing) without build artefacts.

    layout="new" keeps vLLM's current requirements/build/<device>.txt files;
    layout="old" converts them to the older single requirements/build.txt, so
    tests can check that vllm-dev handles both vLLM layouts.
    Returns `dest`.
    """
    if layout not in ("new", "old"):
        raise ValueError(f"layout must be 'new' or 'old', not {layout!r}")
    dest = Path(dest)
    shutil.copytree(PROJECT_DIR, dest, ignore=_IGNORED, dirs_exist_ok=True)
    if layout == "old":
        build_dir = dest / "requirements" / "build"
        shutil.rmtree(build_dir, ignore_errors=True)
        (dest / "requirements" / "build.txt").write_text(_BUILD_REQUIREMENTS)
    return dest


def make_venv(path: Path, *, python: str = sys.executable) -> Path:
    """Create a virtual environment at `path` with `uv venv`; return its interpreter.

    uv is what vllm-dev uses, and it creates a venv in well under a second.
    The venv has no pip; install into it with `uv pip install --python ...`.
    """
    path = Path(path)
    subprocess.run(
        [find_uv(), "venv", "--quiet", "--python", python, os.fspath(path)],
        check=True,
    )
    interpreter = path / "bin" / "python"
    if not interpreter.exists():
        raise FileNotFoundError(f"uv venv did not create {interpreter}")
    return interpreter


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def build_precompiled_wheel(
    dest_dir: Path, *, python: str, cmake: str, ninja: str | None = None,
    source: Path | None = None, commit: str | None = None, torch: str | None = None,
) -> Path:
    """Build a stand-in for a prebuilt vLLM wheel and return its path.

    The CPU targets of a fresh copy are built with -DMINIVLLM_PRECOMPILED=ON,
    so vllm._C.known_value() returns 1 (42 when built locally): a test can
    tell which kernels ended up in vllm/. The wheel also holds
    vllm/_legacy_C.abi3.so (known_value() 3), a module the current build no
    longer makes, like the stale .so files older vLLM wheels leave behind.
    `python` is the interpreter to build against, `cmake` a CMake >= 3.26,
    `ninja` optional: without it, a ninja next to `cmake` or on PATH is used,
    else CMake's default generator. `source`: build that tree (e.g. a test's
    checkout at commit W) instead of the fixture project. `commit`: recorded as
    vLLM's wheels record it, `__commit_id__ = commit_id = 'g<short sha>'` in
    vllm/_version.py. `torch`: a `Requires-Dist: torch<torch>` pin in METADATA.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="minivllm-wheel-") as tmp:
        src = copy_project(Path(tmp) / "src")
        if source is not None:
            shutil.copytree(source, src, dirs_exist_ok=True,
                            ignore=lambda d, n: {*_IGNORED(d, n), *({".git"} & set(n))})
        build = Path(tmp) / "build"
        configure = [
            cmake, "-S", os.fspath(src), "-B", os.fspath(build),
            f"-DVLLM_PYTHON_EXECUTABLE={python}",
            "-DVLLM_TARGET_DEVICE=cpu",
            "-DMINIVLLM_PRECOMPILED=ON",
            "-DCMAKE_BUILD_TYPE=Release",
        ]  # fmt: skip
        ninja = ninja or _find_ninja(cmake)
        if ninja is not None:
            configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        _run_checked(configure)
        _run_checked([cmake, "--build", os.fspath(build), "--target", "_C", "_fast_C", "_legacy_C"])

        members = {
            "vllm/_C.abi3.so": (build / "_C.abi3.so").read_bytes(),
            "vllm/_fast_C.abi3.so": (build / "_fast_C.abi3.so").read_bytes(),
            "vllm/_legacy_C.abi3.so": (build / "_legacy_C.abi3.so").read_bytes(),
        }
    dist_info = "vllm-0.0.1.dist-info"
    members[f"{dist_info}/METADATA"] = (
        b"Metadata-Version: 2.1\nName: vllm\nVersion: 0.0.1\nRequires-Python: >=3.10\n"
        + (f"Requires-Dist: torch{torch}\n".encode() if torch else b"")
    )
    if commit:
        members["vllm/_version.py"] = (
            f"__version__ = version = '0.0.1'\n__commit_id__ = commit_id = 'g{commit[:9]}'\n"
        ).encode()
    members[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: minivllm_tools\nRoot-Is-Purelib: false\n"
        b"Tag: cp310-abi3-linux_x86_64\n"
    )
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in members.items())
    record += f"{dist_info}/RECORD,,\n"
    members[f"{dist_info}/RECORD"] = record.encode()

    wheel = dest_dir / WHEEL_NAME
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o755 << 16 if name.endswith(".so") else 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return wheel


def import_value(python: str, module: str, func: str = "known_value", *, cwd: Path) -> int:
    """Import vllm.<module> with `python` in a subprocess, call `func`, return the int.

    A subprocess sees exactly what a user of that interpreter would, and a
    freshly rebuilt .so cannot be re-imported in-process. `cwd` matters: from
    the project directory, `import vllm` resolves to its vllm/ source folder
    even without an install. Raises RuntimeError with the child's output on failure.
    """
    code = (
        "import importlib\n"
        f"m = importlib.import_module('vllm.' + {module!r})\n"
        f"print(int(getattr(m, {func!r})()))\n"
    )
    proc = subprocess.run([python, "-c", code], cwd=os.fspath(cwd), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{python}: vllm.{module}.{func}() failed (exit {proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}"
        )
    return int(proc.stdout.strip().splitlines()[-1])


def _find_ninja(cmake: str) -> str | None:
    """A ninja beside `cmake` (same venv), else on PATH, else None."""
    cmake_path = shutil.which(cmake) or cmake
    beside = Path(cmake_path).parent / "ninja"
    if beside.is_file() and os.access(beside, os.X_OK):
        return os.fspath(beside)
    return shutil.which("ninja")


def _run_checked(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )
