"""The real vLLM tree as test data: where it comes from, the cached checkout, the target venv.

The real-vLLM tier (marker ``real_vllm``) runs vllm-dev against vLLM's own ``CMakeLists.txt``,
``cmake/*.cmake`` and ``csrc/``, because the test project (tests/minivllm) is only a model of it.
Its source is ``VLLM_DEV_REAL_VLLM``: a vLLM checkout (a directory) or a vLLM sdist archive
(``vllm-*-src.tar.xz``, as in ``../shared/testbeds/``). vLLM's CPU configure clones oneDNN unless
``FETCHCONTENT_SOURCE_DIR_ONEDNN`` names a copy: that copy comes from ``VLLM_DEV_REAL_ONEDNN`` (a
directory or archive), else from an ``onednn-*.tar.xz`` beside the vLLM archive.

What is cached, and where (``VLLM_DEV_TESTS_CACHE``, default ``~/.cache/vllm-dev-tests``):
the unpacked archives and, per source, a git repository whose history is one commit of the tree
as it was unpacked (or copied, for a checkout) plus one commit of this machine's testbed
adaptations (:func:`adapt_tree`, the one place that changes vLLM's files). Keys are the archive's
name, size and mtime (for a checkout: every tracked file's path, size and mtime), the local gcc
version and :data:`ADAPTATIONS_REVISION`, so a new archive, an edited checkout or a changed
adaptation makes a new entry and nothing is ever re-extracted per test. Tests work on a fresh
``git clone --no-hardlinks`` of that repository (:func:`fresh_clone`), never on the cache.

Plain functions, no pytest here (conftest.py holds the fixtures), so ``bench/`` scripts can use
the same tree.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

ENV_VAR = "VLLM_DEV_REAL_VLLM"
ONEDNN_ENV_VAR = "VLLM_DEV_REAL_ONEDNN"
CACHE_ENV_VAR = "VLLM_DEV_TESTS_CACHE"
SKIP_REASON = (f"real-vLLM tier off: set {ENV_VAR} to a vLLM checkout or a vllm-*-src.tar.xz "
               f"(e.g. {ENV_VAR}=../shared/testbeds/vllm-0.33.0-src.tar.xz)")

#: Bump when :func:`adapt_tree` changes: cached adapted trees of older revisions are not reused.
ADAPTATIONS_REVISION = 1

#: The target venv holds the tree's own CPU build requirements (requirements/build/cpu.txt, or
#: the older requirements/build.txt) with their torch pin replaced by the torch this image can
#: install offline (0.33.0 pins torch==2.14.0+cpu, which is on no registry here); BUILD_TOOLS
#: when the tree has no such file. numpy: torch warns at import without it.
TORCH = "torch==2.13.0"
BUILD_TOOLS = ("ninja", "packaging", "setuptools", "setuptools-scm", "setuptools-rust", "wheel",
               "jinja2", "regex",
               "numpy")
WHEELS_DIR = Path("/opt/wheels")

#: The CMake versions the tier runs on: the newest 4.x (what a user gets from PyPI today) and
#: the oldest line vLLM accepts (3.26.0 writes a bad .so suffix, hence >=3.26.1).
CMAKE_VERSIONS = {"cmake4": "cmake>=4,<5", "cmake3.26": "cmake>=3.26.1,<3.27"}

# The sdist has no .gitignore: without one, every build dir shows up as untracked in the clone.
_GITIGNORE = """\
# Added by vllm-dev's test harness (tests/real_vllm.py): the sdist ships no .gitignore.
/.deps/
/build/
/.venv/
/.vllm-dev/
cmake-build-*/
CMakeUserPresets.json
*.so
__pycache__/
*.egg-info/
"""
# Never copied from a developer's checkout that is not a git repository: build outputs and
# environments (top level), caches and extensions (anywhere).
_NOT_COPIED_TOP = shutil.ignore_patterns("cmake-build-*", ".venv", ".deps", ".vllm-dev", "build",
                                         "CMakeUserPresets.json")
_NOT_COPIED = shutil.ignore_patterns(".git", "__pycache__", "*.so")


@dataclass(frozen=True)
class Timings:
    """Seconds spent preparing the tier, for the closing note (printed with ``pytest -s``)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, func: Callable[[], object]) -> object:
        start = time.monotonic()
        try:
            return func()
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - start


