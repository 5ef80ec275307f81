"""The bad-input table: every input a new user gets wrong, run through the real ``vllm-dev``.

One row per input. An error row: a non-zero exit, exactly one line on stderr besides echoed
commands (``vllm-dev: $ ...``), saying what is wrong and how to fix it, no traceback, and no file
of the checkout changed. An adjustment row (``--jobs 1000`` on this machine): exit 0 and one line
with the number used and why, run with ``--dry`` so that nothing is written. The build dir removed
during a build is the one row whose build ran: its own output (ninja's lines, the report) comes
before the one line that names the failure.

The rows share one built git checkout of the test project (with the fault tests' slow step, so a
build can be caught while it runs); each row prepares what it needs and puts it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import fault_tools as ft
from test_affected import commit_all, git

from conftest import Project, make_project

Prepare = Callable[[Project, Path], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def _nothing(project: Project, tmp: Path) -> Iterator[None]:
    yield


@dataclass(frozen=True)
class Row:
    args: tuple[str, ...]
    needle: str
    code: int = 1
    prepare: Prepare = _nothing
    cwd: Callable[[Project, Path], Path] | None = None
    env: dict[str, str] = field(default_factory=dict)
    adjustment: bool = False  # exit 0, one warning line
    builds: bool = False  # the build ran before it failed (its own output comes first)


@contextlib.contextmanager
def _presets_not_json(project: Project, tmp: Path) -> Iterator[None]:
    path = project.root / "CMakeUserPresets.json"
    saved = path.read_bytes()
    path.write_text("{ this is not JSON\n")
    try:
        yield
    finally:
        path.write_bytes(saved)


@contextlib.contextmanager
def _no_csrc(project: Project, tmp: Path) -> Iterator[None]:
    (project.root / "csrc").rename(tmp / "csrc")
    try:
        yield
    finally:
        (tmp / "csrc").rename(project.root / "csrc")


@contextlib.contextmanager
def _not_a_venv(project: Project, tmp: Path) -> Iterator[None]:
    (tmp / "not-a-venv").mkdir()
    yield


@contextlib.contextmanager
def _read_only(project: Project, tmp: Path) -> Iterator[None]:
    from test_faults import _can_mount, read_only

    if not _can_mount(tmp):
        pytest.skip("mounting a read-only bind mount is not permitted here (root or "
                    "CAP_SYS_ADMIN)")
    (project.root / "csrc" / "ops" / "add.cpp").touch()  # something to build
    with read_only(project.root):
        yield


def _subdir(project: Project, tmp: Path) -> Path:
    return project.root / "csrc" / "ops"


flow, mounts = pytest.mark.flow, pytest.mark.mounts
ROWS = {
    "jobs-0": Row(("build", "--jobs", "0"), "--jobs must be a positive integer, got '0'"),
    "arch-on-cpu": Row(("build", "--arch", "8.0", "--device", "cpu"),
                       "--arch 8.0 is a CUDA arch list, and this is a cpu build"),
    "python-not-python": Row(("build", "--python", "/bin/ls"),
                             "--python /bin/ls is not a Python interpreter"),
    "python-dir-not-venv": Row(("build", "--python", "{tmp}/not-a-venv"),
                               "is a directory but not a virtual environment",
                               prepare=_not_a_venv),
    "since-unknown": Row(("build", "--since", "no-such-ref"),
                         "--since no-such-ref: not a commit of the git history"),
    "target-misspelled": Row(("build", "--target", "_fats_C"),
                             "unknown target '_fats_C' (did you mean '_fast_C'?)"),
    "presets-not-json": Row(("build",), "CMakeUserPresets.json is not a valid presets file",
                            prepare=_presets_not_json),
    "no-csrc": Row(("build",), "has no csrc/", prepare=_no_csrc),
    "outside-checkout": Row(("build",), "no vLLM checkout at or above",
                            cwd=lambda p, tmp: tmp),
    "read-only": Row(("build",), "Read-only file system", prepare=_read_only),
    "build-dir-removed": Row(("build", "--plain"), "was removed while the build ran",
                             env={"VD_COMPILE_SLEEP": "2"}, builds=True),
    "jobs-1000": Row(("--dry", "build", "--jobs", "1000"),
                     r"^vllm-dev: jobs=\d+ .*: --jobs 1000 lowered to \d+: \d+ CPUs allow \d+ "
                     r"\(2 per CPU\), .* GiB available .*\(room for \d+\)$", code=0,
                     adjustment=True),
    "from-subdirectory": Row(("build",), "", code=0, cwd=_subdir),
}
TIERS = {"read-only": mounts}


def snapshot(root: Path) -> dict[str, str]:
    """Every file of the checkout (not its venv, not vllm-dev's probe cache) by content."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in (".venv", ".git") or (rel.parts[0] == ".vllm-dev"
                                                 and rel.name == "fact-cache.json"):
            continue
        if path.is_file() and not path.is_symlink():
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A built git checkout of the test project with the fault tests' slow step."""
    project = make_project(tmp_path_factory.mktemp("bad-input"))
    ft.add_hooks(project)
    (project.root / ".gitignore").write_text(
        ".venv/\ncmake-build-*/\n*.so\n*.egg-info/\n.vllm-dev/\n")
    git(project.root, "init", "-q", "-b", "main")
    commit_all(project.root, "W")
    project.run("build")
    return project


