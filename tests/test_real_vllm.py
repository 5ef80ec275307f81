"""vllm-dev on the real vLLM tree (CPU target), on the newest CMake 4.x and on 3.26.x.

Only the two real targets that need no oneDNN object are built (``spinloop``, ``fs_io_C``: one
file each); a full CPU build is about 47 minutes on 2 cores. Steps are grouped so that each CMake
version costs two configures (the first build, and the one after ``clean``): CI has 2 cores.
Enable with ``VLLM_DEV_REAL_VLLM`` (see tests/real_vllm.py); every step prints its wall time
(``pytest -s``) for the closing note.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import real_vllm as rv
from conftest import BIN_DIR, Project, clean_env

pytestmark = pytest.mark.real_vllm

TARGETS = ("spinloop", "fs_io_C")
TARGET_ARGS = [arg for t in TARGETS for arg in ("--target", t)]
NEW_SYMBOL = "vllm_dev_tier_probe"
# A real new function in fs_io.cpp, exported like the module's own entry point.
NEW_FUNCTION = f"""
extern "C" __attribute__((visibility("default"))) int {NEW_SYMBOL}(int x) {{
  return x * 3 + 1;
}}
"""


def _timed(label: str, func, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run and print the wall time, plus vllm-dev's own phase line for builds (closing note)."""
    start = time.monotonic()
    result = func(*args, **kwargs)
    phases = [ln for ln in getattr(result, "stderr", "").splitlines()
              if " in " in ln and ("configure" in ln or "elapsed" in ln)]
    print(f"[real-vllm] {label}: {time.monotonic() - start:.1f} s"
          + (f" | {phases[-1]}" if phases else ""), file=sys.stderr)
    return result


def _installed(project: Project) -> dict[str, Path]:
    """target -> its installed extension in the checkout's vllm/."""
    found: dict[str, Path] = {}
    for target in TARGETS:
        hits = sorted((project.root / "vllm").glob(f"{target}.*so"))
        assert len(hits) == 1, f"{target}: expected one installed .so, found {hits}"
        found[target] = hits[0]
    return found


def _objects(entries: list[str]) -> list[str]:
    return [e for e in entries if e.endswith(".o")]


def _dynamic_symbols(path: Path) -> str:
    nm = shutil.which("nm")
    assert nm, "nm (binutils) is needed to read the installed extension's symbols"
    return subprocess.run([nm, "-D", "--defined-only", str(path)], capture_output=True,
                          text=True, check=True).stdout


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


