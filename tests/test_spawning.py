"""One way to spawn: every external command starts in process/ (the runner and its shapes), so
dry runs, secrets masking and the stopping of whole process trees on Ctrl-C/SIGTERM hold for all
of them. The source check, then the shapes themselves on real (small) processes."""

from __future__ import annotations

import ast
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from vllm_dev.checkout.header_scan import DepsScanner
from vllm_dev.errors import CannotRun
from vllm_dev.process.children import start_child
from vllm_dev.process.interrupts import Terminated, session_members, sigterm_raises
from vllm_dev.process.runner import QueryPool, SubprocessRunner, query

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parent.parent / "src"
PROCESS = SRC / "vllm_dev" / "process"
# Modules that start processes. ``os.exec*`` is not among them: it replaces the running process
# (host/split_launcher.py becomes the compiler ninja asked for), nothing is left to stop.
_MODULES = {"subprocess", "pty", "multiprocessing", "asyncio.subprocess"}
_CALLS = {("os", "system"), ("os", "popen"), ("os", "fork"), ("os", "forkpty"),
          ("pty", "spawn"), ("pty", "fork"), ("asyncio", "create_subprocess_exec"),
          ("asyncio", "create_subprocess_shell")}
_CALL_PREFIXES = {("os", "spawn"), ("os", "posix_spawn")}


