"""`vllm-dev test` and `vllm-dev test --watch` end to end on the test project: its kernel test
(tests/minivllm/tests/kernels/test_ops.py) calls the built `_C` through `vllm._custom_ops`, and
`csrc/module_C.cpp` registers the ops in vLLM's `ops.impl("name", &function)` shape.

Each project is a git checkout at W with a stand-in prebuilt wheel of W (as in
test_affected.py), so the build and the picker work from what changed since W."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from test_affected import checkout_at_w, edit

import minivllm_tools as mv
from conftest import VLLM_DEV, Project, clean_env

pytestmark = pytest.mark.flow

SUMMARY_RE = re.compile(r"^vllm-dev: test: (\d+) object\(s\) compiled in [\d.]+ s, (\d+) "
                        r"file\(s\) installed; (\d+) passed, (\d+) failed, (\d+) skipped in "
                        r"[\d.]+ s$", re.M)


def _remembered_selection(root: Path) -> object:
    """The test selection the checkout's settings store holds (None: nothing remembered)."""
    path = root / ".vllm-dev" / "settings.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("checkout", {}).get("test_selection")


def set_up(tmp_path: Path, *, tests: bool = True) -> Project:
    project, wheel, _ = checkout_at_w(tmp_path)
    project.env["VLLM_PRECOMPILED_WHEEL_LOCATION"] = str(wheel)
    project.run("setup", *(["--tests"] if tests else []))
    return project


def summary(done: subprocess.CompletedProcess[str]) -> tuple[int, ...]:
    found = SUMMARY_RE.findall(done.stderr)
    assert found, f"no summary line\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return tuple(int(n) for n in found[-1])