@pytest.mark.parametrize("cmake", sorted(rv.CMAKE_VERSIONS))
def test_real_tree_flow(real_vllm: Project, cmake: str) -> None:
    """doctor, prime, build of two targets, verify, a one-function edit, a no-op build, clean,
    and clean --installed, each asserting what could go wrong on the real tree."""
    p = real_vllm
    version = _timed(f"{cmake}: cmake into the target venv", rv.cmake_into, p.python,
                     rv.CMAKE_VERSIONS[cmake])
    print(f"[real-vllm] {cmake}: cmake {version}", file=sys.stderr)

    # doctor: nothing blocks a CPU build of this tree with this venv (the tree's own gcc check,
    # as adapted, is met; cmake, ninja, torch and the interpreter are there).
    doctor = _timed(f"{cmake}: doctor", p.run, "doctor", check=False)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "Traceback" not in doctor.stderr

    # prime: configures the release build dir of the real CMakeLists.txt (oneDNN from the
    # local sources, never cloned).
    _timed(f"{cmake}: prime (configure)", p.run, "prime")
    cache = (p.build_dir / "CMakeCache.txt").read_text()
    assert re.search(r"^VLLM_TARGET_DEVICE:\w+=cpu$", cache, re.M), "not a CPU configure"
    assert re.search(rf"^VLLM_PYTHON_EXECUTABLE:\w+={re.escape(str(p.python))}$", cache, re.M)
    onednn = p.env.get("FETCHCONTENT_SOURCE_DIR_ONEDNN")
    if onednn:  # vLLM took the local sources instead of cloning
        assert f"FETCHCONTENT_SOURCE_DIR_ONEDNN:PATH={onednn}\n" in cache

    # A checkout without W (no wheel recorded, no upstream branch): before compiling the whole
    # tree, the cost block with ninja's exact object count, an estimate, why, how to narrow.
    dry = _timed(f"{cmake}: --dry build (the cost block)", p.run, "--dry", "build")
    block = [ln for ln in dry.stderr.splitlines() if "this build compiles" in ln]
    assert len(block) == 1, dry.stderr
    ninja = subprocess.run([str(p.python.parent / "ninja"), "-C", str(p.build_dir), "-n", "all"],
                           capture_output=True, text=True, check=True).stdout
    objects = len(re.findall(r"^\[\d+/\d+\] Building \w+ object ", ninja, re.M))
    assert objects > 400, ninja[-2000:]  # oneDNN's 427 and vLLM's CPU kernels
    assert f"compiles {objects} object(s)" in block[0], (block, objects)
    assert re.search(r"for every target \(5: _C, _C_AVX2, _C_AVX512, fs_io_C, spinloop\): "
                     r"about \d+ to \d+ min at \d job\(s\)", block[0]), block[0]
    print(f"[real-vllm] {cmake}: {block[0]}", file=sys.stderr)
    assert "vllm-dev:   why: W (the commit of the prebuilt kernels) is unknown" in dry.stderr
    assert "vllm-dev:   to narrow it: `vllm-dev setup` with VLLM_PRECOMPILED_WHEEL_LOCATION" \
        in dry.stderr

    # build the two one-file targets: their two objects only (no oneDNN object), installed.
    mark = p.ninja_log_mark()
    _timed(f"{cmake}: build {' '.join(TARGETS)}", p.run, "build", *TARGET_ARGS)
    objects = _objects(p.ninja_log_entries(since=mark))
    assert sorted(Path(o).name for o in objects) == ["fs_io.cpp.o", "spinloop.cpp.o"], objects
    installed = _installed(p)

    # verify: the installed extensions load in the target interpreter (after torch), and every
    # extension of the checkout is listed with its state.
    verified = _timed(f"{cmake}: verify", p.run, "verify").stdout.splitlines()
    for target in TARGETS:
        assert f"vllm.{target}: ok (built here and installed)" in verified, verified
    for target in ("_C", "_C_AVX2", "_C_AVX512"):
        assert f"{target}: not built and not installed" in verified, verified
    assert verified[-1] == ("verify ok: 5 extension(s): 2 built here and installed, 3 not built "
                            "and not installed; 2 of 2 load"), verified

    # One new function in csrc/fs_io.cpp: exactly one object recompiled, the new symbol in the
    # INSTALLED .so (what the user imports), not only in the build dir's.
    source = p.root / "csrc" / "fs_io.cpp"
    source.write_text(source.read_text() + NEW_FUNCTION)
    assert NEW_SYMBOL not in _dynamic_symbols(installed["fs_io_C"])
    mark = p.ninja_log_mark()
    _timed(f"{cmake}: one-function rebuild", p.run, "build", *TARGET_ARGS)
    objects = _objects(p.ninja_log_entries(since=mark))
    assert [Path(o).name for o in objects] == ["fs_io.cpp.o"], objects
    installed = _installed(p)
    assert NEW_SYMBOL in _dynamic_symbols(installed["fs_io_C"])

    # No-op build: nothing compiled, nothing linked, no installed file rewritten.
    before = {t: _stat(f) for t, f in installed.items()}
    mark = p.ninja_log_mark()
    noop = _timed(f"{cmake}: no-op build", p.run, "build", *TARGET_ARGS)
    assert p.ninja_log_entries(since=mark) == [], noop.stdout + noop.stderr
    assert {t: _stat(f) for t, f in _installed(p).items()} == before
    assert "replaced stale" not in noop.stdout + noop.stderr

    # clean: the build dir goes, what was installed stays (the checkout still imports).
    p.run("clean")
    assert not p.build_dir.exists()
    assert {t: f.read_bytes() for t, f in _installed(p).items()}

    # clean --installed, after a build from the clean state (configure again, ccache warm):
    # the installed files go; a prebuilt .so (as a precompiled wheel leaves one) and the user's
    # own files in vllm/ stay byte for byte.
    _timed(f"{cmake}: build after clean (configure + warm ccache)", p.run, "build",
           *TARGET_ARGS)
    installed = _installed(p)
    prebuilt = p.root / "vllm" / "_C.abi3.so"
    prebuilt.write_bytes(b"\x7fELF stands in for a precompiled wheel's _C")
    tracked = p.root / "vllm" / "__init__.py"
    tracked_bytes = tracked.read_bytes()
    p.run("clean", "--installed")
    assert not p.build_dir.exists()
    assert not [f for f in installed.values() if f.exists()], installed
    assert prebuilt.read_bytes() == b"\x7fELF stands in for a precompiled wheel's _C"
    assert tracked.read_bytes() == tracked_bytes
    status = subprocess.run(["git", "status", "--porcelain"], cwd=p.root, capture_output=True,
                            text=True, check=True).stdout
    assert status.splitlines() == [" M csrc/fs_io.cpp"], status


