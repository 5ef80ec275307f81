"""Long-lived children: commands vllm-dev starts, goes on working, then talks to or stops.

The one such child today is the checking interpreter (steps/verify.py's ``WarmChecker``): started
while ninja compiles so that its start-up and ``import torch`` overlap the compile, handed the
list of installed files on stdin afterwards, or stopped unused. Like every command vllm-dev
starts (see interrupts.py), a child runs in a session of its own, so stopping it stops
everything it started, and Ctrl-C or SIGTERM while vllm-dev waits on it stops it before the
interruption goes on. A child still running when its ``with`` block is left (an interruption
elsewhere, a failed build) is stopped there too: it never outlives the command that started it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from vllm_dev.errors import CannotRun
from vllm_dev.process.interrupts import GRACE_SECONDS, signal_for, stop_session


def mask(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class Child:
    """A started command with pipes to its stdin, stdout and stderr (text)."""

    def __init__(self, argv: list[str], popen: subprocess.Popen[str], *,
                 grace: float = GRACE_SECONDS, secrets: Sequence[str] = ()) -> None:
        self.argv = argv
        self._popen = popen
        self._grace = grace
        self._secrets = tuple(secrets)

    @property
    def returncode(self) -> int | None:
        """The exit status once the child ended (None while it runs)."""
        return self._popen.returncode

    def communicate(self, text: str | None = None, *, timeout: float) -> tuple[str, str]:
        """Write ``text`` to its stdin, close it, and wait for the end: (stdout, stderr).

        Past ``timeout`` seconds the child is stopped and :class:`CannotRun` raised (timed out);
        Ctrl-C or SIGTERM meanwhile stops it before the interruption goes on."""
        try:
            out, err = self._popen.communicate(text, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise CannotRun(f"`{mask(shlex.join(self.argv[:2]), self._secrets)}` did not "
                            f"answer within {timeout:g} s", argv=self.argv,
                            detail=f"timed out after {timeout:g} s", timed_out=True) from None
        except BaseException as exc:  # KeyboardInterrupt, Terminated
            self.stop(signal_for(exc))
            raise
        return out or "", err or ""

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop it (its whole session: ``signum``, SIGKILL after the grace period); harmless
        when it already ended."""
        with contextlib.suppress(OSError):
            if self._popen.stdin is not None:
                self._popen.stdin.close()
        stop_session(self._popen, signum, grace=self._grace)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._popen.poll() is None:
            self.stop(signal_for(exc) if exc is not None and not isinstance(exc, Exception)
                      else signal.SIGTERM)


def start_child(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    grace: float = GRACE_SECONDS,
    secrets: Sequence[str] = (),
) -> Child:
    """Start ``argv`` in a session of its own with pipes to it; :class:`CannotRun` when it
    cannot start. ``env`` is added to ``environ`` (None: this process's environment)."""
    args = [os.fspath(a) for a in argv]
    try:
        popen = subprocess.Popen(args, cwd=cwd, env=environment(env, environ),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, errors="replace",
                                 start_new_session=True)
    except OSError as exc:
        raise cannot_start(args, exc, secrets) from None
    return Child(args, popen, grace=grace, secrets=secrets)


def environment(env: Mapping[str, str] | None,
                environ: Mapping[str, str] | None) -> dict[str, str] | None:
    """A command's whole environment: ``env`` added to ``environ`` (None: this process's);
    None when that is just this process's own (the child then inherits it)."""
    if not env and environ is None:
        return None
    return {**(os.environ if environ is None else environ), **(env or {})}


def cannot_start(args: list[str], exc: OSError, secrets: Sequence[str]) -> CannotRun:
    """The one line for a command the system would not start, secrets masked."""
    return CannotRun(mask(f"cannot run {args[0]}: {exc.strerror or exc}", secrets), argv=args,
                     detail=mask(str(exc), secrets))
