"""Commands that own the terminal: the test run (``pytest``, maybe under ``gdb --args``).

Everything else vllm-dev starts runs in a session of its own (runner.py, interrupts.py), with no
terminal input, and is stopped by vllm-dev on Ctrl-C. A test run is different: ``pytest --pdb``,
a ``breakpoint()`` in a test and ``gdb --args`` read the keyboard, so the command inherits stdin
and stays in vllm-dev's process group, where the terminal's Ctrl-C reaches it directly.

On Ctrl-C (or SIGTERM) vllm-dev waits for the command to end rather than killing it at once
(pytest prints what it got to, gdb cleans up): the signal is forwarded only when it cannot have
come from the terminal (another process signalled vllm-dev alone), SIGKILL follows after a grace
period. Under a tool that owns Ctrl-C (``own_interrupt``: gdb interrupts the program, it does
not quit), vllm-dev ignores SIGINT while the tool runs; the tool's own exit decides.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from vllm_dev.errors import VllmDevError
from vllm_dev.process.interrupts import GRACE_SECONDS, signal_for

# What the exit status of a command killed by a signal becomes (the shell's convention).
_SIGNALLED = 128


def run_foreground(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None,
                   own_interrupt: bool = False, grace: float = GRACE_SECONDS) -> int:
    """Run ``argv`` with the terminal; its exit status (128 + N when signal N ended it).

    Raises KeyboardInterrupt (Terminated for SIGTERM) after the command ended when vllm-dev was
    interrupted meanwhile, or when the command itself died of SIGINT."""
    full_env = {**os.environ, **env} if env else None
    # Not SIG_IGN: an ignored signal stays ignored across exec, a handled one is reset there.
    previous = signal.signal(signal.SIGINT, _ignore) if own_interrupt else None
    try:
        try:
            proc = subprocess.Popen(list(argv), cwd=cwd, env=full_env)
        except FileNotFoundError as exc:
            raise VllmDevError(f"cannot run {argv[0]}: {exc.strerror}") from None
        try:
            code = proc.wait()
        except BaseException as exc:  # KeyboardInterrupt, Terminated
            _stop(proc, signal_for(exc), grace=grace)
            raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if code == -signal.SIGINT or (own_interrupt and code == _SIGNALLED + signal.SIGINT):
        raise KeyboardInterrupt
    return _SIGNALLED - code if code < 0 else code


def _ignore(signum: int, frame: object) -> None:
    """SIGINT while a tool that owns Ctrl-C runs: the tool handles it (see the module doc)."""


def _stop(proc: subprocess.Popen[bytes], signum: int, *, grace: float) -> None:
    """Let the command end on the signal it got from the terminal; forward it where it did not;
    SIGKILL after ``grace``. Further signals wait until this is done (as in interrupts.py)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM,
                                                        signal.SIGHUP})
    try:
        if signum != signal.SIGINT or not _from_terminal():
            with contextlib.suppress(OSError):
                proc.send_signal(signum)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _from_terminal() -> bool:
    """Whether a SIGINT was most likely the terminal's Ctrl-C, which reached the whole foreground
    process group (the command included): vllm-dev is that group, on a terminal."""
    try:
        return os.isatty(sys.stdin.fileno()) and os.tcgetpgrp(sys.stdin.fileno()) == \
            os.getpgrp()
    except (OSError, ValueError):
        return False
