"""The one place where vllm-dev starts external programs.

Workflow code never calls :mod:`subprocess` itself (tests/test_spawning.py checks it): it
asks a :class:`Runner`. That keeps dry runs honest (commands that change something are only
printed), lets tests substitute a fake runner for argument plumbing, and gives one spot for
timeouts, live output, secrets masking and signal handling. Three shapes:

* :meth:`Runner.run`: a command that does the work (cmake, uv): echoed, only printed under
  ``--dry``, its output streamed or captured, a failure raised as :class:`CommandFailed`;
* :meth:`Runner.query` (and the module's :func:`query`): a command that only answers (git, ninja's
  graph, a compiler's ``-M`` scan, ``--version``): never echoed, run under ``--dry`` too (a dry
  run needs the answers to say what it would do), its exit status the caller's to read;
* :meth:`Runner.start` (process/children.py): a long-lived child vllm-dev talks to later.

Each runs in a session of its own, stopped whole on Ctrl-C or SIGTERM (process/interrupts.py).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ParamSpec, Protocol, TypeVar

from vllm_dev.errors import CannotRun, CommandFailed, VllmDevError
from vllm_dev.process.children import Child, cannot_start, environment, mask, start_child
from vllm_dev.process.interrupts import (
    GRACE_SECONDS,
    SessionGroup,
    run_in_session,
    signal_for,
)
from vllm_dev.process.streaming import run_streaming

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class Completed:
    """What a finished command left behind."""

    argv: list[str]
    returncode: int
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Runner(Protocol):
    """Runs commands for the workflow; ``dry`` runners only print commands that change things.

    A command that only answers is a :meth:`query` (``run(..., mutates=False)`` is the older
    spelling of one, still honoured). ``stream``, when given, receives the command's output
    (stdout and stderr merged) line by line as it appears instead of it going to the terminal;
    ``pseudo_terminal`` makes the command see a terminal (ninja then also reports steps as they
    start)."""

    dry: bool

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        capture: bool = False,
        check: bool = True,
        mutates: bool = True,
        timeout: float | None = None,
        stream: Callable[[str], None] | None = None,
        pseudo_terminal: bool = False,
    ) -> Completed: ...

    def query(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        timeout: float | None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Completed:
        """A command that only answers; see the module's :func:`query` (this one adds the
        runner's environment and masks its secrets)."""
        ...

    def start(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        grace: float = ...,
    ) -> Child:
        """A long-lived child (process/children.py), with the runner's environment."""
        ...