def test_test_builds_picks_runs_and_reports(tmp_path: Path) -> None:
    project, wheel, _ = checkout_at_w(tmp_path)
    project.env["VLLM_PRECOMPILED_WHEEL_LOCATION"] = str(wheel)
    project.run("setup")
    add = project.root / "csrc" / "ops" / "add.cpp"

    # No pytest in the target interpreter: one line, before anything is built.
    done = project.run("test", check=False)
    assert done.returncode == 1
    assert "pytest is not installed in the target interpreter" in done.stderr
    assert "`vllm-dev setup --tests` installs requirements/test.txt" in done.stderr
    assert "Traceback" not in done.stderr and not project.build_dir.exists()

    project.run("setup", "--tests")
    # Nothing changed since W: nothing built, no test picked, nothing tested: non-zero.
    done = project.run("test", check=False)
    assert done.returncode == 5, done.stderr
    assert "no test picked: no changed file since" in done.stderr
    assert "test session starts" not in done.stdout

    # A kernel edit: _C is built and installed, the test calling its op is picked and passes.
    edit(add, "return a + b;", "return b + a;")
    done = project.run("test")
    assert "picked 1 test file(s) calling the ops of what changed since" in done.stderr
    assert "  csrc/ops/add.cpp defines op(s) add" in done.stderr
    assert "  tests/kernels/test_ops.py: calls add" in done.stderr
    objects, installed, passed, failed, skipped = summary(done)
    assert (objects, installed, passed, failed, skipped) == (3, 1, 2, 0, 0)
    assert project.value("_C") == 42  # the local build, not the wheel's kernels

    # An edit that breaks it: the tests' failure is shown, the exit status is pytest's.
    edit(add, "return b + a;", "return a - b;")
    done = project.run("test", check=False)
    assert done.returncode == 1
    assert "assert -1 == 5" in done.stdout
    assert summary(done)[:4] == (1, 1, 1, 1)

    # A compile error: the compiler's error in full, no test run, the build's status.
    edit(add, "return a - b;", "return a + b; missing_name_42")
    done = project.run("test", check=False)
    assert done.returncode == 1
    assert "error: 'missing_name_42' was not declared" in (done.stdout + done.stderr).replace(
        "\u2018", "'").replace("\u2019", "'")
    assert "test session starts" not in done.stdout
    assert re.search(r"^vllm-dev: test: build FAILED \(exit code 1\): 1 object\(s\) failed, 0 "
                     r"compiled in [\d.]+ s; no test run$", done.stderr, re.M), done.stderr

    # A selection after --: remembered (not -q), reused by a plain run and said.
    edit(add, "return a + b; missing_name_42", "return b + a;")
    done = project.run("test", "--", "tests/kernels/test_ops.py", "-k", "scale", "-q")
    assert summary(done)[2:] == (1, 0, 0)
    assert "1 deselected" in done.stdout
    done = project.run("test")
    assert ("reusing the test selection remembered for this checkout: "
            "tests/kernels/test_ops.py -k scale") in done.stderr
    assert re.search(r"-m pytest --junitxml=\S+ tests/kernels/test_ops.py -k scale$",
                     done.stderr, re.M), done.stderr
    assert summary(done)[2:] == (1, 0, 0)

    # --pick forgets it; a file that defines no op picks nothing and says so.
    edit(add, "return b + a;", "return a + b;")  # as at W again
    fast = project.root / "csrc" / "fast" / "module_fast.cpp"
    fast.write_text(fast.read_text() + "\n// touched\n")
    done = project.run("test", "--pick", check=False)
    assert done.returncode == 5
    assert "forgot the remembered test selection" in done.stderr
    assert "no test picked: the translation unit(s) changed since" in done.stderr
    assert "  csrc/fast/module_fast.cpp defines no registered op" in done.stderr
    assert _remembered_selection(project.root) is None

    # Every selected test skipped: nothing was tested, non-zero.
    (project.root / "tests" / "kernels" / "test_skip.py").write_text(
        "import pytest\n\n\ndef test_needs_a_gpu():\n    pytest.skip('no GPU here')\n")
    done = project.run("test", "--", "tests/kernels/test_skip.py", check=False)
    assert done.returncode == 5
    assert "every selected test was skipped (1): nothing was tested" in done.stderr

    # --under: the tests run under the tool (a wrapper that logs its arguments, then runs them).
    log = tmp_path / "under.log"
    wrapper = tmp_path / "wrap"
    wrapper.write_text(f'#!/bin/sh\necho "$@" > {log}\nexec "$@"\n')
    wrapper.chmod(0o755)
    done = project.run("test", "--under", f"{wrapper} ", "--", "tests/kernels/test_ops.py")
    assert f"{project.python} -m pytest" in log.read_text()
    assert summary(done)[2:] == (2, 0, 0)

    # The debug preset: the same loop, ending with what is installed now and how to go back.
    done = project.run("test", "--preset", "debug")
    last = done.stderr.strip().splitlines()[-1]
    assert last == (f"vllm-dev: debug kernels are now installed in {project.root / 'vllm'} "
                    "(preset debug); `vllm-dev build --preset release` puts the release "
                    "kernels back"), done.stderr
    assert (project.root / "cmake-build-debug").is_dir()