TIMINGS = Timings()


@dataclass(frozen=True)
class RealSource:
    """Where the tier's vLLM tree (and the oneDNN sources its CPU configure needs) come from."""

    vllm: Path
    onednn: Path | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RealSource | None:
        """``None`` when the tier is off; a clear error when the variables name nothing usable."""
        environ = os.environ if environ is None else environ
        value = environ.get(ENV_VAR, "").strip()
        if not value:
            return None
        vllm = Path(value).expanduser().resolve()
        if not (vllm.is_dir() and (vllm / "CMakeLists.txt").is_file()) and not _is_archive(vllm):
            raise ValueError(f"{ENV_VAR}={value}: not a vLLM checkout (no CMakeLists.txt) nor a "
                             "vllm-*-src.tar.xz archive")
        onednn_value = environ.get(ONEDNN_ENV_VAR, "").strip()
        onednn: Path | None = None
        if onednn_value:
            onednn = Path(onednn_value).expanduser().resolve()
            if not (onednn.is_dir() or _is_archive(onednn)):
                raise ValueError(f"{ONEDNN_ENV_VAR}={onednn_value}: not a directory nor an archive")
        elif vllm.is_file():
            beside = sorted(vllm.parent.glob("onednn-*.tar.xz"))
            onednn = beside[-1] if beside else None
        return cls(vllm=vllm, onednn=onednn)


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.xz", ".tar.gz", ".tgz", ".tar"))


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    configured = environ.get(CACHE_ENV_VAR)
    return (Path(configured) if configured else Path.home() / ".cache" / "vllm-dev-tests"
            ).expanduser()


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _archive_key(archive: Path) -> str:
    stat = archive.stat()
    return _key(archive.name, stat.st_size, stat.st_mtime_ns)


def unpacked(archive: Path, root: Path) -> Path:
    """The archive's single top directory, unpacked once under ``root`` (atomic: a run killed
    half-way leaves only a temporary directory, never a half tree that looks complete)."""
    dest = root / f"unpacked-{archive.name.split('.tar')[0]}-{_archive_key(archive)}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if not dest.is_dir():
            partial = dest.with_name(dest.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            tar = shutil.which("tar")
            if tar:  # GNU tar's xz is about 8 times faster than Python's tarfile here
                subprocess.run([tar, "-xf", str(archive), "-C", str(partial)], check=True,
                               capture_output=True)
            else:
                with tarfile.open(archive) as tar_file:
                    tar_file.extractall(partial, filter="tar")
            os.replace(partial, dest)
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise ValueError(f"{archive}: expected one top directory, found {len(tops)}")
    return tops[0]


def _checkout_files(checkout: Path) -> list[Path]:
    """The files of a developer's checkout worth copying: git's view when it is a repository
    (tracked plus untracked-but-not-ignored), else everything but build outputs."""
    if (checkout / ".git").exists():
        listed = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z", "-co",
                                 "--exclude-standard"], capture_output=True, check=True).stdout
        return sorted(checkout / name for name in listed.decode().split("\0")
                      if name and (checkout / name).is_file())
    files: list[Path] = []
    for directory, dirs, names in os.walk(checkout):
        ignored = _NOT_COPIED(directory, [*dirs, *names])
        if Path(directory) == checkout:
            ignored |= _NOT_COPIED_TOP(directory, [*dirs, *names])
        dirs[:] = [d for d in dirs if d not in ignored]
        files.extend(Path(directory) / n for n in names if n not in ignored)
    return sorted(files)


def _copy_checkout(checkout: Path, files: Iterable[Path], dest: Path) -> None:
    for path in files:
        target = dest / path.relative_to(checkout)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target, follow_symlinks=False)


