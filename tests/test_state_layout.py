"""state/layout.py names every path vllm-dev writes, and only state/ spells those names.

* Statically: no module outside ``src/vllm_dev/state/`` holds a state file's name in a string
  (docstrings aside: they explain), so a rename happens in one place.
* End to end: real flows on the test project (setup with a precompiled wheel, builds that scan
  headers, a second preset, settings, test, verify --remove-stale, a --force over the user's
  presets, a damaged record, clean --all --deps) and then every file under ``.vllm-dev/``, in the
  build dirs and at the checkout root is either matched by one of layout.PLACES or is not
  vllm-dev's. CMake's and ninja's own files are told apart by running the same presets raw
  (``cmake --preset``, ``cmake --build --preset``, ``cmake --install``) in a copy of the checkout:
  what that leaves in its build dir is theirs.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_affected import checkout_at_w, edit
from vllm_dev.state import layout

from conftest import BIN_DIR, clean_env

SRC = Path(__file__).resolve().parent.parent / "src"
STATE_PACKAGE = SRC / "vllm_dev" / "state"


def spelled_names(path: Path) -> list[str]:
    """``line: name`` for each state file name in a string constant of ``path`` that is a path
    or a piece of one. Prose may name a file (a docstring, a message, a help text: anything with
    a space in it); code takes the name from state/layout.py."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings and not re.search(r"\s", node.value):
            found += [f"{node.lineno}: {name}" for name in layout.SPELLED_HERE_ONLY
                      if name in node.value]
    return found


@pytest.mark.unit
def test_state_file_names_are_spelled_only_in_state() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        if STATE_PACKAGE in path.parents:
            continue
        wrong += [f"{path.relative_to(SRC)}:{hit}" for hit in spelled_names(path)]
    assert wrong == [], "take these names from vllm_dev.state.layout"


