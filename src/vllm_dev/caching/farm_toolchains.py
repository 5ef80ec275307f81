"""Compilers behind wrapper scripts, made usable on the build farm.

sccache packages a compiler for the farm's servers by asking ``ldd`` what the executable needs;
a wrapper script (``/opt/gcc/bin/g++`` doing ``exec /opt/gcc-13.3/bin/g++ "$@"``, as on the lent
H200 machines) is no ELF file, so sccache gives up ("Failed to analyse ... with ldd: Elf magic
not found") and compiles every step of that compiler locally: 24 of 93 farm steps of
``_moe_C_stable_libtorch`` fell back that way. sccache can be told to use an archive of our own
for one compiler path (its ``path_override`` toolchains): the servers then run the real compiler
from that archive where the client ran the wrapper.

That is only right if the wrapper adds nothing: a wrapper that passes ``--sysroot``, ``-B``, a
spec file or an environment variable would compile differently on the servers. So a wrapper is
resolved and checked before it is used:

1. the real driver is the one the wrapper runs: gcc reports it as ``COLLECT_GCC`` (``-v``);
2. the wrapper and the real driver must plan the same commands for the same compile (``-###``:
   every cc1plus/as argument, the ``COMPILER_PATH``/``LIBRARY_PATH`` it would pass, the options
   the driver collected), temporary file names aside;
3. they must produce the same object from the same source, byte for byte.

The archive is ``sccache --package-toolchain <real driver>`` (sccache's own packaging: the driver,
cc1/cc1plus, as, and their libraries), made once per real driver (its path, size and mtime) under
the checkout's ``.vllm-dev/dist/toolchains/``. A wrapper that fails a check is not overridden and
the farm's start says why: its steps then stay local, as before, and correct.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.process.runner import Completed, query

_ELF = b"\x7fELF"
_TEMP_RE = re.compile(r"/[^\s\"']*/cc[A-Za-z0-9]{6}\.\w+")
_COLLECT_RE = re.compile(r"^COLLECT_GCC=(.+)$", re.MULTILINE)
#: The compilers a CMake build may use when the environment names none (gcc family).
DEFAULT_NAMES = ("c++", "g++", "cc", "gcc")
#: Variables that name the compilers (CMake's, and nvcc's host compiler).
COMPILER_VARIABLES = ("CXX", "CC", "CUDAHOSTCXX")
_PROBE_SOURCE = ("#include <cstddef>\n"
                 "template <typename T> T twice(T x) { return x + x; }\n"
                 "int probe(std::size_t n) { return static_cast<int>(twice(n)) * 3; }\n")
TIMEOUT_S = 120


@dataclass(frozen=True)
class Override:
    """A wrapper the servers may replace with ``real`` from ``archive``."""

    wrapper: str
    real: str
    archive: Path

    def line(self) -> str:
        return f"{self.wrapper} (a wrapper script) packaged as {self.real}"


@dataclass(frozen=True)
class Refused:
    """A wrapper that cannot go to the farm, and why (its steps stay local)."""

    wrapper: str
    reason: str

    def line(self) -> str:
        return f"{self.wrapper} stays local: {self.reason}"


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == _ELF
    except OSError:
        return False


def candidates(environ: Mapping[str, str], cache_values: Iterable[str | None] = ()
               ) -> list[Path]:
    """Compiler executables this build may run: the configured ones (CMake's cache), the
    environment's ``CXX``/``CC``/``CUDAHOSTCXX``, and the gcc names on PATH; each once, as an
    absolute path, symlinks resolved (a link to an ELF file is no wrapper)."""
    found: list[Path] = []
    path = environ.get("PATH", os.defpath)
    names = [v for v in cache_values if v]
    names += [environ[v].split()[0] for v in COMPILER_VARIABLES if environ.get(v, "").strip()]
    names += list(DEFAULT_NAMES)
    for name in names:
        where = name if os.sep in name else shutil.which(name, path=path)
        if where and Path(where).is_file():
            absolute = Path(where).absolute()
            if absolute not in found:
                found.append(absolute)
    return found


def _run(argv: list[str], cwd: Path, env: Mapping[str, str]) -> Completed:
    """A query with the module default of process/runner.py (no runner is at hand, and these
    probes run in exactly the environment ``env`` the build's compilers get)."""
    return query(argv, cwd=cwd, environ=env, timeout=TIMEOUT_S)


def real_driver(wrapper: Path, env: Mapping[str, str], work: Path) -> Path | None:
    """The compiler driver a wrapper script runs (gcc's ``COLLECT_GCC``), or None."""
    done = _run([str(wrapper), "-v", "-E", "-x", "c++", os.devnull, "-o", os.devnull], work, env)
    match = _COLLECT_RE.search(done.stderr)
    if done.returncode != 0 or not match:
        return None
    name = match.group(1).strip()
    where = name if os.sep in name else shutil.which(name, path=env.get("PATH", os.defpath))
    if not where:
        return None
    real = Path(where).resolve()
    return real if is_elf(real) and real != wrapper.resolve() else None


def _plan(driver: Path, work: Path, env: Mapping[str, str]) -> list[str]:
    done = _run([str(driver), "-###", "-O2", "-c", "probe.cpp", "-o", "probe.o"], work, env)
    lines = []
    for line in done.stderr.splitlines():
        if line.startswith(("COLLECT_GCC=", "COLLECT_LTO_WRAPPER=")):
            continue
        lines.append(_TEMP_RE.sub("<tmp>", line))
    return lines


def check_same(wrapper: Path, real: Path, env: Mapping[str, str], work: Path) -> str | None:
    """None when ``wrapper`` and ``real`` plan the same commands and make the same object;
    else the first difference, in words."""
    (work / "probe.cpp").write_text(_PROBE_SOURCE)
    ours, theirs = _plan(wrapper, work, env), _plan(real, work, env)
    if ours != theirs:
        diff = next(((a, b) for a, b in zip(ours, theirs, strict=False) if a != b),
                    (f"{len(ours)} lines", f"{len(theirs)} lines"))
        extra = sorted(set(diff[0].split()) - set(diff[1].split()))
        return ("it changes the compile: " + (" ".join(extra)[:200] if extra else
                                              f"{diff[0][:100]!r} instead of {diff[1][:100]!r}"))
    objects = []
    for name, driver in (("wrapper.o", wrapper), ("real.o", real)):
        done = _run([str(driver), "-O2", "-c", "probe.cpp", "-o", name], work, env)
        if done.returncode != 0:
            return f"the test compile failed ({(done.stderr.strip().splitlines() or ['?'])[-1]})"
        objects.append((work / name).read_bytes())
    return None if objects[0] == objects[1] else "it makes another object than " + str(real)


def archive_for(real: Path, directory: Path) -> Path:
    """Where the archive of ``real`` lives: named after the driver and its identity."""
    st = real.stat()
    key = hashlib.sha256(f"{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return directory / f"{real.name}-{key}.tar.gz"


def package(real: Path, archive: Path, *, sccache: Path, env: Mapping[str, str]) -> str | None:
    """Make ``archive`` with sccache's own packaging (once); None when done, else why not."""
    if archive.is_file():
        return None
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    done = _run([str(sccache), "--package-toolchain", str(real), str(partial)],
                archive.parent, env)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        return "sccache could not package it: " + ((done.stderr or done.stdout).strip()
                                                    .splitlines() or ["?"])[-1][:200]
    partial.replace(archive)
    return None


def overrides(compilers: Iterable[Path], *, directory: Path, sccache: Path,
              env: Mapping[str, str]) -> list[Override | Refused]:
    """For each wrapper among ``compilers`` (ELF files need nothing): an Override, or why not."""
    out: list[Override | Refused] = []
    with tempfile.TemporaryDirectory(prefix="vllm-dev-wrapper-") as tmp:
        work = Path(tmp)
        for wrapper in compilers:
            if is_elf(wrapper.resolve()):
                continue
            real = real_driver(wrapper, env, work)
            if real is None:
                out.append(Refused(str(wrapper), "it is a script, and its real compiler could "
                                   "not be told (gcc's COLLECT_GCC)"))
                continue
            problem = check_same(wrapper, real, env, work)
            if problem is None:
                archive = archive_for(real, directory)
                problem = package(real, archive, sccache=sccache, env=env)
                if problem is None:
                    out.append(Override(str(wrapper), str(real), archive))
                    continue
            out.append(Refused(str(wrapper), problem))
    return out
