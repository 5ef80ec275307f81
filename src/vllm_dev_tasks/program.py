"""The ``vllm-dev`` console script: Invoke's Program over the same namespace as ``tasks.py``."""

from __future__ import annotations

import os

from invoke import Exit, Program

from vllm_dev import __version__
from vllm_dev_tasks.tasks import namespace


class VllmDevProgram(Program):
    """Also reads ``./invoke.yaml`` of the working directory, as ``invoke`` does beside tasks.py."""

    def update_config(self, merge: bool = True) -> None:
        try:
            self.config.set_project_location(os.getcwd())
            self.config.load_project(merge=False)
            super().update_config(merge=merge)
        except Exception as exc:  # invoke.yaml is any file: bad YAML, a list, `vllm_dev: 5`...
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise Exit(
                f"vllm-dev: cannot use the invoke configuration ({type(exc).__name__}: {detail}); "
                "fix ./invoke.yaml (the vllm_dev: key must map setting names to values) or "
                "the INVOKE_* variables", code=2) from None


program = VllmDevProgram(namespace=namespace(), name="vllm-dev", binary="vllm-dev",
                         version=__version__)


def main() -> None:
    """Run the program; a Ctrl-C or SIGTERM that lands outside a task's own handling (start-up,
    or just after the task finished) still exits 130/143 with one line, never a traceback."""
    import signal

    try:
        _run(program)
    finally:
        # The work is over (its exit status decided): a signal from now on must not turn a
        # finished build into a death by signal during interpreter shutdown.
        for late in ("SIGINT", "SIGTERM", "SIGHUP"):
            signal.signal(getattr(signal, late), signal.SIG_IGN)


def _run(program: Program) -> None:
    import sys

    from invoke.config import AmbiguousMergeError

    from vllm_dev.interrupts import Terminated, sigterm_raises

    try:
        with sigterm_raises():
            program.run()
    except AmbiguousMergeError:  # found only when the tasks' defaults meet the files
        print("vllm-dev: cannot use the invoke configuration: its vllm_dev: key must map "
              "setting names to values (fix ./invoke.yaml or the INVOKE_* variables)",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("vllm-dev: interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated as exc:
        print(f"vllm-dev: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
