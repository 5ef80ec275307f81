"""Helpers for the fault tests: slow steps on demand in a project copy, background vllm-dev runs,
and a /proc view of what a run left behind.

The slow steps are real build steps added to the copy's CMakeLists.txt, each controlled by an
environment variable read when the step runs (so one configure serves every test):

* ``VD_CONFIGURE_SLEEP``: seconds ``cmake`` configure sleeps (``execute_process``);
* ``VD_COMPILE_SLEEP``: seconds a build step (an ``ALL`` custom target, run by ninja in a process
  group of its own exactly like a compiler) sleeps; with ``VD_LOG`` it appends
  ``start <pid> <time>`` / ``end <pid> <time>`` lines, to prove two builds never overlapped;
* ``VD_INSTALL_SLEEP``: seconds the install pauses after installing ``_C`` and ``_fast_C`` (an
  ``ALL_COMPONENTS`` hook, like vLLM's own ``install(CODE ...)``: it runs in every component's
  install, so after the staging of each component vllm-dev installs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conftest import VLLM_DEV, Project, clean_env

HOOKS = r"""
# --- vllm-dev fault tests: slow steps on demand (see tests/fault_tools.py) ---
if(DEFINED ENV{VD_CONFIGURE_SLEEP})
  execute_process(COMMAND ${CMAKE_COMMAND} -E sleep $ENV{VD_CONFIGURE_SLEEP})
endif()
add_custom_target(vd_slow ALL COMMAND sh "${CMAKE_CURRENT_SOURCE_DIR}/vd_slow.sh" VERBATIM)
install(CODE "execute_process(COMMAND sh \"${CMAKE_CURRENT_SOURCE_DIR}/vd_install_pause.sh\")"
        ALL_COMPONENTS)
# --- end of fault test hooks ---
"""

SLOW_SH = """#!/bin/sh
[ -n "$VD_LOG" ] && echo "start $$ $(date +%s.%N)" >> "$VD_LOG"
sleep "${VD_COMPILE_SLEEP:-0}"
[ -n "$VD_LOG" ] && echo "end $$ $(date +%s.%N)" >> "$VD_LOG"
exit 0
"""

PAUSE_SH = """#!/bin/sh
sleep "${VD_INSTALL_SLEEP:-0}"
"""


def add_hooks(project: Project) -> None:
    """Insert the slow steps between the ``_C`` and ``_fast_C`` definitions (so the install
    pause falls between the two extensions' installs, and before the cpu device's return)."""
    cmakelists = project.root / "CMakeLists.txt"
    text = cmakelists.read_text()
    anchor = "minivllm_add_extension(_fast_C"
    assert anchor in text
    cmakelists.write_text(text.replace(anchor, HOOKS + anchor, 1))
    (project.root / "vd_slow.sh").write_text(SLOW_SH)
    (project.root / "vd_install_pause.sh").write_text(PAUSE_SH)


@dataclass
class Background:
    """A ``vllm-dev`` run in the background, tagged so its descendants can be found in /proc."""

    proc: subprocess.Popen[str]
    token: str
    started: float = field(default_factory=time.monotonic)
    # Where stderr goes when the test must watch it while the run goes on (spawn's stderr_to).
    stderr_file: Path | None = None

    def stderr_so_far(self) -> str:
        assert self.stderr_file is not None, "spawn(..., stderr_to=...) to watch stderr"
        return self.stderr_file.read_text(errors="replace")

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        if self.stderr_file is not None:
            err = self.stderr_so_far()
        return self.proc.returncode, out, err


REPO = Path(__file__).resolve().parents[1]
# The Invoke front end over the repository's tasks.py (what `invoke build` in a terminal runs).
INVOKE = [str(Path(VLLM_DEV).parent / "invoke"), "--search-root", str(REPO)]


def _default_signals() -> None:
    """Run in the child before exec: a shell's background job (``pytest &``) and pytest-xdist's
    workers start with SIGINT ignored, and an ignored signal stays ignored across exec, so the
    Ctrl-C these tests send would never reach vllm-dev. A terminal's vllm-dev gets the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def spawn(project: Project, *args: str, env: Mapping[str, str] | None = None,
          program: list[str] | None = None, stderr_to: Path | None = None) -> Background:
    """Start vllm-dev in the background; with ``stderr_to`` its stderr goes to that file, which
    the test can poll for a message (Python's stderr is line-buffered, also into a file)."""
    token = uuid.uuid4().hex
    full = clean_env({**project.env, **(env or {}), "VD_TOKEN": token})
    with contextlib.ExitStack() as stack:
        stderr = (stack.enter_context(open(stderr_to, "w", encoding="utf-8"))  # noqa: SIM115
                  if stderr_to is not None else subprocess.PIPE)
        proc = subprocess.Popen([*(program or [VLLM_DEV]), *args], cwd=project.root, env=full,
                                text=True, stdout=subprocess.PIPE, stderr=stderr,
                                stdin=subprocess.DEVNULL, preexec_fn=_default_signals)
    return Background(proc, token, stderr_file=stderr_to)


def tagged_processes(token: str) -> list[tuple[int, str]]:
    """(pid, name) of every live process whose environment carries ``VD_TOKEN=token``."""
    needle = f"VD_TOKEN={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text(errors="replace")
        except OSError:
            continue
        if needle in environ.split(b"\0") and stat.rpartition(")")[2].split()[:1] != ["Z"]:
            found.append((int(entry), stat.partition("(")[2].rpartition(")")[0]))
    return found


def wait_for(predicate, *, timeout: float = 120, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def tagged_running(token: str, name: str) -> bool:
    return any(n == name for _, n in tagged_processes(token))


def sleeping(pid: int) -> bool:
    """Whether ``pid`` sleeps in a timed sleep now (Python's time.sleep), per /proc's wchan."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() in ("hrtimer_nanosleep", "do_nanosleep")
    except OSError:
        return False


def interrupt(bg: Background, signum: int) -> None:
    os.kill(bg.proc.pid, signum)


SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143),
           "SIGHUP": (signal.SIGHUP, 129)}


def ninjas_in(build_dir: Path) -> list[int]:
    """Ninja processes working in ``build_dir`` right now (a ninja's own fork child, caught
    between fork and exec of a job, is still called ninja: it is not a second ninja)."""
    root = os.path.realpath(build_dir)
    found = []
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            name = Path(f"/proc/{entry}/comm").read_text().strip()
            if name != "ninja":
                continue
            if os.readlink(f"/proc/{entry}/cwd") == root:
                found.append(int(entry))
                stat = Path(f"/proc/{entry}/stat").read_text(errors="replace")
                parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
        except OSError:
            continue
    return [pid for pid in found if parents.get(pid) not in found]
