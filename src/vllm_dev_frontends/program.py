"""The ``vllm-dev`` console script: Invoke's Program over the same namespace as ``tasks.py``.

Invoke's Program is a general task runner; vllm-dev narrows it to a tool of its own: only the core
options that mean something here (``--pty``, ``--hide``, ``--prompt-for-sudo-password``… are about
Invoke's ``run()``, which vllm-dev does not use), and usage errors in vllm-dev's one-line style
with a suggestion (``vllm-dev: unknown task 'bulid' (did you mean 'build'?)``, exit 2).
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import re
import shlex
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from invoke import Argument, Exit, ParseError, Program
from invoke.completion.complete import complete, print_completion_script
from invoke.config import AmbiguousMergeError
from invoke.parser import ParserContext

from vllm_dev import __version__
from vllm_dev.checkout.tree import find_checkout
from vllm_dev.config import task_options
from vllm_dev.config.declarations import SETTINGS, setting
from vllm_dev.errors import VllmDevError
from vllm_dev.installs.components import components
from vllm_dev.process.interrupts import Terminated, sigterm_raises
from vllm_dev.state import layout
from vllm_dev_frontends.invoke_tasks import CORE_SHORT_FLAGS, namespace

USAGE_ERROR = 2  # the exit status of a command line that cannot be parsed, as argparse's


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


_VALUE_WORDS = {"positive_int": "INT", "positive_float": "NUMBER", "non_negative_float": "NUMBER"}
# Flags whose values vllm-dev can list for shell completion (the rest: the shell's own, files).
_PRESET_FLAGS = (str(setting("preset").flag), f"-{setting('preset').short}")
_TARGET_FLAGS = task_options.completed_with(task_options.TARGETS)


def value_candidates(remainder: str, binaries: Iterable[str]) -> list[str] | None:
    """What completes the value of the flag before the cursor: preset names for ``--preset``,
    the build dir's targets for ``--target``/``--component``, the choices of a setting that has
    them; None when the word is not such a value (Invoke completes it: flags, task names)."""
    try:
        words = shlex.split(remainder)
    except ValueError:
        return None
    if words and words[0] in set(binaries) | {os.path.basename(b) for b in binaries}:
        words = words[1:]
    if not words:
        return None
    flag = words[-1] if words[-1].startswith("-") else (words[-2] if len(words) > 1 else "")
    if flag in _PRESET_FLAGS:
        return _preset_names()
    if flag in _TARGET_FLAGS:
        return _target_names(words)
    for declared in SETTINGS:
        if declared.choices and flag in (declared.flag, f"-{declared.short}"):
            return list(declared.choices)
    return None


def _checkout_state() -> tuple[os.PathLike[str] | None, list[str]]:
    try:
        root = find_checkout(os.environ.get("VLLM_DEV_SOURCE"), cwd=Path.cwd()).root
    except VllmDevError:
        return None, []
    return root, [str(root / layout.STATE_DIR / layout.TEMPLATES),
                  os.environ.get("VLLM_DEV_PRESETS_DIR", "")]


def _templates() -> tuple[os.PathLike[str] | None, dict[str, object]]:
    # lazy (only Tab completion reads the presets): tests/test_lazy_imports.py
    from vllm_dev.presets.render import bundled_presets_dir, load_template_set

    root, extra = _checkout_state()
    dirs = [bundled_presets_dir(), *(Path(d) for d in extra if d and Path(d).is_dir())]
    return root, dict(load_template_set(dirs).templates)


def _preset_names() -> list[str]:
    return sorted(_templates()[1])


def _target_names(words: list[str]) -> list[str]:
    """The targets of the preset's build dir (``--preset`` on the line, else the setting's)."""
    from vllm_dev.presets.render import resolve_binary_dir  # as in _templates

    root, templates = _templates()
    preset = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in _PRESET_FLAGS),
                  os.environ.get("VLLM_DEV_PRESET") or "release")
    template = templates.get(preset)
    if root is None or template is None:
        return []
    try:
        return components(resolve_binary_dir(template, source_dir=Path(root)))  # type: ignore[arg-type]
    except VllmDevError:
        return []


class VllmDevProgram(Program):
    """Also reads ``./invoke.yaml`` of the working directory, as ``invoke`` does beside tasks.py."""

    def core_args(self) -> list[Argument]:
        short = {long: letter for letter, long in CORE_SHORT_FLAGS.items()}

        def names(long: str) -> tuple[str, ...]:
            return (long, short[long]) if long in short else (long,)

        return [
            Argument(names=names("help"), optional=True,
                     help="Show this help, or a task's help (vllm-dev TASK --help), and exit."),
            Argument(names=names("version"), kind=bool, default=False,
                     help="Show vllm-dev's version and exit."),
            Argument(names=names("list"), kind=bool, default=False, help="List the tasks."),
            Argument(names=names("dry"), kind=bool, default=False,
                     help="Print every command that would change something; change nothing."),
            Argument(names=names("config"),
                     help="Configuration file to read (keys under vllm_dev:, as in "
                          "./invoke.yaml)."),
            Argument(names=("print-completion-script",), kind=str, default="",
                     help="Print the shell completion script for bash, zsh or fish (see the "
                          "README: Shell completion)."),
            Argument(names=("complete",), kind=bool, default=False,
                     help="Print completion candidates for the rest of the command line (what "
                          "the completion script calls)."),
        ]

    def parse_core(self, argv: list[str] | None) -> None:
        # Invoke's own version also reads --debug and --write-pyc, which vllm-dev does not offer.
        self.normalize_argv(argv)
        self.parse_core_args()
        if self.args.version.value:
            self.print_version()
            raise Exit
        shell = self.args["print-completion-script"].value
        if shell:
            with self._usage_errors():
                print_completion_script(shell=shell, names=self.binary_names)
            raise Exit

    def parse_core_args(self) -> None:
        with self._usage_errors():
            super().parse_core_args()

    def parse_tasks(self) -> None:
        with self._usage_errors():
            super().parse_tasks()

    def parse_cleanup(self) -> None:
        # Invoke's own version also reads --list-format/--list-depth, which vllm-dev drops.
        wanted = self.args.help.value
        if wanted is True:
            self.print_help()
            raise Exit
        if wanted:
            if wanted not in self.parser.contexts:
                raise self._unknown_task(wanted)
            self.print_task_help(wanted)
            raise Exit
        if self.args.list.value:
            self.list_tasks()
            raise Exit
        if self.args.complete.value:
            values = value_candidates(self.core.remainder, self.binary_names)
            if values is not None:  # a value of a flag vllm-dev can name (presets, targets...)
                for value in values:
                    print(value)
                raise Exit
            complete(names=self.binary_names, core=self.core,
                     initial_context=self.initial_context, collection=self.collection,
                     parser=self._make_parser())
        if not self.tasks and not self.collection.default:
            self.no_tasks_given()

    def print_help(self) -> None:
        print(f"Usage: {self.binary} [--options] <task> [--task-options] [-- <passed on>]")
        print("")
        print("Options:")
        print("")
        self.print_columns(self.initial_context.help_tuples())
        self.list_tasks()
        print(f"Each task's options: {self.binary} <task> --help")

    def task_list_opener(self, extra: str = "") -> str:
        return "Tasks"

    def print_task_help(self, name: str) -> None:
        # Invoke's version speaks of core opts, "other tasks here" and a "Docstring:".
        print(f"Usage: {self.binary} {name} [--options]")
        print("")
        for line in (inspect.getdoc(self.collection[name]) or "").splitlines():
            print(f"{self.leading_indent}{line}" if line.strip() else "")
        print("")
        print("Options:")
        context = self.parser.contexts[name]
        repeatable = {f"--{a.name.replace('_', '-')}" for a in context.args.values()
                      if a.kind is list}
        # Invoke calls every value a STRING; a number setting says what it takes
        words = {f"--{param.replace('_', '-')}": word
                 for param, declared in getattr(self.collection[name], "settings", {}).items()
                 if (word := _VALUE_WORDS.get(getattr(declared.parse, "__name__", "")))}
        tuples = []
        for spec, text in context.help_tuples():
            names = spec.split(", ")
            if names[-1] in repeatable:  # Invoke shows a repeatable option as an on/off switch
                spec = ", ".join(n if n.startswith("--") else f"{n} STRING" for n in names[:-1])
                spec = f"{spec}, {names[-1]}=STRING" if spec else f"{names[-1]}=STRING"
            word = words.get(names[-1].split("=", 1)[0])
            tuples.append((spec.replace("STRING", word) if word else spec, text))
        self.print_columns(tuples)

    def update_config(self, merge: bool = True) -> None:
        # Invoke's own version maps its run() flags (--echo, --pty, --warn-only...) to config;
        # vllm-dev keeps --dry and -f/--config only.
        try:
            self.config.set_project_location(os.getcwd())
            self.config.load_project(merge=False)
            self.config.load_overrides({"run": {"dry": True}} if self.args.dry.value else {},
                                       merge=False)
            runtime = self.args.config.value or os.environ.get("INVOKE_RUNTIME_CONFIG")
            self.config.set_runtime_path(runtime)  # type: ignore[arg-type]  # str is a path
            self.config.load_runtime(merge=False)
            if merge:
                self.config.merge()
        except Exception as exc:  # invoke.yaml is any file: bad YAML, a list, `vllm_dev: 5`...
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise Exit(
                f"vllm-dev: cannot use the invoke configuration ({type(exc).__name__}: {detail}); "
                "fix ./invoke.yaml (the vllm_dev: key must map setting names to values) or "
                "the INVOKE_* variables", code=USAGE_ERROR) from None

    # --- usage errors --------------------------------------------------------------------------

    def _unknown_task(self, name: str) -> Exit:
        tasks = sorted(self.collection.task_names)
        hint = _suggest(name, tasks) or f" (tasks: {', '.join(tasks)})"
        return Exit(f"vllm-dev: unknown task {name!r}{hint}", code=USAGE_ERROR)

    @contextlib.contextmanager
    def _usage_errors(self) -> Iterator[None]:
        """Invoke's parse errors ("No idea what '--jbos' is!") as vllm-dev's one line, exit 2."""
        try:
            yield
        except ParseError as exc:
            raise self._usage_error(exc) from None

    def _usage_error(self, exc: ParseError) -> Exit:
        # Invoke's ParseError carries the context but not the token or the flag, so both are
        # read back from its message (the formats are in invoke/parser/parser.py).
        message = str(exc)
        context: ParserContext | None = getattr(exc, "context", None)
        task = context.name if context is not None and context.name else None
        where = f"{self.binary} {task}" if task else self.binary
        unknown = re.fullmatch(r"No idea what (['\"])(.*)\1 is!", message)
        if unknown:
            token = unknown.group(2)
            if not token.startswith("-"):
                # `--merge=yes`: Invoke splits it, takes --merge as set and `yes` for a task.
                given = [w.partition("=")[0] for w in self.argv if w.endswith(f"={token}")]
                if given and given[0].startswith("-"):
                    return Exit(f"vllm-dev: {given[0]} takes no value: it is an on/off switch "
                                f"(see {where} --help)", code=USAGE_ERROR)
                return self._unknown_task(token)
            flags = [*self.initial_context.flags, *self.initial_context.inverse_flags]
            if context is not None and task:
                flags += [*context.flags, *context.inverse_flags]
            hint = _suggest(token, [f for f in flags if f.startswith("--")] if
                            token.startswith("--") else flags)
            of = f" for {task}" if task else ""
            return Exit(f"vllm-dev: unknown option {token!r}{of}{hint}; see {where} --help",
                        code=USAGE_ERROR)
        flag = re.match(r"Flag <Argument: ([\w-]+)", message)
        if flag:
            name = f"--{flag.group(1).replace('_', '-')}"
            if "needed value" in message:
                return Exit(f"vllm-dev: {name} needs a value (see {where} --help)",
                            code=USAGE_ERROR)
            return Exit(f"vllm-dev: {name} takes no value: it is an on/off switch "
                        f"(see {where} --help)", code=USAGE_ERROR)
        return Exit(f"vllm-dev: {message[:1].lower()}{message[1:]}", code=USAGE_ERROR)


program = VllmDevProgram(namespace=namespace(), name="vllm-dev", binary="vllm-dev",
                         version=__version__)


def main() -> None:
    """Run the program; a Ctrl-C or SIGTERM that lands outside a task's own handling (start-up,
    or just after the task finished) still exits 130/143 with one line, never a traceback."""
    try:
        _run(program)
    finally:
        # The work is over (its exit status decided): a signal from now on must not turn a
        # finished build into a death by signal during interpreter shutdown.
        for late in ("SIGINT", "SIGTERM", "SIGHUP"):
            signal.signal(getattr(signal, late), signal.SIG_IGN)


def _run(program: Program) -> None:
    try:
        try:
            with sigterm_raises():
                program.run()
        finally:
            sys.stdout.flush()  # here, not at shutdown, so a reader that left is caught below
    except BrokenPipeError:
        # `vllm-dev -h build | head -1`: the reader left. Nothing to say (it would not be read);
        # stdout goes to /dev/null so the interpreter's last flush cannot fail again, and the
        # status is a SIGPIPE death's (128 + 13), as a C tool's would be.
        _silence_stdout()
        sys.exit(141)
    except AmbiguousMergeError:  # found only when the tasks' defaults meet the files
        print("vllm-dev: cannot use the invoke configuration: its vllm_dev: key must map "
              "setting names to values (fix ./invoke.yaml or the INVOKE_* variables)",
              file=sys.stderr)
        sys.exit(USAGE_ERROR)
    except KeyboardInterrupt:
        print("vllm-dev: interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated as exc:
        print(f"vllm-dev: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