def local_gcc_version() -> tuple[int, ...] | None:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    out = subprocess.run([gcc, "-dumpfullversion"], capture_output=True, text=True, check=False)
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", out.stdout.strip())
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def adapt_tree(tree: Path, gcc: tuple[int, ...] | None) -> list[str]:
    """THE ONE PLACE where the harness changes vLLM's files for this machine. Returns what it did.

    These adapt the testbed to the machine, not vLLM's behaviour, and vllm-dev (src/) knows
    nothing of them:

    - vLLM 0.33.0's x86 CPU backend refuses gcc < 12.3 (``cmake/cpu_extension.cmake``); Debian 12
      ships gcc 12.2. When the local gcc is older than the checked minimum, the check is lowered
      to the local gcc's version (on a newer gcc the tree stays as it is).
    - On such an old gcc, 12.2 hits an internal compiler error on ``constexpr int64_t
      kBLOCK_H_MAX`` inside a function template in ``csrc/cpu/sgl-kernels/flash_mla.cpp``;
      ``static constexpr`` means the same and avoids it.
    - The sdist has no ``.gitignore``; one is added (build dirs, venvs, ``.deps``) so the clone's
      ``git status`` shows what a real checkout's would.
    """
    done: list[str] = []
    gitignore = tree / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(_GITIGNORE)
        done.append("add .gitignore (the sdist has none)")
    cpu_cmake = tree / "cmake" / "cpu_extension.cmake"
    check = re.compile(r"(CMAKE_CXX_COMPILER_VERSION\s+VERSION_GREATER_EQUAL\s+)(\d+(?:\.\d+)*)")
    if gcc is not None and cpu_cmake.is_file():
        text = cpu_cmake.read_text()
        for match in check.finditer(text):
            needed = tuple(int(p) for p in match.group(2).split("."))
            if (12, 0) <= needed <= (12, 99) and gcc < needed:
                local = ".".join(map(str, gcc))
                text = text.replace(match.group(0), match.group(1) + local, 1)
                done.append(f"cmake/cpu_extension.cmake: gcc >= {match.group(2)} check lowered "
                            f"to the local gcc {local}")
                flash_mla = tree / "csrc" / "cpu" / "sgl-kernels" / "flash_mla.cpp"
                if flash_mla.is_file():
                    source = flash_mla.read_text()
                    fixed = re.sub(r"(?<!static )constexpr int64_t kBLOCK_H_MAX",
                                   "static constexpr int64_t kBLOCK_H_MAX", source)
                    if fixed != source:
                        flash_mla.write_text(fixed)
                        done.append("csrc/cpu/sgl-kernels/flash_mla.cpp: kBLOCK_H_MAX made "
                                    f"static constexpr (gcc {local} ICE)")
        cpu_cmake.write_text(text)
    return done


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=vllm-dev tests",
                    "-c", "user.email=tests@vllm-dev.invalid", "-c", "commit.gpgsign=false",
                    *args], check=True, capture_output=True)