def test_real_tree_nox_release_session(real_vllm: Project, tmp_path: Path) -> None:
    """``nox -s release`` on the real tree, limited to two targets, with the tier's venv as the
    target interpreter (``--python``: setup is skipped, the venv is the user's own)."""
    p = real_vllm
    rv.cmake_into(p.python, rv.CMAKE_VERSIONS["cmake4"])
    noxfile = Path(__file__).resolve().parent.parent / "noxfile.py"
    env = clean_env({**p.env, "NOX_DEFAULT_VENV_BACKEND": "uv"})
    env.pop("VLLM_DEV_PYTHON", None)
    argv = [str(BIN_DIR / "nox"), "-f", str(noxfile), "-s", "release", "--envdir",
            str(tmp_path / "nox-envs"), "--", "--source", str(p.root), "--python",
            str(p.python), *TARGET_ARGS]
    start = time.monotonic()
    done = subprocess.run(argv, cwd=p.root, env=env, capture_output=True, text=True,
                          timeout=1200, stdin=subprocess.DEVNULL, check=False)
    print(f"[real-vllm] nox -s release (2 targets): {time.monotonic() - start:.1f} s",
          file=sys.stderr)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    build_dir = p.root / "cmake-build-nox-release"
    objects = _objects(p.ninja_log_entries(build_dir))
    assert sorted(Path(o).name for o in objects) == ["fs_io.cpp.o", "spinloop.cpp.o"], objects
    _installed(p)
    assert "import check: vllm.fs_io_C, vllm.spinloop load from" in out, out
    assert "setup: skipped" in out, out
    assert not list(build_dir.glob("**/dnnl*.o")), "a oneDNN object was built"
    assert os.path.isfile(p.python)