def _run_removing_build_dir(project: Project, args: tuple[str, ...], env: dict[str, str],
                            tmp: Path) -> subprocess.CompletedProcess[str]:
    log = tmp / "slow.log"
    bg = ft.spawn(project, *args, env={**env, "VD_LOG": str(log)})
    ft.wait_for(lambda: log.is_file() and "start" in log.read_text(), what="the slow step")
    for _ in range(100):  # the build writes and removes files meanwhile: remove until gone
        shutil.rmtree(project.build_dir, ignore_errors=True)
        if not project.build_dir.exists():
            break
        time.sleep(0.02)
    code, out, err = bg.finish()
    return subprocess.CompletedProcess(bg.proc.args, code, out, err)


@pytest.mark.parametrize("name", [pytest.param(n, marks=TIERS.get(n, flow)) for n in ROWS])
def test_bad_input(checkout: Project, name: str, tmp_path: Path) -> None:
    row = ROWS[name]
    args = tuple(a.replace("{tmp}", str(tmp_path)) for a in row.args)
    with row.prepare(checkout, tmp_path):
        before = snapshot(checkout.root)
        if row.builds:
            done = _run_removing_build_dir(checkout, args, row.env, tmp_path)
        else:
            cwd = row.cwd(checkout, tmp_path) if row.cwd else None
            done = checkout.run(*args, check=False, cwd=cwd, env=row.env)
        after = snapshot(checkout.root)
    try:
        assert done.returncode == row.code, done.stderr
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
        said = [ln for ln in done.stderr.splitlines()
                if ln.strip() and not ln.startswith("vllm-dev: $ ")]
        if row.adjustment:
            assert sum(bool(re.search(row.needle, ln)) for ln in said) == 1, said
        elif row.code:
            lines = said[-1:] if row.builds else said
            assert len(lines) == 1 and lines[0].startswith("vllm-dev: "), said
            assert row.needle in lines[0], lines[0]
            assert sum(ln.startswith("vllm-dev: ") and "removed" in ln for ln in said) <= 1
        if row.builds:  # what the build removed is the row's doing, not vllm-dev's
            before = {k: v for k, v in before.items() if not k.startswith("cmake-build-")}
            after = {k: v for k, v in after.items() if not k.startswith("cmake-build-")}
        if row.code or row.adjustment:  # (a build that works may write, of course)
            assert after == before, sorted(set(after.items()) ^ set(before.items()))
    finally:
        if row.builds:
            checkout.run("build")  # the next row starts from a built checkout again


@pytest.mark.flow
def test_setup_that_cannot_reach_the_index_says_so_with_the_offline_command(
        checkout: Project) -> None:
    """uv's own lines pass through; the last line says what could not be reached and how to set
    up offline (an index on a closed port stands in for no network: no privileges needed)."""
    done = checkout.run("setup", "--force", "--", "--index-url", "http://127.0.0.1:1/simple",
                        check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        "vllm-dev: setup could not reach 127.0.0.1:1 (Connection refused (os error 111)): "
        "offline or behind a mirror, give VLLM_PRECOMPILED_WHEEL_LOCATION a local wheel and run "
        "`vllm-dev setup -- --no-index --find-links DIR` (README: Offline / mirror)"), \
        done.stderr