@pytest.mark.unit
def test_the_spelling_check_notices_a_name(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Docstrings may say vllm-dev-install.json."""\n'
                      'X = "vllm-dev-install.json"\n'
                      'def f(d):\n    return f"{d}/.vllm-dev/x"\n'
                      'def g():\n    raise ValueError("messages may name .vllm-dev/x")\n')
    assert spelled_names(module) == [f"2: {layout.INSTALL_RECORD}", f"4: {layout.STATE_DIR}"]


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def named(where: str, relative: str) -> bool:
    return any(p.where == where and _regex(p.pattern).match(relative) for p in layout.PLACES)


@pytest.mark.unit
def test_the_patterns_match_what_they_should() -> None:
    assert named(layout.STATE, "history/release-cuda-8.0_9.0.json")
    assert named(layout.STATE, "stale/20261203-101010/vllm/_old_C.abi3.so")
    assert named(layout.BUILD, "vllm-dev-install.json.corrupt-20261203-101010-1")
    assert named(layout.BUILD, "vllm-dev-stage/vllm/_C.abi3.so")
    assert not named(layout.BUILD, "vllm-dev-other.json")
    assert not named(layout.STATE, "history/sub/x.json")
    assert layout.history_name("release", "cuda", "8.0;9.0+PTX") == "release-cuda-8.0_9.0+PTX.json"


def files_under(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")
            if p.is_file() or p.is_symlink()}


def raw_build_files(project_root: Path, tmp: Path, preset: str) -> set[str]:
    """What the presets' own cmake commands leave in the build dir of ``preset``, run by hand in
    a copy of the checkout (with vllm-dev's presets file and compiler launcher, as a user who
    types them has)."""
    copy = tmp / "raw"
    shutil.copytree(project_root, copy, symlinks=True, ignore=shutil.ignore_patterns(
        "cmake-build-*", layout.STATE_DIR, ".venv", ".git", layout.COMPILE_DB))
    (copy / layout.STATE_DIR).mkdir()
    shutil.copy2(project_root / layout.STATE_DIR / layout.LAUNCHER,
                 copy / layout.STATE_DIR / layout.LAUNCHER)
    cmake = str(BIN_DIR / "cmake")
    env = clean_env()
    for argv in ([cmake, "--preset", preset], [cmake, "--build", "--preset", preset],
                 [cmake, "--install", f"cmake-build-{preset}"]):
        done = subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    return files_under(copy / f"cmake-build-{preset}")


@pytest.mark.flow
def test_every_file_vllm_dev_writes_is_named_in_the_layout(tmp_path: Path) -> None:
    project, wheel, _w = checkout_at_w(tmp_path)
    root = project.root
    wheel_env = {"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel)}
    before = {p.name for p in root.iterdir()}
    project.run("setup", "--tests", env=wheel_env)
    edit(root / "csrc/ops/ops.h", "#pragma once", "#pragma once\n// an edit")  # header scans
    project.run("build")
    project.run("build")  # a no-op
    project.run("build", "--preset", "debug", "--jobs", "1")  # remembers --jobs
    project.run("settings")
    project.run("test", "--", "tests/kernels")
    (root / "vllm" / "_gone_C.abi3.so").write_bytes(b"stale")
    project.run("verify", "--remove-stale")
    user = root / layout.USER_PRESETS
    user.write_text('{"version": 6, "configurePresets": []}\n')  # the user's own file
    project.run("build", "--force")  # kept as a backup first
    (root / layout.STATE_DIR / layout.FACT_CACHE).write_text("{damaged")
    project.run("build")  # sets it aside
    # vllm-dev's files in the build dirs: all but what the raw cmake commands leave there
    raw = raw_build_files(root, tmp_path, "release")
    build_dirs = sorted(p for p in root.iterdir() if p.name.startswith("cmake-build-"))
    assert [p.name for p in build_dirs] == ["cmake-build-debug", "cmake-build-release"]
    ours = {f"{d.name}/{f}" for d in build_dirs for f in files_under(d) - raw}
    assert {f"cmake-build-release/{n}" for n in (layout.BUILD_RECORD, layout.INSTALL_RECORD,
                                                 layout.TARGETS, layout.SCANS, layout.REPORT,
                                                 layout.JUNIT)} <= ours  # the flows ran
    assert [f for f in ours if not named(layout.BUILD, f.split("/", 1)[1])] == []
    # the state dir: all vllm-dev's
    state = files_under(root / layout.STATE_DIR)
    assert {layout.SETTINGS, layout.SETUP, layout.PRECOMPILED, layout.LAUNCHER} <= state
    assert any(f.startswith(layout.BACKUPS + "/") for f in state)
    assert any(f.startswith(layout.STALE + "/") for f in state)
    assert any(f.startswith(layout.FACT_CACHE + ".corrupt-") for f in state)
    assert [f for f in state if not named(layout.STATE, f)] == []
    # the checkout root: new entries are vllm-dev's (named), its build dirs, or another tool's
    others = {"vllm.egg-info": "uv pip install -e (setup), vLLM's own setup.py",
              ".pytest_cache": "pytest (the test task)"}
    new = {p.name for p in root.iterdir()} - before - others.keys() - {d.name for d in build_dirs}
    assert new == {layout.STATE_DIR, layout.USER_PRESETS, layout.COMPILE_DB}
    assert all(named(layout.ROOT, n) for n in new - {layout.STATE_DIR})
    exclude = root / subprocess.run(["git", "-C", str(root), "rev-parse", "--git-path",
                                     layout.GIT_EXCLUDE], capture_output=True, text=True,
                                    check=True).stdout.strip()
    assert {f"/{n}" for n in layout.ROOT_FILES} <= set(exclude.read_text().splitlines())
    # clean --all --deps: .deps goes through deps-removing-<pid>, which is gone after
    (root / ".deps" / "x-src").mkdir(parents=True)
    project.run("clean", "--all", "--deps")
    assert not any(p.name.startswith("cmake-build-") for p in root.iterdir())
    assert [f for f in files_under(root / layout.STATE_DIR)
            if not named(layout.STATE, f)] == []
    assert not os.path.exists(root / ".deps")