def test_real_tree_remembers_and_never_throws_the_cache_away(real_vllm: Project,
                                                             tmp_path: Path) -> None:
    """Issue 19 on the real tree (CPU): a define and --python given once stay; -U drops the
    define on the kept cache (objects recompiled: printed, goal 0); a name CMake derives entries
    from needs a fresh cache (objects recompiled: printed); the remote cache given, changed and
    dropped, and a second install of vllm-dev, never touch build.ninja."""
    p = real_vllm
    p.env.pop("VLLM_DEV_PYTHON")  # --python is given once, below, and then remembered
    configure = re.compile(r"^vllm-dev: \$ .*cmake --preset ", re.M)
    _timed("remember: prime --python -D", p.run, "prime", "--python", str(p.python), "-D",
           "VLLM_DEV_PROBE=1")
    mark = p.ninja_log_mark()
    built = _timed("remember: plain build", p.run, "build", *TARGET_ARGS)
    assert not configure.search(built.stderr), built.stderr
    assert "VLLM_DEV_PROBE:UNINITIALIZED=1" in (p.build_dir / "CMakeCache.txt").read_text()
    assert sorted(Path(o).name for o in _objects(p.ninja_log_entries(since=mark))) == [
        "fs_io.cpp.o", "spinloop.cpp.o"]
    for command in (("verify",), ("install", *[a for t in TARGETS for a in ("--component", t)])):
        done = p.run(*command)
        assert f"--python {p.python}" in done.stderr, done.stderr  # named as remembered
    settings = json.loads(p.run("settings", "--json").stdout)
    python = next(r for r in settings["settings"] if r["name"] == "python")
    assert python["value"] == str(p.python) and python["source"].startswith("given to prime, ")

    ninja = p.build_dir / "build.ninja"
    mark = p.ninja_log_mark()
    dropped = _timed("remember: build -U VLLM_DEV_PROBE", p.run, "build", "-U",
                     "VLLM_DEV_PROBE", *TARGET_ARGS)
    assert re.search(r"cmake --preset release -U VLLM_DEV_PROBE$", dropped.stderr, re.M)
    assert "--fresh" not in dropped.stderr
    assert "VLLM_DEV_PROBE" not in (p.build_dir / "CMakeCache.txt").read_text()
    recompiled = _objects(p.ninja_log_entries(since=mark))
    print(f"[real-vllm] objects recompiled after -U of a define no source reads: "
          f"{len(recompiled)} {recompiled}", file=sys.stderr)
    assert recompiled == []

    p.run("prime", "-D", "VLLM_DEV_PROBE_DIR=/tmp")
    mark = p.ninja_log_mark()
    fresh = _timed("remember: build -U VLLM_DEV_PROBE_DIR (fresh)", p.run, "build", "-U",
                   "VLLM_DEV_PROBE_DIR", *TARGET_ARGS)
    line = next(ln for ln in fresh.stderr.splitlines() if "reconfiguring" in ln)
    assert line.startswith("vllm-dev: reconfiguring release with a fresh CMake cache "
                           "(VLLM_DEV_PROBE_DIR no longer set, and CMake would keep what it "
                           "derived from it; the build dir holds 2 built object(s)"), line
    assert " --fresh" in fresh.stderr
    recompiled = _objects(p.ninja_log_entries(since=mark))
    print(f"[real-vllm] objects recompiled after a fresh configure: {len(recompiled)} "
          f"{recompiled}", file=sys.stderr)

    before = _stat(ninja), ninja.read_bytes()
    for args in (("--cache-remote", f"file://{tmp_path / 'remote-a'}"),
                 ("--cache-remote", f"file://{tmp_path / 'remote-b'}", "--cache-remote-mode",
                  "read-write"), ("--cache", "none")):
        done = p.run("build", *args, *TARGET_ARGS)
        assert not configure.search(done.stderr), (args, done.stderr)
        assert (_stat(ninja), ninja.read_bytes()) == before, args
    p.run("settings", "--forget", "cache")
    done = p.run("build", *TARGET_ARGS)
    assert not configure.search(done.stderr) and (_stat(ninja), ninja.read_bytes()) == before

    # A second install of vllm-dev (its own ccache, its own path): no configure either way.
    other = _second_install(tmp_path / "other-install")
    env = clean_env({**p.env, "PATH": f"{other.parent}{os.pathsep}{os.environ['PATH']}"})
    done = subprocess.run([str(other.parent / "vllm-dev"), "build", *TARGET_ARGS],
                          cwd=p.root, env=env, text=True, capture_output=True, timeout=600,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0 and not configure.search(done.stderr), done.stderr
    done = p.run("build", *TARGET_ARGS)
    assert not configure.search(done.stderr) and (_stat(ninja), ninja.read_bytes()) == before


def _second_install(venv: Path) -> Path:
    """Another install of this vllm-dev (an editable one, in a venv of its own)."""
    import minivllm_tools as mv

    python = mv.make_venv(venv)
    subprocess.run([mv.find_uv(), "pip", "install", "-q", "-p", str(python), "-e",
                    str(Path(__file__).resolve().parents[1])], check=True, env=clean_env())
    return python
