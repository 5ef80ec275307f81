"""Presets as they meet real checkouts: --define, the user's templates beside the bundled ones, a
removed cache variable, a failed configure, the job count at build time, shared FetchContent
sources, compile_commands.json for clangd, the presets file's mode. Real cmake and ninja on the
test project throughout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Project

CONFIGURE_RE = re.compile(r"^vllm-dev: \$ .*cmake --preset ", re.MULTILINE)


def cache_lines(build_dir: Path, name: str) -> list[str]:
    text = (build_dir / "CMakeCache.txt").read_text()
    return [ln for ln in text.splitlines() if ln.startswith(name + ":")]


def test_define_and_a_removed_cache_variable_is_undefined(project: Project,
                                                          tmp_path: Path) -> None:
    # The case: a template sets MINIVLLM_HEAVY, then no longer does. The cache variable
    # is removed with `cmake -U` on the kept cache (issue 19: never --fresh for that), and the
    # remembered --define stays until -U drops it.
    templates = tmp_path / "templates"
    templates.mkdir()
    release = templates / "release.json"
    release.write_text(json.dumps({"buildType": "Release", "cacheVariables": {
        "MINIVLLM_HEAVY": {"type": "BOOL", "value": "ON"}}}))
    env = {"VLLM_DEV_PRESETS_DIR": str(templates)}
    project.run("prime", "--define", "MINIVLLM_HEAVY_TUS=4", env=env)
    assert cache_lines(project.build_dir, "MINIVLLM_HEAVY") == ["MINIVLLM_HEAVY:BOOL=ON"]
    assert cache_lines(project.build_dir, "MINIVLLM_HEAVY_TUS")[0].endswith("=4")
    release.write_text(json.dumps({"buildType": "Release"}))
    done = project.run("prime", env=env)
    assert ("reconfiguring release: MINIVLLM_HEAVY: ON (BOOL) -> unset (cmake -U MINIVLLM_HEAVY, "
            "the cache is kept)") in done.stderr
    assert "--fresh" not in done.stderr
    assert cache_lines(project.build_dir, "MINIVLLM_HEAVY") == ["MINIVLLM_HEAVY:BOOL=OFF"]
    assert cache_lines(project.build_dir, "MINIVLLM_HEAVY_TUS")[0].endswith("=4")  # remembered
    done = project.run("prime", "-U", "MINIVLLM_HEAVY_TUS", env=env)
    assert "cmake --preset release -U MINIVLLM_HEAVY_TUS" in done.stderr
    assert cache_lines(project.build_dir, "MINIVLLM_HEAVY_TUS")[0].endswith("=32")
    # --define NAME:TYPE=VALUE, from the environment too; a bad one is one line
    done = project.run("prime", env={"VLLM_DEV_DEFINES": "MINIVLLM_PRECOMPILED:BOOL=ON"})
    assert cache_lines(project.build_dir, "MINIVLLM_PRECOMPILED") == [
        "MINIVLLM_PRECOMPILED:BOOL=ON"]
    bad = project.run("prime", "--define", "NO_EQUALS_SIGN", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith(
        "vllm-dev: --define: 'NO_EQUALS_SIGN' is not NAME=VALUE")


def test_user_templates_add_to_the_bundled_ones(project: Project, tmp_path: Path) -> None:
    local = project.root / ".vllm-dev" / "presets"  # for a `uv tool install` user
    local.mkdir(parents=True)
    (local / "relwithdebinfo.json").write_text(json.dumps(
        {"displayName": "RelWithDebInfo", "buildType": "RelWithDebInfo"}))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "broken.json").write_text('{"buildType": "Debug",,}\n')
    (mine / "asan.json").write_text(json.dumps(
        {"buildType": "Debug", "cacheVariables": {"CMAKE_CXX_FLAGS": "-fsanitize=address"}}))
    env = {"VLLM_DEV_PRESETS_DIR": str(mine)}
    done = project.run("prime", "--preset", "relwithdebinfo", env=env)
    assert done.stderr.count("preset template 'broken' skipped") == 1
    assert "broken.json:1:" in done.stderr
    document = json.loads((project.root / "CMakeUserPresets.json").read_text())
    names = [p["name"] for p in document["configurePresets"]]
    assert names == ["vllm-dev-base", "asan", "debug", "release", "relwithdebinfo"]
    assert cache_lines(project.root / "cmake-build-relwithdebinfo", "CMAKE_BUILD_TYPE") == [
        "CMAKE_BUILD_TYPE:STRING=RelWithDebInfo"]
    project.run("prime", env=env)  # release still works beside a broken template
    used = project.run("prime", "--preset", "broken", env=env, check=False)
    assert used.returncode != 0 and "Traceback" not in used.stderr
    assert re.search(r"^vllm-dev: \S+/broken\.json:1:\d+: ", used.stderr, re.MULTILINE)


def test_presets_file_follows_the_umask(project: Project) -> None:
    old = os.umask(0o027)
    try:
        project.run("prime")
    finally:
        os.umask(old)
    assert (project.root / "CMakeUserPresets.json").stat().st_mode & 0o777 == 0o640


def _concurrency(log_dir: Path) -> int:
    """The most compiles that ran at once, from the launcher's start/end stamps."""
    events = []
    for start in log_dir.glob("*.start"):
        events.append((float(start.read_text()), 1))
        events.append((float(start.with_suffix(".end").read_text()), -1))
    running = most = 0
    for _, step in sorted(events):
        running += step
        most = max(most, running)
    return most


