"""Install and the post-build check on the real test project, with real cmake, ninja and ccache.

* What reaches vllm/ is what ``cmake --install`` produced (RUNPATH rewritten), never the build
  dir's file; no "replaced" line unless an installed file really was changed behind our back.
* A plain shared library installed beside the extensions is loaded, never imported as a module.
* A one-file change installs exactly one file; the other extensions keep inode and mtime.
* The check after a build loads the extension files without running ``vllm/__init__.py``, and
  catches an ``undefined symbol``.
* Across the CMake versions users have (3.26 ... 4.x: with vLLM's ``CMAKE_INSTALL_LOCAL_ONLY``
  line they write different manifests, or none), build, install, verify and clean --installed
  work the same: vllm-dev keeps its own record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import minivllm_tools as mv
from conftest import Project

# Oldest that vLLM accepts (3.26.0 writes a bad suffix), the last ones writing
# install_manifest*.txt, writing none, writing install_local_manifest.txt, and the newest.
CMAKE_VERSIONS = ["3.26.4", "3.29.6", "3.30.9", "3.31.6", "4.4.5"]


def enable_shared_helper(project: Project) -> None:
    """Turn on the _helper_C extension (links libminivllm_helper.so of the same build tree)."""
    cmakelists = project.root / "CMakeLists.txt"
    text = cmakelists.read_text()
    marker = "installed beside it\" OFF)"
    assert marker in text
    cmakelists.write_text(text.replace(marker, "installed beside it\" ON)"))


def runpath(path: Path) -> str:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    lines = [ln for ln in out.splitlines() if "RUNPATH" in ln or "RPATH" in ln]
    return "\n".join(lines)


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))



def call_an_undefined_function(project: Project) -> None:
    """A realistic mistake: a kernel calls a function that is declared but defined nowhere. A
    MODULE library links anyway (undefined symbols are allowed), and fails at load."""
    edit(project.root / "csrc" / "fast" / "module_fast.cpp",
         "static PyObject* known_value(PyObject*, PyObject*) { return PyLong_FromLong(7); }",
         'extern "C" long minivllm_not_defined_anywhere(void);\n'
         "static PyObject* known_value(PyObject*, PyObject*) {\n"
         "  return PyLong_FromLong(minivllm_not_defined_anywhere());\n}")

def test_installed_file_is_the_install_output_and_the_library_is_not_a_module(
        project: Project) -> None:
    enable_shared_helper(project)
    done = project.run("build", "--plain")
    installed = project.root / "vllm" / "_helper_C.abi3.so"
    built = project.build_dir / "_helper_C.abi3.so"
    assert str(project.build_dir) in runpath(built)  # the build tree's RUNPATH ...
    assert runpath(installed).endswith("[$ORIGIN]"), runpath(installed)  # ... is not installed
    assert str(project.build_dir) not in installed.read_bytes().decode("latin-1")
    assert (project.root / "vllm" / "libminivllm_helper.so").is_file()
    assert "replaced" not in done.stderr
    assert "verified: 3 extension(s) load in" in done.stderr, done.stderr
    assert "libminivllm_helper" not in done.stderr.split("verified:")[1].splitlines()[0]
    assert project.value("_helper_C") == 99
    # vllm-dev's own record, whatever CMake wrote as manifests
    record = json.loads((project.build_dir / "vllm-dev-install.json").read_text())
    assert sorted(f["path"] for f in record["components"]["_helper_C"]["files"]) == [
        "vllm/_helper_C.abi3.so", "vllm/libminivllm_helper.so"]

    listed = json.loads(project.run("verify", "--json").stdout)
    kinds = {Path(i["path"]).name: (i["kind"], i["ok"]) for i in listed["imports"]}
    assert kinds == {"_C.abi3.so": ("module", True), "_fast_C.abi3.so": ("module", True),
                     "_helper_C.abi3.so": ("module", True),
                     "libminivllm_helper.so": ("library", True)}

    again = project.run("build", "--plain")  # no-op: nothing staged, nothing rewritten
    assert "install skipped" in again.stderr and "replaced" not in again.stderr
    assert runpath(installed).endswith("[$ORIGIN]")


def test_one_file_change_installs_exactly_one_file(project: Project) -> None:
    enable_shared_helper(project)
    project.run("build", "--plain")
    vllm = project.root / "vllm"
    names = ["_C.abi3.so", "_fast_C.abi3.so", "_helper_C.abi3.so", "libminivllm_helper.so"]
    before = {n: stamp(vllm / n) for n in names}
    edit(project.root / "csrc" / "fast" / "module_fast.cpp", "FromLong(7)", "FromLong(8)")
    done = project.run("build", "--plain")
    assert f"installed 1 file(s) into {vllm}: _fast_C.abi3.so" in done.stderr, done.stderr
    assert "not rebuilt, left alone: _C, _helper_C" in done.stderr
    assert "verified: 1 extension(s) load in" in done.stderr and "(vllm._fast_C)" in done.stderr
    after = {n: stamp(vllm / n) for n in names}
    assert after["_fast_C.abi3.so"] != before["_fast_C.abi3.so"]
    for name in ("_C.abi3.so", "_helper_C.abi3.so", "libminivllm_helper.so"):
        assert after[name] == before[name], name  # not rewritten: same inode, same mtime
    assert project.value("_fast_C") == 8

    # Recompiled to the same bytes (the source touched, not changed): staged, hashed, left alone.
    source = project.root / "csrc" / "fast" / "module_fast.cpp"
    os.utime(source)
    mark = project.ninja_log_mark()
    same = project.run("build", "--plain")
    assert "_fast_C.abi3.so" in project.ninja_log_entries(since=mark)  # it was relinked
    assert "installed 0 file(s)" in same.stderr and "same bytes, left alone: _fast_C.abi3.so" \
        in same.stderr, same.stderr
    assert stamp(vllm / "_fast_C.abi3.so") == after["_fast_C.abi3.so"]
    assert "verify skipped" in same.stderr  # the same file loaded before


def test_check_catches_undefined_symbol_without_running_vllm_init(project: Project) -> None:
    # The check loads extension files only: a vllm/__init__.py that cannot run is not its concern
    # (vLLM's pulls in its whole runtime).
    init = project.root / "vllm" / "__init__.py"
    init.write_text(init.read_text() + "\nraise RuntimeError('vllm/__init__.py ran')\n")
    done = project.run("build", "--plain")
    assert "verified: 2 extension(s) load in" in done.stderr

    # A realistic mistake: a kernel calls a function that is declared but defined nowhere. A
    # MODULE library links anyway (undefined symbols are allowed), and fails at load.
    source = project.root / "csrc" / "fast" / "module_fast.cpp"
    good = source.read_text()
    call_an_undefined_function(project)
    broken = project.run("build", "--plain", check=False)
    assert broken.returncode != 0
    assert "vllm-dev: vllm._fast_C does not load in" in broken.stderr
    assert "undefined symbol: minivllm_not_defined_anywhere" in broken.stderr
    assert "Traceback" not in broken.stderr
    report = json.loads((project.build_dir / "vllm-dev-report.json").read_text())
    assert "verify" in report["phases"]  # the check's time is in the report

    # Not checked again is not "fine": the next build checks it again, and fails again.
    still = project.run("build", "--plain", check=False)
    assert still.returncode != 0 and "undefined symbol" in still.stderr

    source.write_text(good)
    fixed = project.run("build", "--plain")
    assert "verified: 1 extension(s) load in" in fixed.stderr


def cmake_into(python: Path, version: str) -> None:
    subprocess.run([mv.find_uv(), "pip", "install", "--quiet", "--python", str(python),
                    f"cmake=={version}"], check=True)


@pytest.mark.parametrize("version", CMAKE_VERSIONS)
def test_cmake_matrix_build_install_verify_clean(project: Project, version: str) -> None:
    cmake_into(project.python, version)
    enable_shared_helper(project)
    done = project.run("build", "--plain")
    cache = (project.build_dir / "CMakeCache.txt").read_text()
    parts = [line.split("=", 1)[1] for line in cache.splitlines() if line.startswith(
        ("CMAKE_CACHE_MAJOR_VERSION:", "CMAKE_CACHE_MINOR_VERSION:", "CMAKE_CACHE_PATCH_VERSION:"))]
    assert ".".join(parts) == version  # configured by the cmake under test
    manifests = sorted(p.name for p in project.build_dir.glob("install*manifest*.txt"))
    print(f"cmake {version}: manifests in the build dir: {manifests or 'none'}")
    assert project.value("_C") == 42 and project.value("_helper_C") == 99
    assert runpath(project.root / "vllm" / "_helper_C.abi3.so").endswith("[$ORIGIN]")
    assert "replaced" not in done.stderr
    verified = project.run("verify")
    assert "vllm._helper_C: ok" in verified.stdout and "FAILED" not in verified.stdout
    edit(project.root / "csrc" / "fast" / "module_fast.cpp", "FromLong(7)", "FromLong(8)")
    again = project.run("build", "--plain")
    assert "installed 1 file(s)" in again.stderr and project.value("_fast_C") == 8
    mine = project.root / "vllm" / "mine.so"
    mine.write_bytes(b"user file")
    project.run("clean", "--installed")
    left = sorted(p.name for p in (project.root / "vllm").iterdir() if p.suffix == ".so")
    assert left == ["mine.so"]


def torch_into(python: Path) -> None:
    """The CPU torch wheel into the target venv, from the places pip is configured to look
    (this image: find-links /opt/wheels); uv links it from its cache after the first time."""
    links = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                           capture_output=True, text=True).stdout.split()
    args = [a for link in links for a in ("--find-links", link)]
    subprocess.run([mv.find_uv(), "pip", "install", "--quiet", "--python", str(python), *args,
                    "torch==2.13.0"], check=True)


def test_check_with_torch_loads_its_libraries_and_catches_undefined_symbol(
        project: Project) -> None:
    """With torch in the target venv the check loads torch's shared libraries (not its Python
    side); an undefined symbol is still caught, and confirmed by a full `import torch`."""
    torch_into(project.python)
    done = project.run("build", "--plain")
    assert "verified: 2 extension(s) load in" in done.stderr
    # A plain run of the checker shows which way it loaded torch.
    from vllm_dev.steps.verify import _CHECKER

    ext = str(project.root / "vllm" / "_C.abi3.so")
    items = json.dumps([["vllm._C", ext]])
    out = subprocess.run([str(project.python), "-c", _CHECKER, items, "light"], text=True,
                         capture_output=True, check=True).stdout
    answer = json.loads(out.split("VLLM_DEV_VERIFY ", 1)[1])
    assert answer["mode"] == "light" and answer["files"][ext]["error"] is None
    probe = subprocess.run([str(project.python), "-c", _CHECKER.replace(
        'print("VLLM_DEV_VERIFY', 'print("TORCH_IMPORTED", "torch" in sys.modules)\nprint('
        '"VLLM_DEV_VERIFY'), items, "light"], text=True, capture_output=True, check=True).stdout
    assert "TORCH_IMPORTED False" in probe  # torch's Python side was never imported

    call_an_undefined_function(project)
    broken = project.run("build", "--plain", check=False)
    assert broken.returncode != 0
    assert "undefined symbol: minivllm_not_defined_anywhere" in broken.stderr