def spawns(source: str) -> list[str]:
    """Where ``source`` starts a process other than through process/ (``line: what``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name in _MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in _MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if (node.module, a.name) in _CALLS or any(
                          node.module == m and a.name.startswith(p) for m, p in _CALL_PREFIXES)
                      or f"{node.module}.{a.name}" in _MODULES]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and ((node.value.id, node.attr) in _CALLS or any(
                  node.value.id == m and node.attr.startswith(p) for m, p in _CALL_PREFIXES))):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_outside_process_starts_a_process_itself() -> None:
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        if PROCESS in path.parents:
            continue
        found = spawns(path.read_text())
        if found:
            offenders[str(path.relative_to(SRC))] = found
    assert offenders == {}, ("start commands through vllm_dev.process (Runner.run, query, "
                             f"Runner.start), not directly: {offenders}")


def test_the_spawn_check_notices_each_way_around_the_runner() -> None:
    for snippet in ("import subprocess", "import subprocess as sp", "from subprocess import run",
                    "import os\nos.system('x')", "import os\nos.popen('x')",
                    "import pty\npty.spawn(['x'])", "from os import posix_spawn",
                    "import os\nos.spawnlp(0, 'x', 'x')", "import multiprocessing",
                    "from asyncio import create_subprocess_exec"):
        assert spawns(snippet), snippet
    assert spawns("import os\nos.execvpe('x', ['x'], {})") == []
    assert spawns("from vllm_dev.process.runner import query") == []


# ----------------------------------------------------------------------------- the query shape


def test_a_query_runs_under_dry_and_is_never_echoed() -> None:
    said: list[str] = []
    runner = SubprocessRunner(dry=True, echo=said.append, environment={"VLLM_DEV_T": "env"})
    done = runner.query([sys.executable, "-c", "import os; print(os.environ['VLLM_DEV_T'])"],
                        timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "env"  # the runner's environment
    assert said == []


def test_a_query_reports_a_failure_by_its_exit_status() -> None:
    done = query([sys.executable, "-c", "import sys; sys.stderr.write('no'); sys.exit(3)"],
                 timeout=60)
    assert (done.returncode, done.stderr) == (3, "no")


def test_a_query_that_cannot_start_says_why_with_secrets_masked(tmp_path: Path) -> None:
    missing = tmp_path / "s3cr3t" / "tool"
    with pytest.raises(CannotRun) as caught:
        query([missing, "--version"], timeout=60, secrets=["s3cr3t"])
    assert str(caught.value) == f"cannot run {tmp_path}/***/tool: No such file or directory"
    assert "s3cr3t" not in caught.value.detail and not caught.value.timed_out
    runner = SubprocessRunner(secrets=("s3cr3t",))
    with pytest.raises(CannotRun, match=r"\*\*\*") as caught:
        runner.query([missing], timeout=60)
    assert "s3cr3t" not in str(caught.value)


def test_a_query_past_its_timeout_is_stopped_with_its_children(tmp_path: Path) -> None:
    script = "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(CannotRun) as caught:
        query([sys.executable, "-c", script, "s3cr3t"], timeout=0.5, secrets=["s3cr3t"])
    assert time.monotonic() - started < 10
    assert caught.value.timed_out and "did not answer within 0.5 s" in str(caught.value)
    assert "s3cr3t" not in caught.value.detail and "timed out" in caught.value.detail


def _sleepers(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if marker.encode() in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return [pid for pid in found if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_a_query_pool_left_by_an_interrupt_stops_every_query_in_flight(tmp_path: Path) -> None:
    marker = f"vllm-dev-pool-{os.getpid()}"
    sleeper = [sys.executable, "-c", "import time, sys; time.sleep(60)", marker]
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), QueryPool(2) as pool:
        futures = [pool.submit(query, sleeper, timeout=120) for _ in range(4)]
        deadline = time.monotonic() + 10
        while len(_sleepers(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_sleepers(marker)) == 2  # two at a time: the pool's jobs
        raise KeyboardInterrupt
    assert time.monotonic() - started < 10, "the pool waited for its queries instead"
    assert _sleepers(marker) == []
    assert sum(f.cancelled() for f in futures) == 2  # never started


def test_an_interrupted_header_scan_stops_its_compilers_at_once(tmp_path: Path) -> None:
    """SIGTERM while the scans run (each a "compiler" that takes a minute): the selection ends
    within seconds, and no scan is left running."""
    build = tmp_path / "build"
    build.mkdir()
    marker = f"vllm-dev-scan-{os.getpid()}"
    compiler = tmp_path / "slowcc.py"
    compiler.write_text("import time\ntime.sleep(60)\n")
    units = [{"directory": str(build), "file": str(tmp_path / f"u{i}.cpp"), "output": f"u{i}.o",
              "arguments": [sys.executable, str(compiler), marker, "-c", f"u{i}.cpp",
                            "-o", f"u{i}.o"]} for i in range(4)]
    (build / "compile_commands.json").write_text(json.dumps(units))
    owners = {str(build / f"u{i}.o"): {f"t{i}"} for i in range(4)}
    scanner = DepsScanner(build, jobs=2, remember=False)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    with sigterm_raises(), pytest.raises(Terminated):
        timer.start()
        scanner.find(owners, {str(tmp_path / "h.h")}, set())
    timer.join()
    assert time.monotonic() - started < 10
    assert _sleepers(marker) == []


# ----------------------------------------------------------------------------- long-lived child


def test_a_child_answers_what_it_is_handed(tmp_path: Path) -> None:
    runner = SubprocessRunner(environment={"VLLM_DEV_T": "env"})
    script = "import os, sys; print(sys.stdin.read().upper(), os.environ['VLLM_DEV_T'])"
    with runner.start([sys.executable, "-c", script], cwd=tmp_path) as child:
        out, err = child.communicate("files", timeout=60)
    assert (child.returncode, out.strip(), err) == (0, "FILES env", "")


def test_a_child_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    child = start_child([sys.executable, "-c", "import time; time.sleep(60)"], grace=1.0)
    pid = child._popen.pid
    with pytest.raises(CannotRun) as caught:
        child.communicate("", timeout=0.3)
    assert caught.value.timed_out and session_members(pid) == []


def test_a_child_never_outlives_its_block(tmp_path: Path) -> None:
    marker = f"vllm-dev-child-{os.getpid()}"
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    with pytest.raises(KeyboardInterrupt), start_child(
            [sys.executable, "-c", script, marker], grace=1.0) as child:
        pid = child._popen.pid
        time.sleep(0.3)
        raise KeyboardInterrupt
    assert session_members(pid) == [] and _sleepers(marker) == []


def test_a_child_that_cannot_start_raises_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(CannotRun, match="cannot run .*: No such file or directory"):
        start_child([tmp_path / "missing"])