def test_job_count_reaches_the_build_without_a_reconfigure(project: Project,
                                                           tmp_path: Path) -> None:
    log_dir = tmp_path / "compiles"
    log_dir.mkdir()
    launcher = tmp_path / "slow-launcher"
    # Each compile sleeps 2 s first: how many overlap shows ninja's real parallelism, whatever
    # the load of the machine's cores.
    launcher.write_text(f"#!/bin/sh\nstamp={log_dir}/$$\ndate +%s.%N > $stamp.start\nsleep 2\n"
                        '"$@"\nrc=$?\ndate +%s.%N > $stamp.end\nexit $rc\n')
    launcher.chmod(0o755)
    common = ("--cache", "none", "--define", f"CMAKE_CXX_COMPILER_LAUNCHER={launcher}")
    project.run("prime", "--jobs", "2", *common)
    done = project.run("build", "--jobs", "3", "--target", "_C", "--target", "_fast_C",
                       "--no-install", *common)
    assert not CONFIGURE_RE.search(done.stderr), done.stderr
    assert "reconfiguring" not in done.stderr
    assert re.search(r"cmake --build --preset release --target _C _fast_C --parallel 3$",
                     done.stderr, re.MULTILINE)
    assert len(list(log_dir.glob("*.end"))) == 4  # _C's three objects and _fast_C's one
    assert _concurrency(log_dir) == 3
    # a change of what CMake caches still configures
    changed = project.run("prime", "--jobs", "3", "--cache", "none", "--define",
                          f"CMAKE_CXX_COMPILER_LAUNCHER={launcher}", "--define", "X_TEST=1")
    assert CONFIGURE_RE.search(changed.stderr)


def test_a_failed_configure_is_redone_by_the_next_build(project: Project) -> None:
    lists = project.root / "CMakeLists.txt"
    good = lists.read_text()
    broken = good.replace("include(minivllm_utils)\n",
                          'include(minivllm_utils)\nmessage(FATAL_ERROR "broken on purpose")\n')
    assert broken != good
    lists.write_text(broken)
    failed = project.run("build", "--target", "_C", check=False)
    assert failed.returncode != 0 and "broken on purpose" in failed.stdout + failed.stderr
    assert "no configure needed" not in failed.stderr
    assert "no configure needed" not in project.run("report").stdout
    lists.write_text(good)
    done = project.run("build", "--target", "_C")
    assert "unknown target" not in done.stderr and CONFIGURE_RE.search(done.stderr)
    assert project.value("_C") == 42
    # the same configuration, failing: the build dir was configured before, but no longer is
    lists.write_text(broken)
    assert project.run("prime", "--reconfigure", check=False).returncode != 0
    lists.write_text(good)
    done = project.run("build", "--target", "_C")
    assert "the last configure did not finish" in done.stderr