def adapted_repo(source: RealSource, root: Path | None = None) -> Path:
    """The cached git repository of the adapted tree (made on first use, reused after)."""
    root = root or cache_root()
    gcc = local_gcc_version()
    if source.vllm.is_dir():
        files = _checkout_files(source.vllm)
        key = _key(str(source.vllm), [(str(p), p.lstat().st_size, p.lstat().st_mtime_ns)
                                      for p in files], gcc, ADAPTATIONS_REVISION)
        name = f"repo-{source.vllm.name}-{key}"
    else:
        files = []
        key = _key(_archive_key(source.vllm), gcc, ADAPTATIONS_REVISION)
        name = f"repo-{source.vllm.name.split('.tar')[0]}-{key}"
    repo = root / name
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(repo) + ".lock"):
        if (repo / ".git").is_dir():
            return repo
        partial = repo.with_name(repo.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if source.vllm.is_dir():
            TIMINGS.timed("copy checkout", lambda: _copy_checkout(source.vllm, files, partial))
        else:
            top = TIMINGS.timed("unpack vLLM", lambda: unpacked(source.vllm, root))
            assert isinstance(top, Path)
            TIMINGS.timed("copy unpacked tree", lambda: shutil.copytree(top, partial,
                                                                        symlinks=True))
        _git(partial, "init", "-q", "-b", "main")
        _git(partial, "add", "-A", "-f")
        _git(partial, "commit", "-q", "-m", f"vLLM tree as unpacked from {source.vllm.name}")
        done = adapt_tree(partial, gcc)
        _git(partial, "add", "-A")
        _git(partial, "commit", "-q", "--allow-empty", "-m",
             "testbed adaptations for this machine (tests/real_vllm.py adapt_tree)\n\n"
             + ("\n".join(f"- {d}" for d in done) or "none needed"))
        os.replace(partial, repo)
    return repo


def onednn_dir(source: RealSource, root: Path | None = None) -> Path | None:
    """The oneDNN sources for ``FETCHCONTENT_SOURCE_DIR_ONEDNN`` (unpacked once), if any."""
    if source.onednn is None:
        return None
    if source.onednn.is_dir():
        return source.onednn
    top = TIMINGS.timed("unpack oneDNN", lambda: unpacked(source.onednn, root or cache_root()))
    assert isinstance(top, Path)
    return top


def fresh_clone(repo: Path, dest: Path) -> Path:
    """A checkout of its own for one test: a real clone, no working file hardlinked to the cache
    (a build writing through a link would change every later test's tree)."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(repo), str(dest)], check=True,
                   capture_output=True)
    return dest


def _uv() -> str:
    from minivllm_tools import find_uv

    return find_uv()


def build_requirements(tree: Path) -> list[str]:
    """uv arguments for the tree's CPU build requirements, torch pins dropped (see TORCH)."""
    for name in ("requirements/build/cpu.txt", "requirements/build.txt"):
        path = tree / name
        if path.is_file():
            break
    else:
        return [*BUILD_TOOLS]
    kept = []
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text or re.match(r"torch\b", text):
            continue
        if text.startswith(("-r ", "-c ")):  # nested files, relative to this one
            text = f"{text[:2]} {(path.parent / text[3:].strip()).resolve()}"
        kept.append(text)
    filtered = Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm-dev-tier-{_key(str(path))}.txt"
    filtered.write_text("\n".join(kept) + "\n")
    return ["-r", str(filtered), "numpy"]


def make_target_venv(venv: Path, tree: Path | None = None) -> Path:
    """The target interpreter for the real tree: CPU torch 2.13.0 from the local wheels, cmake
    (newest 4.x; see :func:`cmake_into`), ninja and the tree's other CPU build requirements.
    Returns its python."""
    subprocess.run([_uv(), "venv", "-q", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}",
                    str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    # pip's find-links (this image sets PIP_FIND_LINKS=/opt/wheels) hold the CPU torch wheel; uv
    # does not read pip's settings, so they are passed on.
    dirs = {*os.environ.get("PIP_FIND_LINKS", "").split(), str(WHEELS_DIR)}
    links = [arg for d in sorted(dirs) if Path(d).is_dir() for arg in ("--find-links", d)]
    wanted = build_requirements(tree) if tree else [*BUILD_TOOLS]
    done = subprocess.run([_uv(), "pip", "install", "-q", "-p", str(python), *links, TORCH,
                           *wanted, CMAKE_VERSIONS["cmake4"]], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"target venv for the real tree: uv pip install failed:\n{done.stderr}")
    return python


def cmake_into(python: Path, version: str) -> str:
    """Install a PyPI cmake (``"4.4.5"``, or a requirement such as ``"cmake>=3.26.1,<3.27"``)
    into ``python``'s venv, replacing the one there; returns the version now installed."""
    requirement = version if version.startswith("cmake") else f"cmake=={version}"
    subprocess.run([_uv(), "pip", "install", "-q", "-p", str(python), requirement], check=True,
                   capture_output=True)
    out = subprocess.run([str(Path(python).parent / "cmake"), "--version"], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[2]
