"""One build at a time per build dir: a lock held around configure, compile and install.

Two ninjas in one build dir corrupt it (both rewrite ``.ninja_log``/``.ninja_deps`` and race on the
same object files), and two installs race on the same ``.so``. So every step that writes into a
build dir holds ``<build dir>/.vllm-dev.lock`` for its whole duration.

The lock is :class:`filelock.FileLock`, an ``flock(2)`` lock on POSIX: the kernel drops it when
its holder dies, however it dies (even ``kill -9``), so a killed build can never wedge later ones.
What the kernel does not keep is *who* held it; a JSON note beside the lock
(``.vllm-dev.lock.json``: pid, command line, start time) lets a waiting process name the holder.
A note left behind by a holder that no longer exists marks a build that was killed: it is reported
as stale and taken over. The note is advisory only; the flock decides.

The lock lives inside the build dir (created if needed) rather than in the checkout's ``.vllm-dev``
so that it follows the build dir wherever its ``binaryDir`` puts it and goes away with ``clean``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_dev.errors import VllmDevError
from vllm_dev.process.interrupts import pid_alive, processes_with_env, stop_processes
from vllm_dev.state import layout

LOCK_NAME = layout.LOCK
HOLDER_NAME = layout.LOCK_HOLDER
# How often a waiting process re-checks the lock (and how long before it first says it waits).
POLL_SECONDS = 0.2
_LOCKS: dict[str, Any] = {}  # lock file -> its one FileLock (see build_lock)
# Set, while the lock is held, in this process's environment, so that every process a build
# starts carries it; how a killed build's leftovers are recognised.
LOCK_ENV = "VLLM_DEV_BUILD_LOCK"


def _lock_key(build_dir: Path) -> str:
    return os.path.realpath(build_dir / LOCK_NAME)


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a build dir's lock, as its note says."""

    pid: int
    command: str
    started: float

    def describe(self) -> str:
        try:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        except (OverflowError, ValueError, OSError):  # a note's time the C library cannot show
            since = "an unknown time"
        return f"pid {self.pid} (`{self.command}`, since {since})"

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


def read_holder(build_dir: Path) -> Holder | None:
    """The holder note, or None when absent or unreadable (the note is advisory: never fatal)."""
    try:
        data = json.loads((build_dir / HOLDER_NAME).read_text(encoding="utf-8"))
        return Holder(pid=int(data["pid"]), command=str(data["command"]),
                      started=float(data["started"]))
    except (OSError, ValueError, TypeError, KeyError, OverflowError):
        return None


def _write_holder(build_dir: Path, command: str) -> None:
    note = {"pid": os.getpid(), "command": command, "started": time.time()}
    path = build_dir / HOLDER_NAME
    tmp = path.with_name(f"{HOLDER_NAME}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(note) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a note we cannot write only makes waiting messages vaguer
        with contextlib.suppress(OSError):
            tmp.unlink()


def _prepare_dir(build_dir: Path) -> None:
    if build_dir.exists() and not build_dir.is_dir():
        raise VllmDevError(f"build dir {build_dir} exists and is not a directory: remove it")
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VllmDevError(f"cannot create build dir {build_dir}: {exc.strerror}") from None


@contextlib.contextmanager
def build_lock(
    build_dir: Path,
    *,
    wait: bool = True,
    say: Callable[[str], None],
    command: str,
    poll: float = POLL_SECONDS,
    waiting: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> Iterator[Holder | None]:
    """Hold ``build_dir``'s lock for the ``with`` block.

    When another process holds it: with ``wait`` say once who holds it and block until it is
    released (inside ``waiting()`` when given: the build's report counts the wait as a phase);
    without ``wait`` fail at once with one line naming the holder. Yields the stale holder this
    process took over from (a killed build), else None. ``command`` is what a waiting process
    will be told this one is doing. Re-entrant within one process.
    """
    # lazy (a --dry build takes no lock): tests/test_lazy_imports.py
    from filelock import FileLock, Timeout

    _prepare_dir(build_dir)
    key = _lock_key(build_dir)
    # One instance per file, held for the life of the process: a second flock of ours would wait
    # for the first, while the same instance counts re-entries (``lock_counter``). Hand-kept, not
    # filelock's ``is_singleton``: those instances are held weakly, so one is finalized when a
    # build's ``with`` ends, and a Ctrl-C landing in filelock's finalizer printed a traceback
    # (test_interrupts' install-interrupted-at-many-moments test caught it).
    lock = _LOCKS.get(key)
    if lock is None:
        lock = _LOCKS[key] = FileLock(key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = read_holder(build_dir)
        who = holder.describe() if holder else "another vllm-dev process"
        if not wait:
            raise VllmDevError(
                f"build dir {build_dir} is busy: {who} is using it; wait for it to finish or "
                "run without --no-wait to queue behind it") from None
        say(f"waiting for {who}, which is using {build_dir} (Ctrl-C to give up)")
        started = time.monotonic()
        with waiting() if waiting else contextlib.nullcontext():
            lock.acquire(timeout=-1, poll_interval=poll)
        say(f"got {build_dir} after {time.monotonic() - started:.1f} s")
    except OSError as exc:
        raise VllmDevError(f"cannot lock {build_dir}: {exc.strerror} (vllm-dev writes a lock "
                           "file there: is the checkout read-only?)") from None
    stale: Holder | None = None
    try:
        if lock.lock_counter == 1:
            previous = read_holder(build_dir)
            if previous is not None and previous.pid != os.getpid() and not previous.alive:
                stale = previous
                say(f"stale lock in {build_dir}: {previous.describe()} is gone (killed?); "
                    "taking it over")
                _stop_leftovers(build_dir, say)
            _write_holder(build_dir, command)
            os.environ[LOCK_ENV] = key  # inherited by every child: see _stop_leftovers
        yield stale
    finally:
        if lock.lock_counter == 1:
            os.environ.pop(LOCK_ENV, None)
            with contextlib.suppress(OSError):
                (build_dir / HOLDER_NAME).unlink()
        lock.release()


def _stop_leftovers(build_dir: Path, say: Callable[[str], None]) -> None:
    """A build killed with SIGKILL leaves its ninja (or, once ninja died of a broken pipe, its
    compile jobs) running: stop them before starting another ninja in the same build dir."""
    leftovers = processes_with_env(LOCK_ENV, _lock_key(build_dir))
    if leftovers:
        say(f"stopping {len(leftovers)} process(es) the killed build left running in {build_dir} "
            f"(pids {', '.join(map(str, leftovers[:8]))}{' ...' if len(leftovers) > 8 else ''})")
        stop_processes(leftovers)


def current_command() -> str:
    """This process's command line as a user would recognise it (``vllm-dev build ...``)."""
    argv = list(sys.argv) or ["vllm-dev"]
    argv[0] = os.path.basename(argv[0]) or "vllm-dev"
    return shlex.join(argv)
