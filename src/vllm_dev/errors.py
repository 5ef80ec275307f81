"""Errors that reach the user as one line.

Every problem a user can fix is a :class:`VllmDevError`; the front ends (Invoke tasks, the
``vllm-dev`` script, Nox sessions) print ``str(error)`` and exit non-zero without a traceback.
"""

from __future__ import annotations

import shlex


class VllmDevError(Exception):
    """A problem with the user's input or machine, explained in one line with its fix."""

    exit_code: int = 1


class CommandFailed(VllmDevError):
    """An external command (cmake, uv, ...) failed; its own exit code becomes ours."""

    def __init__(self, argv: list[str], returncode: int) -> None:
        self.argv = argv
        self.returncode = returncode
        self.exit_code = returncode if 0 < returncode < 256 else 1
        # The whole command, as the user could run it again (never shortened with "...").
        super().__init__(f"`{shlex.join(argv)}` failed with exit code {returncode}")


class CannotRun(VllmDevError):
    """An external command could not be started, or did not finish within its time.

    ``detail`` is what the system said (the OSError's words, or the timeout's), secrets masked,
    for a caller that words its own line around it; ``timed_out`` tells the two apart."""

    def __init__(self, message: str, *, argv: list[str], detail: str,
                 timed_out: bool = False) -> None:
        self.argv = argv
        self.detail = detail
        self.timed_out = timed_out
        super().__init__(message)