def test_compile_commands_link_follows_the_preset(project: Project) -> None:
    link = project.root / "compile_commands.json"
    done = project.run("prime")
    assert os.readlink(link) == "cmake-build-release/compile_commands.json"
    assert "linked compile_commands.json" in done.stderr
    files = {Path(e["file"]).name for e in json.loads(link.read_text())}
    assert "module_C.cpp" in files
    assert "compile_commands.json" not in project.run("prime").stderr  # said once
    project.run("prime", "--preset", "debug")
    assert os.readlink(link) == "cmake-build-debug/compile_commands.json"
    project.run("clean", "--preset", "debug")
    assert not link.is_symlink() and not link.exists()
    # a file of the user's own is never replaced
    link.write_text("[]\n")
    done = project.run("prime", "--preset", "debug")
    assert link.read_text() == "[]\n" and "left your" in done.stderr


@pytest.mark.skipif(shutil.which("clangd") is None and not os.environ.get("CI"),
                    reason="clangd not installed (apt-get install clangd; .ci/run installs it)")
def test_clangd_resolves_the_project_sources(project: Project) -> None:
    project.run("prime")
    done = subprocess.run(["clangd", "--check=csrc/module_C.cpp"], cwd=project.root,
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"Loaded compilation database from {project.root}/compile_commands.json" in output
    assert "Compile command from CDB is:" in output  # not clangd's guess
    assert "All checks completed, 0 errors" in output and "not found" not in output


def test_fetched_sources_are_shared_build_dirs_are_not(project: Project) -> None:
    src = project.root / ".deps" / "foo-src"
    src.mkdir(parents=True)
    (src / "CMakeLists.txt").write_text("# fetched by a pip build\n")
    done = project.run("prime")
    base = json.loads((project.root / "CMakeUserPresets.json").read_text())["configurePresets"][0]
    assert base["cacheVariables"]["FETCHCONTENT_SOURCE_DIR_FOO"] == "${sourceDir}/.deps/foo-src"
    assert "FETCHCONTENT_BASE_DIR" not in base["cacheVariables"]
    assert "not used by the project" not in done.stdout + done.stderr
    assert cache_lines(project.build_dir, "FETCHCONTENT_SOURCE_DIR_FOO")
    own = project.run("prime", env={"FETCHCONTENT_SOURCE_DIR_FOO": str(src)})  # user's wins
    assert "FETCHCONTENT_SOURCE_DIR_FOO" not in (project.root / "CMakeUserPresets.json").read_text()
    assert own.returncode == 0
    cleaned = project.run("clean")
    assert "left .deps/ (foo-src): dependency sources shared with pip builds" in cleaned.stderr
    assert src.is_dir()
    refused = project.run("clean", "--deps", check=False)
    assert refused.returncode != 0 and "pass it with --all" in refused.stderr
    removed = project.run("clean", "--all", "--deps")
    assert "removed .deps/ (foo-src)" in removed.stderr and not (project.root / ".deps").exists()


def test_setup_passes_device_and_installer_arguments(project: Project) -> None:
    done = project.run("setup", "--force", "--device", "cpu", "--", "--offline")
    commands = [ln for ln in done.stderr.splitlines() if ln.startswith("vllm-dev: $ ")]
    editable = next(c for c in commands if " -e " in c)
    assert "VLLM_TARGET_DEVICE=cpu" in editable
    assert all(c.endswith(" --offline") for c in commands if " pip install " in c)
    assert not any("--torch-backend" in c for c in commands)


def test_doctor_blocks_only_on_what_blocks_the_build(project: Project) -> None:
    import minivllm_tools as mv
    from conftest import clean_env

    subprocess.run([mv.find_uv(), "pip", "uninstall", "-q", "--python", str(project.python),
                    "vllm"], check=True, env=clean_env())
    requirements = project.root / "requirements" / "build" / "cpu.txt"
    requirements.write_text("cmake>=3.26.1\nninja==1.0.0\nninja\nsetuptools>=64\n"
                            'torch==9.9; sys_platform == "nonexistent"\n')
    data = json.loads(project.run("doctor", "--json", check=False).stdout)
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["vllm install"]["status"] == "warn"
    assert "vllm install" not in data["blockers"]
    row = by_name["build requirements"]
    assert row["status"] == "warn" and row["detail"].count("ninja") == 1
    assert "(wants ==1.0.0)" in row["detail"]
    assert data["blockers"] == []
    project.run("prime")  # indeed not blocked


def test_vllm_own_outputs_are_never_stale(project: Project) -> None:
    """setup.py bundles tcmalloc into vllm/libs/ for CPU, and a precompiled Rust frontend
    extension sits in vllm/: neither is a kernel this build should have made."""
    project.run("build")
    libs = project.root / "vllm" / "libs"
    libs.mkdir()
    (libs / "libtcmalloc_minimal.so.4").write_bytes(b"\x7fELF")
    (project.root / "vllm" / "_rust_frontend.abi3.so").write_bytes(b"\x7fELF")
    (project.root / "vllm" / "_old_C.abi3.so").write_bytes(b"\x7fELF")
    done = project.run("verify", check=False)
    assert "_old_C.abi3.so" in done.stderr + done.stdout  # a real leftover still is
    assert "tcmalloc" not in done.stderr + done.stdout
    assert "_rust_frontend" not in done.stderr + done.stdout


@pytest.mark.skipif(shutil.which("clangd") is None and not os.environ.get("CI"),
                    reason="clangd not installed (apt-get install clangd; .ci/run installs it)")
def test_clangd_checks_a_cuda_file(cuda_project: Project) -> None:
    """nvcc's commands carry options clang rejects; vllm-dev's .clangd drops them (a .clangd of
    the user's own is left alone)."""
    done = cuda_project.run("prime")
    assert "wrote .clangd" in done.stderr
    check = subprocess.run(["clangd", "--check=csrc/cuda/saxpy.cu"], cwd=cuda_project.root,
                           capture_output=True, text=True, timeout=300)
    output = check.stdout + check.stderr
    assert check.returncode == 0 and "All checks completed, 0 errors" in output, output
    assert "Compile command from CDB is: " in output and "nvcc" in output
    mine = cuda_project.root / ".clangd"
    mine.write_text("CompileFlags:\n  Add: [-DMINE]\n")
    cuda_project.run("prime", "--reconfigure")
    assert mine.read_text() == "CompileFlags:\n  Add: [-DMINE]\n"


def test_root_files_are_excluded_from_git_never_gitignored(project: Project,
                                                           tmp_path: Path) -> None:
    """CMakeUserPresets.json and the compile_commands.json link go into the exclude file git
    names (`git rev-parse --git-path info/exclude`), so `git status` stays clean; the tracked
    .gitignore is never touched. In a worktree the file is the repository's shared one."""
    from test_affected import commit_all, git

    root = project.root
    (root / ".gitignore").write_text(".venv/\ncmake-build-*/\n*.so\n*.egg-info/\n")
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "W")
    ignore = (root / ".gitignore").read_bytes()
    project.run("build")
    assert (root / "compile_commands.json").is_symlink()
    status = git(root, "status", "--porcelain", "--untracked-files=all")
    assert status == "", status
    assert (root / ".gitignore").read_bytes() == ignore
    exclude = (root / ".git" / "info" / "exclude").read_text().splitlines()
    assert {"/CMakeUserPresets.json", "/compile_commands.json", "/.clangd"} <= set(exclude)
    project.run("build", "--preset", "debug")  # a new link target: nothing added twice
    assert (root / ".git" / "info" / "exclude").read_text().splitlines() == exclude
    # a worktree of the checkout: its git names the shared exclude file
    tree = tmp_path / "wt"
    git(root, "worktree", "add", "-q", str(tree))
    (root / ".git" / "info" / "exclude").write_text("")
    worktree = Project(root=tree, python=project.python,
                       env={**project.env, "VLLM_DEV_PYTHON": str(project.python)})
    worktree.run("prime")
    assert git(tree, "status", "--porcelain", "--untracked-files=all") == ""
    assert "/compile_commands.json" in (root / ".git" / "info" / "exclude").read_text()
