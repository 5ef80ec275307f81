"""First build after a precompiled setup compiles only the targets a change since W reaches.

Each case: a git checkout of the test project committed at W, a wheel built from W that records W
as vLLM's wheels do (``vllm/_version.py``), an edit, ``setup`` from that wheel, then ``build``.
``.ninja_log`` says what was compiled; imports say which ``.so`` is the wheel's (``_C`` returns 1)
and which was rebuilt (``_C`` returns 42).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import minivllm_tools as mv
from conftest import BIN_DIR, Project, make_project

pytestmark = pytest.mark.flow

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}


def git(root: Path, *args: str) -> str:
    import os

    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True, env={**os.environ, **GIT_ENV}).stdout.strip()


def commit_all(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


def checkout_at_w(tmp_path: Path, *, record_commit: bool = True, torch: str | None = None
                  ) -> tuple[Project, Path, str]:
    """The project as a git checkout at W (.venv ignored, as vLLM's .gitignore does), and a
    precompiled wheel of W."""
    project = make_project(tmp_path, setup=False)
    (project.root / ".gitignore").write_text(
        ".venv/\ncmake-build-*/\n*.so\nCMakeUserPresets.json\n*.egg-info/\n")
    git(project.root, "init", "-q", "-b", "main")
    w = commit_all(project.root, "W")
    wheel = mv.build_precompiled_wheel(tmp_path / "wheel", python=str(project.python),
                                       cmake=str(BIN_DIR / "cmake"), source=project.root,
                                       commit=w if record_commit else None, torch=torch)
    return project, wheel, w


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, path
    path.write_text(text.replace(old, new))


def setup_and_build(project: Project, wheel: Path, *build_args: str
                    ) -> tuple[list[str], str]:
    project.run("setup", env={"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel)})
    assert project.value("_C") == 1  # the wheel's kernels are in place
    mark = project.ninja_log_mark()
    done = project.run("build", *build_args)
    ran = (project.build_dir / ".ninja_log").is_file()  # absent: ninja never ran a step
    objects = [o for o in project.ninja_log_entries(since=mark) if o.endswith(".o")] if ran else []
    return objects, done.stderr


def targets_of(objects: list[str]) -> set[str]:
    return {o.split("CMakeFiles/", 1)[1].split(".dir/", 1)[0] for o in objects}


def test_committed_kernel_edit_builds_only_its_target(tmp_path: Path) -> None:
    project, wheel, w = checkout_at_w(tmp_path)
    edit(project.root / "csrc/fast/module_fast.cpp", "PyLong_FromLong(7)", "PyLong_FromLong(8)")
    commit_all(project.root, "edit one kernel")
    objects, stderr = setup_and_build(project, wheel)
    assert objects == ["CMakeFiles/_fast_C.dir/csrc/fast/module_fast.cpp.o"], stderr
    assert "1 of 2 target(s) affected" in stderr and f"since {w[:12]}" in stderr, stderr
    assert "_fast_C: csrc/fast/module_fast.cpp" in stderr, stderr
    assert project.value("_fast_C") == 8  # rebuilt
    assert project.value("_C") == 1  # still the wheel's, and it imports beside the rebuilt one
    assert "verified: 2 extension(s) load" in stderr, stderr  # rebuilt _fast_C, prebuilt _C
    report = json.loads((project.build_dir / "vllm-dev-report.json").read_text())
    assert any("_fast_C: csrc/fast/module_fast.cpp" in line for line in report["selection"])

    # a later build keeps building _fast_C and adds what becomes affected
    edit(project.root / "csrc/ops/add.cpp", "a + b", "a + b + 0")
    mark = project.ninja_log_mark()
    done = project.run("build")
    objects = [o for o in project.ninja_log_entries(since=mark) if o.endswith(".o")]
    assert targets_of(objects) == {"_C"}, done.stderr  # _fast_C is up to date
    assert "_C: csrc/ops/add.cpp" in done.stderr and "_fast_C: csrc/fast" in done.stderr
    assert project.value("_C") == 42 and project.value("_fast_C") == 8
    # the same targets again: nothing compiled, and the selection is not said on every build
    mark = project.ninja_log_mark()
    done = project.run("build")
    assert not [o for o in project.ninja_log_entries(since=mark) if o.endswith(".o")]
    assert "target(s) affected" not in done.stderr, done.stderr


def test_uncommitted_edit_counts_too(tmp_path: Path) -> None:
    project, wheel, _ = checkout_at_w(tmp_path)
    edit(project.root / "csrc/fast/module_fast.cpp", "PyLong_FromLong(7)", "PyLong_FromLong(9)")
    objects, stderr = setup_and_build(project, wheel)
    assert objects == ["CMakeFiles/_fast_C.dir/csrc/fast/module_fast.cpp.o"], stderr
    assert project.value("_fast_C") == 9 and project.value("_C") == 1


def test_header_shared_by_two_targets_rebuilds_both(tmp_path: Path) -> None:
    project, wheel, _ = checkout_at_w(tmp_path)
    edit(project.root / "csrc/common/shared.h", "return 5;", "return 6;")
    objects, stderr = setup_and_build(project, wheel)
    assert targets_of(objects) == {"_C", "_fast_C"}, stderr
    assert "_fast_C: csrc/common/shared.h (included by csrc/fast/module_fast.cpp)" in stderr
    assert "_C: csrc/common/shared.h (included by csrc/module_C.cpp)" in stderr
    assert "header scan of" in stderr  # asked the compiler
    assert project.value("_C", "shared_value") == 6 and project.value("_fast_C",
                                                                      "shared_value") == 6


def test_header_used_by_none_builds_nothing(tmp_path: Path) -> None:
    project, wheel, _ = checkout_at_w(tmp_path)
    edit(project.root / "csrc/common/unused.h", "return 0;", "return 1;")
    objects, stderr = setup_and_build(project, wheel)
    assert objects == [], stderr
    assert "no target is affected by the 1 changed file(s)" in stderr, stderr
    assert project.value("_C") == 1 and project.value("_fast_C") == 7
    checked = project.run("verify").stdout  # verify checks the prebuilt extensions too
    assert "vllm._C: ok" in checked and "vllm._fast_C: ok" in checked, checked


def test_cmakelists_change_builds_everything(tmp_path: Path) -> None:
    project, wheel, _ = checkout_at_w(tmp_path)
    cmake_lists = project.root / "CMakeLists.txt"
    cmake_lists.write_text(cmake_lists.read_text() + "\n# a change that decides the build\n")
    objects, stderr = setup_and_build(project, wheel)
    assert targets_of(objects) == {"_C", "_fast_C"}, stderr
    assert "building every target: CMakeLists.txt changed since" in stderr, stderr
    assert project.value("_C") == 42


def test_unknown_w_builds_everything_and_says_why(tmp_path: Path) -> None:
    project, wheel, _ = checkout_at_w(tmp_path, record_commit=False)
    edit(project.root / "csrc/fast/module_fast.cpp", "PyLong_FromLong(7)", "PyLong_FromLong(8)")
    objects, stderr = setup_and_build(project, wheel)
    assert targets_of(objects) == {"_C", "_fast_C"}, stderr
    reason = [ln for ln in stderr.splitlines() if "building every target" in ln]
    assert len(reason) == 1 and "records no commit" in reason[0], stderr


def test_wheel_for_another_torch_builds_everything(tmp_path: Path) -> None:
    project, wheel, _ = checkout_at_w(tmp_path, torch="==9.9.9")
    edit(project.root / "csrc/fast/module_fast.cpp", "PyLong_FromLong(7)", "PyLong_FromLong(8)")
    objects, stderr = setup_and_build(project, wheel)
    assert targets_of(objects) == {"_C", "_fast_C"}, stderr
    assert "built for torch==9.9.9 and the target venv has no torch" in stderr, stderr


@pytest.mark.parametrize("flag", ["--all", "--since"])
def test_since_and_all(tmp_path: Path, flag: str) -> None:
    project, wheel, w = checkout_at_w(tmp_path, record_commit=False)
    edit(project.root / "csrc/fast/module_fast.cpp", "PyLong_FromLong(7)", "PyLong_FromLong(8)")
    args = ["--all"] if flag == "--all" else ["--since", "main"]
    objects, stderr = setup_and_build(project, wheel, *args)
    if flag == "--all":
        assert targets_of(objects) == {"_C", "_fast_C"}, stderr
    else:
        assert targets_of(objects) == {"_fast_C"}, stderr
        assert f"since {w[:12]} (--since main)" in stderr, stderr


def test_dry_lists_targets_and_bad_since_is_one_line(tmp_path: Path) -> None:
    project, wheel, _ = checkout_at_w(tmp_path)
    project.run("setup", env={"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel)})
    project.run("prime")
    edit(project.root / "csrc/common/shared.h", "return 5;", "return 6;")
    done = project.run("--dry", "build")
    assert "2 of 2 target(s) affected" in done.stderr, done.stderr
    assert not (project.build_dir / ".ninja_log").exists() or not project.ninja_log_entries()
    bad = project.run("build", "--since", "no-such-ref", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("vllm-dev: --since no-such-ref: "), \
        bad.stderr


def test_dry_run_reads_the_scan_record_builds_keep(tmp_path: Path) -> None:
    """A header no unit includes: every unit is scanned once. A dry run writes nothing (so a
    second dry run scans again, and says why); a build remembers, and the dry run after it
    scans nothing."""
    project, wheel, _ = checkout_at_w(tmp_path)
    project.run("setup", env={"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel)})
    project.run("prime")
    edit(project.root / "csrc/common/unused.h", "return 0;", "return 1;")
    record = project.build_dir / "vllm-dev-deps.json"
    dry = project.run("--dry", "build")
    assert "header scan of" in dry.stderr and "a dry run keeps no record" in dry.stderr, dry.stderr
    assert not record.exists()
    project.run("build")
    assert record.is_file()
    again = project.run("--dry", "build")
    assert "no target is affected" in again.stderr and "header scan of" not in again.stderr, \
        again.stderr
