"""Stopping vllm-dev's children completely when the user interrupts (Ctrl-C) or kills (SIGTERM).

Every external command starts in a session of its own (``setsid``). Two reasons:

* Ninja moves each compile job into a process group of its own, so signalling the process
  group of cmake/ninja alone would orphan the running ``nvcc``/``cicc``/``ptxas``. A session
  cannot be left by ``setpgid``, so "every process whose session id is the child's" is exactly
  the tree we started, even after its members were re-parented to init.
* The terminal's Ctrl-C then reaches only vllm-dev, which forwards it once, in order: first the
  same signal (ninja and cmake clean up: ninja deletes half-written outputs), then, after a short
  grace period, SIGKILL for whatever is still alive in the session.

SIGTERM is turned into a :class:`Terminated` exception so that ``finally`` blocks (lock release,
temporary files) run just as for Ctrl-C; the front end maps it to exit status 143.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

GRACE_SECONDS = 5.0


class Terminated(BaseException):
    """SIGTERM (or SIGHUP: the terminal closed) arrived; a BaseException like KeyboardInterrupt
    so ``except Exception`` skips it. Exit status 128 + the signal, as a shell reports it."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
        self.message = "hung up" if signum == signal.SIGHUP else "terminated"


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


# Children live in sessions of their own, so a closing terminal's SIGHUP reaches only vllm-dev:
# it must be handled like SIGTERM or the compile tree would run on, orphaned.
_HANDLED = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only)."""
    try:
        previous = {s: signal.signal(s, _raise_terminated) for s in _HANDLED}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# Read from /proc by hand, not with psutil: the tree is found by *session id* (see above), which
# psutil does not report (it would still take os.getsid per pid), and psutil's children() follows
# parent links that re-parented compile jobs have lost. What psutil would save is a few lines of
# /proc parsing, not worth a compiled dependency in every install (host/machine.py reads /proc
# and cgroups by hand for the same reason: psutil knows neither cgroup quotas nor limits).
def session_members(sid: int, *, proc_root: str = "/proc") -> list[int]:
    """Pids of the live (non-zombie) processes in session ``sid``, read from ``/proc``."""
    members = []
    for pid in _pids(proc_root):
        try:
            with open(f"{proc_root}/{pid}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        # After the command name: state ppid pgrp session ...
        if len(fields) > 3 and fields[0] != "Z" and fields[3] == str(sid):
            members.append(pid)
    return members


def _pids(proc_root: str) -> list[int]:
    try:
        return [int(entry) for entry in os.listdir(proc_root) if entry.isdigit()]
    except OSError:
        return []


def _signal_session(sid: int, signum: int) -> None:
    for pid in session_members(sid):
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def stop_session(proc: subprocess.Popen[Any], signum: int, *,
                 grace: float = GRACE_SECONDS) -> None:
    """Send ``signum`` to everything ``proc`` started, wait up to ``grace`` s, then SIGKILL the
    rest; returns once ``proc`` is reaped and no process of its session is left."""
    # A second Ctrl-C must not cut the clean-up short: hold both signals until it is done (they
    # are delivered, and handled by the front end, when the mask is restored).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, *_HANDLED})
    try:
        _stop_session(proc, signum, grace=grace)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _stop_session(proc: subprocess.Popen[Any], signum: int, *, grace: float) -> None:
    sid = proc.pid  # start_new_session: the child is its session's leader
    _signal_session(sid, signum)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)
        if not session_members(sid):
            break
    else:
        _signal_session(sid, signal.SIGKILL)
    # Ninja's jobs may outlive ninja for an instant: SIGKILL anything still left, then reap.
    for _ in range(100):
        left = session_members(sid)
        if not left:
            break
        _signal_session(sid, signal.SIGKILL)
        time.sleep(0.02)
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        proc.wait(timeout=5)


def signal_for(exc: BaseException) -> int:
    """The signal to forward for an interruption of the parent."""
    return exc.signum if isinstance(exc, Terminated) else signal.SIGINT


def run_in_session(
    args: list[str],
    *,
    cwd: os.PathLike[str] | str | None = None,
    env: dict[str, str] | None = None,
    capture: bool = False,
    timeout: float | None = None,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a new session; on Ctrl-C, SIGTERM or timeout every process it
    started is stopped (see :func:`stop_session`) before the exception propagates. Started from
    a thread of a :class:`SessionGroup`, it is also stopped when the group is."""
    pipe = subprocess.PIPE if capture else None
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=pipe,
                            stderr=pipe, text=True, errors="replace", start_new_session=True,
                            pass_fds=pass_fds)
    group: SessionGroup | None = getattr(_joined, "group", None)
    if group is not None:
        group.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_session(proc, signal.SIGTERM, grace=1.0)
        raise
    except BaseException as exc:  # KeyboardInterrupt, Terminated
        stop_session(proc, signal_for(exc))
        raise
    finally:
        if group is not None:
            group.discard(proc)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


# The group the current thread's commands belong to (see SessionGroup.joined).
_joined = threading.local()


class SessionGroup:
    """Commands started by :func:`run_in_session` from worker threads, stopped together.

    Ctrl-C and SIGTERM reach the main thread only; a worker thread blocked on its command never
    sees them, and joining the threads would wait for every command in flight (the header scans
    of a big selection: seconds each). The main thread stops the group instead: each command's
    whole session, and any command a worker starts after that, at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[str]] = set()
        self._stopped: int | None = None  # the signal the group was stopped with

    @contextlib.contextmanager
    def joined(self) -> Iterator[None]:
        """Within the block, the calling thread's commands belong to this group."""
        _joined.group = self
        try:
            yield
        finally:
            _joined.group = None

    def add(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            stopped = self._stopped
            if stopped is None:
                self._live.add(proc)
        if stopped is not None:  # started as the group was being stopped
            stop_session(proc, stopped, grace=1.0)

    def discard(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._live.discard(proc)

    def stop(self, signum: int) -> None:
        """Stop every command of the group (``signum``, SIGKILL after a second)."""
        with self._lock:
            self._stopped = signum
            live = list(self._live)
        for proc in live:
            stop_session(proc, signum, grace=1.0)


def processes_with_env(name: str, value: str, *, proc_root: str = "/proc") -> list[int]:
    """Live processes (other than this one) whose environment has ``name=value``.

    The build lock puts its path in the environment of everything a build starts (cmake, ninja,
    every compiler, inherited down the tree), so a build killed with SIGKILL, whose ninja or
    orphaned compile jobs may still run, is found completely, and nothing else is."""
    needle = f"{name}={value}".encode()
    found = []
    for pid in _pids(proc_root):
        if pid == os.getpid():
            continue
        try:
            with open(f"{proc_root}/{pid}/environ", "rb") as handle:
                if needle not in handle.read().split(b"\0"):
                    continue
        except OSError:
            continue
        if pid_alive(pid):
            found.append(pid)
    return sorted(found)


def stop_processes(pids: list[int], *, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM ``pids`` (ninja then stops its jobs), SIGKILL whatever is left after ``grace``."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (zombies count as dead: they hold no lock)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):  # OverflowError: a pid beyond the C type (a bogus note)
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rpartition(")")[2].split()[:1]
        return state != ["Z"]
    except OSError:
        return True
