"""The one place where vllm-dev starts external programs.

Workflow code never calls :mod:`subprocess` itself: it asks a :class:`Runner`. That keeps dry runs
honest (commands that change something are only printed), lets tests substitute a fake runner for
argument plumbing, and gives one spot for timeouts, live output and signal handling.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vllm_dev.errors import CommandFailed, VllmDevError
from vllm_dev.process.interrupts import run_in_session


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

    ``stream``, when given, receives the command's output (stdout and stderr merged) line by line
    as it appears instead of it going to the terminal; ``pseudo_terminal`` makes the command see a
    terminal (ninja then also reports steps as they start)."""

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
                from vllm_dev.process.streaming import run_streaming

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

    def _redact(self, line: str) -> str:
        for secret in self.secrets:
            if secret:
                line = line.replace(secret, "***")
        return line
