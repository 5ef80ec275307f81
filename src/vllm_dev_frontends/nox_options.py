"""The options of the Nox build sessions, after ``--``: ``nox -s release -- --jobs 8 --cache none``.

A session runs the steps setup, prime, build and install, so it takes the options of every setting
those steps read, derived from the declarations (:mod:`vllm_dev.config.declarations`): the same
flags, short flags and help as the Invoke tasks. Two differ by nature: the session's name is the
preset (no ``--preset``), and ``--python`` replaces the session's own venv. The session-only
arguments (``--target``, ``--merge``, ...) are the task-only options declared for the sessions
(:mod:`vllm_dev.config.task_options`, ``NOX``): the same flags and short flags as the tasks', in
the sessions' words. Values are checked once, by
:meth:`~vllm_dev.config.settings.Settings.resolve`, with the messages the tasks give.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from vllm_dev.config import task_options
from vllm_dev.config.declarations import Setting, flags_from_options, for_steps
from vllm_dev.errors import VllmDevError

#: The steps a build session runs.
SESSION_STEPS = ("setup", "prime", "build", "install")
#: The session's name is its preset; a session never reads nor writes remembered settings (it is
#: a clean room), so --no-remember would change nothing.
_NOT_OPTIONS = frozenset({"preset", "no_remember"})
#: Where the session's meaning of a setting is not the tasks'.
SESSION_HELP = {
    "python": "target interpreter of your own (a venv that already holds vLLM's editable "
              "install and build requirements) instead of the session's venv; setup is skipped",
}


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        known = ", ".join(sorted(o for a in self._actions for o in a.option_strings))
        raise VllmDevError(f"build session arguments (after --): {message}; known: {known}")


def session_settings() -> tuple[Setting, ...]:
    """The settings a build session takes as options, in declaration order."""
    return tuple(s for s in for_steps(*SESSION_STEPS) if s.name not in _NOT_OPTIONS)


def parser() -> argparse.ArgumentParser:
    """The parser of a build session's arguments (no ``--help``: nox owns the command line)."""
    # allow_abbrev=False: `--cache` must not be read as a prefix of --cache-dir, nor `--job` of
    # --jobs; the Invoke tasks take whole names only, too.
    parser = _ArgumentParser(prog="nox -s <preset> --", add_help=False, allow_abbrev=False)
    for s in session_settings():
        names = [str(s.flag), *([f"-{s.short}"] if s.short else [])]
        help = SESSION_HELP.get(s.name, s.describe())
        if s.switch:
            parser.add_argument(*names, dest=s.param, action="store_true", help=help)
        elif s.repeatable:
            parser.add_argument(*names, dest=s.param, action="append", help=help)
        else:
            parser.add_argument(*names, dest=s.param, help=help)
    for o in task_options.for_task(task_options.NOX):
        help = o.help_for(task_options.NOX)
        if o.kind == task_options.SWITCH:
            parser.add_argument(*o.flags(), dest=o.name, action="store_true", help=help)
        elif o.kind == task_options.REPEATABLE:
            parser.add_argument(*o.flags(), dest=o.name, action="append", default=[], help=help)
        else:
            parser.add_argument(*o.flags(), dest=o.name, help=help)
    return parser


def parse_posargs(posargs: Sequence[str]) -> argparse.Namespace:
    """``nox -s release -- --source PATH ...``: the same names as the tasks' flags."""
    return parser().parse_args(list(posargs))


def setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The ``flags`` of :meth:`~vllm_dev.config.settings.Settings.resolve` from parsed
    arguments (the session adds ``python`` and ``preset``)."""
    return flags_from_options(vars(args), session_settings())