def format_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """Shell-quoted command line as a user would type it, with the variables we set in front."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    line = shlex.join(argv)
    return f"{prefix} {line}" if prefix else line


@dataclass
class SubprocessRunner:
    """Runs commands for real, streaming their output unless ``capture`` is asked for.

    ``env`` given to :meth:`run` is *added* to the current environment (the user's PATH, CUDA_HOME
    and so on must reach cmake); ``echo`` receives every command line before it runs.
    """

    dry: bool = False
    echo: Callable[[str], None] | None = None
    secrets: Sequence[str] = field(default_factory=tuple)
    # Added to every command's environment without being echoed: values that must reach cmake
    # but stay out of files and logs (a credentialed remote cache URL the presets name).
    environment: Mapping[str, str] = field(default_factory=dict)

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        capture: bool = False,
        check: bool = True,
        mutates: bool = True,
        timeout: float | None = None,
        stream: Callable[[str], None] | None = None,
        pseudo_terminal: bool = False,
    ) -> Completed:
        args = [os.fspath(a) for a in argv]
        if self.echo is not None and mutates:  # read-only probes are noise, even in --dry
            self.echo(self._redact(format_command(args, env)))
        if self.dry and mutates:
            return Completed(args, 0)
        full_env = {**os.environ, **self.environment, **(env or {})} if (
            env or self.environment) else None
        start = time.monotonic()
        try:
            # A session of its own, stopped whole on Ctrl-C/SIGTERM (see process/interrupts.py).
            if stream is not None and not capture:
                # Line by line to a consumer (the build's progress display); see streaming.py.
                code = run_streaming(args, on_line=stream, cwd=cwd, env=full_env,
                                     pseudo_terminal=pseudo_terminal)
                proc = subprocess.CompletedProcess(args, code, "", "")
            else:
                proc = run_in_session(args, cwd=cwd, env=full_env, capture=capture,
                                      timeout=timeout)
        except FileNotFoundError as exc:
            raise VllmDevError(f"cannot run {args[0]}: {exc.strerror}") from None
        except subprocess.TimeoutExpired:
            raise VllmDevError(
                f"`{shlex.join(args[:2])}` did not answer within {timeout:g} s"
            ) from None
        done = Completed(
            args, proc.returncode, proc.stdout or "", proc.stderr or "", time.monotonic() - start
        )
        if check and not done.ok:
            if capture and done.stderr:
                sys.stderr.write(done.stderr)
            raise CommandFailed(args, done.returncode)
        return done

    def query(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        timeout: float | None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Completed:
        return query(argv, timeout=timeout, cwd=cwd, env={**self.environment, **(env or {})},
                     secrets=self.secrets)

    def start(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        grace: float = GRACE_SECONDS,
    ) -> Child:
        return start_child(argv, cwd=cwd, env={**self.environment, **(env or {})}, grace=grace,
                           secrets=self.secrets)

    def _redact(self, line: str) -> str:
        return mask(line, self.secrets)


def query(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float | None,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    pass_fds: tuple[int, ...] = (),
) -> Completed:
    """Run a command that only answers and return what it printed (stdout and stderr apart).

    Never echoed and run under ``--dry`` too: target selection, the cost check and the probes
    need the answers to say what a dry run would do. A non-zero exit is the caller's to read
    (``returncode``); a command that cannot start, or does not end within ``timeout`` seconds
    (a required argument: a hung ``git`` must not hang a build, so no query waits forever
    unless its caller says None outright), raises :class:`CannotRun`, its ``detail`` the
    system's words, secrets masked. ``env`` is added to ``environ`` (None: this process's
    environment); ``pass_fds`` are handed to the child (dist.py's in-memory configuration).

    This module-level function is the default for code with no runner at hand, rather than a
    runner passed down to it: the pure functions under a selection (W from git, ninja's graph,
    the header scans, ``ninja -n``, ``nm``) are called from steps, the test loop, the cost check
    and bench scripts alike, and need nothing a runner adds to a query: no echo and no dry mode
    (a query has neither), no secret (their commands carry none), no compiler-cache environment
    (git's and ninja's answers do not depend on it). Passing a runner through every caller would
    only be a fake's way in, and these are tested against the real git, ninja and compilers.
    :meth:`SubprocessRunner.query` is the same with the run's environment and secrets, for code
    that has a runner (the probes of the target interpreter, the tools' versions)."""
    args = [os.fspath(a) for a in argv]
    start = time.monotonic()
    try:
        proc = run_in_session(args, cwd=cwd, env=environment(env, environ), capture=True,
                              timeout=timeout, pass_fds=pass_fds)
    except OSError as exc:
        raise cannot_start(args, exc, secrets) from None
    except subprocess.TimeoutExpired as exc:
        raise CannotRun(f"`{mask(shlex.join(args[:2]), secrets)}` did not answer within "
                        f"{timeout:g} s", argv=args, detail=mask(str(exc), secrets),
                        timed_out=True) from None
    return Completed(args, proc.returncode, proc.stdout or "", proc.stderr or "",
                     time.monotonic() - start)


class QueryPool:
    """Functions that run queries, on ``jobs`` worker threads (the header scans of a selection).

    Leaving the ``with`` block by an exception (Ctrl-C, SIGTERM, a scan that failed) stops every
    query still running, whole session, before the threads are joined: an interrupted selection
    neither waits for the scans in flight nor leaves a compiler running (Ctrl-C reaches only the
    main thread, see interrupts.SessionGroup)."""

    def __init__(self, jobs: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        self._group = SessionGroup()

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        def joined() -> T:
            with self._group.joined():
                return fn(*args, **kwargs)

        return self._pool.submit(joined)

    def __enter__(self) -> QueryPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:  # what has not started never will; what runs is stopped
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._group.stop(signal.SIGTERM if isinstance(exc, Exception) else signal_for(exc))
        self._pool.shutdown(wait=True)