class Output:
    """The lines a background vllm-dev prints, read by a thread (a pipe never fills up)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(line) for line in stream],
                         daemon=True).start()

    def wait_for(self, pattern: str, *, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} in {timeout} s:\n"
                             + "".join(self.seen[-60:]))

    def drain(self, seconds: float) -> list[str]:
        got = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got.append(self.lines.get(timeout=0.05))
            except queue.Empty:
                continue
        self.seen += got
        return got


def test_watch_two_edits_a_compile_error_a_pause_then_ctrl_c(tmp_path: Path) -> None:
    project = set_up(tmp_path)
    add = project.root / "csrc" / "ops" / "add.cpp"
    edit(add, "return a + b;", "return b + a;")
    started = time.monotonic()
    proc = subprocess.Popen(
        [VLLM_DEV, "test", "--watch", "--plain"], cwd=project.root, text=True,
        env=clean_env(project.env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # SIGINT's default, even when this suite runs as a shell's background job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out = Output(proc)
    try:
        first = out.wait_for(r"^vllm-dev: \[\d\d:\d\d:\d\d\] start: ")
        assert "2 passed, 0 failed, 0 skipped" in first and "watching" in first, first

        # 1: an edit that breaks the op: one cycle, the failure shown.
        edit(add, "return b + a;", "return a - b;")
        line = out.wait_for(r"\] csrc/ops/add.cpp: test: ")
        assert "1 object(s) compiled" in line and "1 passed, 1 failed" in line, line
        assert "s from the save to the result" in line
        assert any("assert -1 == 5" in seen for seen in out.seen)

        # Editor temporaries, vllm-dev's own outputs and files of no target never start one.
        for junk in ("csrc/ops/.add.cpp.swp", "csrc/ops/add.cpp~", "csrc/ops/4913",
                     "csrc/ops/#add.cpp#", "vllm/_junk.txt", "cmake-build-release/x.o",
                     ".vllm-dev/x.json", "csrc/ops/notes.txt"):
            (project.root / junk).write_text("x")
        quiet = out.drain(1.5)
        assert not [ln for ln in quiet if "saved:" in ln], quiet

        # 2: a compile error: shown, no test run, the watcher waits.
        edit(add, "return a - b;", "return a + b; missing_name_42")
        line = out.wait_for(r"\] csrc/ops/add.cpp: test: build FAILED")
        assert "no test run" in line and "waiting for the next save" in line, line
        assert any("missing_name_42" in seen and "error" in seen for seen in out.seen)

        # 3: fixed: passes again.
        edit(add, "return a + b; missing_name_42", "return a + b;")
        line = out.wait_for(r"\] csrc/ops/add.cpp: test: ")
        assert "2 passed, 0 failed, 0 skipped" in line, line

        # A save that decides the whole build pauses instead of building.
        cmake_lists = project.root / "CMakeLists.txt"
        cmake_lists.write_text(cmake_lists.read_text() + "\n# touched\n")
        line = out.wait_for(r"paused, nothing built: CMakeLists.txt changed and decides the "
                            r"whole build")
        assert "object(s)" in line
        assert not [ln for ln in out.drain(1.0) if "cmake --build" in ln]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    assert proc.wait(timeout=30) == 130
    out.drain(0.5)
    assert time.monotonic() - stopped < 10
    assert any("vllm-dev: interrupted" in seen for seen in out.seen)
    assert not any("Traceback" in seen for seen in out.seen), "".join(out.seen)
    assert time.monotonic() - started < 240, "the watch cycles took too long"
    # Nothing half-installed: no temporary file in vllm/, the last build's _C loads.
    assert not list((project.root / "vllm").glob(".*.tmp"))
    assert mv.import_value(str(project.python), "_C", cwd=project.root) == 42
    assert os.environ.get("VLLM_DEV_BUILD_LOCK") is None


def test_nox_kernels_session_runs_the_loop_in_a_fresh_venv(tmp_path: Path) -> None:
    """`nox -s kernels`: setup with the test requirements in the session's venv, the release
    preset in its own build dir, the picked tests; no remembered selection written."""
    from test_affected import commit_all, git
    from test_nox import run_nox

    root = mv.copy_project(tmp_path / "vllm")
    (root / ".gitignore").write_text(".venv/\ncmake-build-*/\n*.so\nCMakeUserPresets.json\n"
                                     "*.egg-info/\n")
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "W")
    edit(root / "csrc" / "ops" / "scale.cpp", "return value * factor;",
         "return factor * value;")
    done = run_nox(tmp_path, "-s", "kernels", "--", "--source", str(root), "--since", "HEAD",
                   "--", "-q")
    out = done.stdout + done.stderr
    assert "setup: test requirements from requirements/test.txt" in out
    assert "tests/kernels/test_ops.py: calls scale" in out
    assert re.search(r"vllm-dev: test: \d+ object\(s\) compiled in [\d.]+ s, 1 file\(s\) "
                     r"installed; 2 passed, 0 failed, 0 skipped", out), out
    assert (root / "cmake-build-nox-release").is_dir()
    assert _remembered_selection(root) is None

    edit(root / "csrc" / "ops" / "scale.cpp", "return factor * value;",
         "return factor + value;")
    mixed = run_nox(tmp_path, "-R", "-s", "kernels", "--", "--source", str(root), check=False)
    assert mixed.returncode != 0
    assert "--source is vllm-dev's: its options go before a second --" in mixed.stderr
    failed = run_nox(tmp_path, "-R", "-s", "kernels", "--", "--source", str(root), "--since",
                     "HEAD", "--", check=False)
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert "1 failed" in out and "the kernel tests failed (exit status 1)" in out
