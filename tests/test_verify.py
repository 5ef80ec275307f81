"""verify: imports in the target interpreter, stale prebuilt .so files, installs older than the
build, and `build` ending with verify (on the real test project and its precompiled wheel)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from vllm_dev.steps.verify import module_name

import minivllm_tools as mv
from conftest import BIN_DIR, Project, make_project


@pytest.mark.unit
def test_module_name(tmp_path: Path) -> None:
    assert module_name(tmp_path / "vllm/_C.abi3.so", root=tmp_path) == "vllm._C"
    assert module_name(tmp_path / "vllm/fa/_fa2_C.cpython-312-x86_64-linux-gnu.so",
                       root=tmp_path) == "vllm.fa._fa2_C"


@pytest.mark.flow
def test_build_verifies_and_finds_the_wheels_leftover(tmp_path: Path) -> None:
    project = make_project(tmp_path, setup=False)
    wheel = mv.build_precompiled_wheel(tmp_path / "wheel", python=str(project.python),
                                       cmake=str(BIN_DIR / "cmake"))
    project.run("setup", env={"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel)})
    legacy = project.root / "vllm" / "_legacy_C.abi3.so"
    assert legacy.is_file()  # left by the precompiled wheel; this build does not make it
    done = project.run("build", "--cache", "none")
    assert "verified: 2 extension(s) load in" in done.stderr
    assert "stale vllm/_legacy_C.abi3.so: this build does not produce it" in done.stderr

    listed = project.run("verify", "--json")
    data = json.loads(listed.stdout)
    assert sorted(i["module"] for i in data["imports"]) == ["vllm._C", "vllm._fast_C"]
    assert all(i["ok"] for i in data["imports"])
    assert data["stale"] == [str(legacy)]

    removed = project.run("verify", "--remove-stale")
    assert "vllm._C: ok" in removed.stdout and "stale vllm/_legacy_C.abi3.so: moved to" in \
        removed.stdout
    assert not legacy.exists()
    kept = list((project.root / ".vllm-dev" / "stale").rglob("_legacy_C.abi3.so"))
    assert len(kept) == 1  # moved aside, never deleted
    assert "stale" not in project.run("verify").stdout


def test_broken_extension_fails_verify_and_build(project: Project) -> None:
    project.run("build", "--cache", "none")
    installed = project.root / "vllm" / "_fast_C.abi3.so"
    stat = installed.stat()
    installed.write_bytes(b"not an ELF file")
    os.utime(installed, (stat.st_atime, stat.st_mtime))
    done = project.run("verify", check=False)
    assert done.returncode != 0
    assert "vllm._fast_C: FAILED: ImportError" in done.stdout
    assert "vllm-dev: vllm._fast_C does not load in" in done.stderr
    assert "Traceback" not in done.stderr
    assert "vllm._C: ok" in done.stdout
    # A really stale installed file (changed behind vllm-dev's back, nothing rebuilt): the next
    # build puts the install's file back and says so once; after a failed verify it checks all.
    rebuilt = project.run("build", "--cache", "none")
    assert "replaced vllm/_fast_C.abi3.so: it had changed since vllm-dev installed it" \
        in rebuilt.stderr
    assert "replaced vllm/_C" not in rebuilt.stderr
    assert "verified: 2 extension(s) load in" in rebuilt.stderr
    assert project.value("_fast_C") == 7


def test_build_output_newer_than_the_install_is_reported(project: Project) -> None:
    project.run("build", "--cache", "none", "--no-verify")
    assert "is not what the build dir would install" not in project.run("verify").stdout
    source = project.root / "csrc" / "fast" / "module_fast.cpp"
    source.write_text(source.read_text().replace("FromLong(7)", "FromLong(8)"))
    project.run("build", "--cache", "none", "--no-install")
    done = project.run("verify", check=False)  # not ok: an extension built here is not installed
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "vllm/_fast_C.abi3.so is not what the build dir would install" in done.stdout
    assert "vllm/_C.abi3.so is not" not in done.stdout
    assert ("vllm._fast_C: ok (built here, not installed (rebuilt or changed since its install): "
            "run `vllm-dev install`)") in done.stdout, done.stdout
    assert "vllm._C: ok (built here and installed)" in done.stdout, done.stdout
    assert done.stdout.splitlines()[-1].startswith(
        "verify NOT ok: 2 extension(s): 1 built here and installed, 1 built here, not "
        "installed; 2 of 2 load"), done.stdout
    assert done.stderr.splitlines()[-1] == ("vllm-dev: _fast_C built here but not installed: run "
                                            "`vllm-dev install` (or `vllm-dev build`)")
    project.run("install")
    assert project.run("verify").stdout.splitlines()[-1].startswith("verify ok: 2 extension(s)")


def test_no_verify_skips_it(project: Project) -> None:
    done = project.run("build", "--cache", "none", "--no-verify")
    assert "verified:" not in done.stderr


def test_verify_before_any_build_is_one_line(project: Project) -> None:
    shutil.rmtree(project.build_dir, ignore_errors=True)
    done = project.run("verify", check=False)
    assert done.returncode != 0 and "run `vllm-dev build` first" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.flow
def test_verify_lists_every_extension_with_its_state(tmp_path: Path) -> None:
    """Prebuilt kernels from a wheel at W, one kernel edited since W: verify says which is which
    (exit 0: nothing built here is left uninstalled); --strict fails on the changed prebuilt
    one and the wheel's leftover; after a build the edited one is built here and installed."""
    from test_affected import checkout_at_w, edit

    project, wheel, w = checkout_at_w(tmp_path)
    project.run("setup", env={"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel)})
    project.run("prime")
    edit(project.root / "csrc/fast/module_fast.cpp", "PyLong_FromLong(7)", "PyLong_FromLong(8)")
    done = project.run("verify")
    lines = done.stdout.splitlines()
    assert f"vllm._C: ok (prebuilt from the wheel at W {w[:12]})" in lines, done.stdout
    assert (f"vllm._fast_C: ok (prebuilt at W {w[:12]}, but its sources changed since W "
            "(csrc/fast/module_fast.cpp): rebuild it with `vllm-dev build`)") in lines, done.stdout
    assert lines[-1] == ("verify ok: 2 extension(s): 1 prebuilt from the wheel at W, 1 prebuilt "
                         "at W, but its sources changed since W; 2 of 2 load; 1 stale file(s)")
    strict = project.run("verify", "--strict", check=False)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert strict.stderr.splitlines()[-1] == (
        "vllm-dev: --strict: 1 stale file(s) (`vllm-dev verify --remove-stale`) and prebuilt "
        "_fast_C with sources changed since W (`vllm-dev build`)"), strict.stderr
    project.run("build")
    after = project.run("verify").stdout.splitlines()
    assert "vllm._fast_C: ok (built here and installed)" in after, after
    assert f"vllm._C: ok (prebuilt from the wheel at W {w[:12]})" in after, after
