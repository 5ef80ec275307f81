"""Every task-only option of vllm-dev, declared once: :data:`TASK_OPTIONS`.

A setting (:mod:`vllm_dev.config.declarations`) has a value from flags, the environment, memory
and the configuration; a task-only option is said on one command line and is about that command
only (``build --target _C --since main --json r.json``, ``verify --strict``). Each used to be
spelled twice or three times: in a task's help table, again in the task's signature (its default
and, through Invoke's ``iterable``, its kind), its short flag in a third table, and the Nox
sessions' parser declared some of them once more. Now each is one :class:`TaskOption` here, and
the rest is derived from it:

- the Invoke tasks' options: kind, default, help, short flag
  (:class:`vllm_dev_frontends.invoke_tasks.VllmDevTask`; a task's body only names them);
- the Nox sessions' options after ``--`` (:mod:`vllm_dev_frontends.nox_options`), for those
  that :data:`NOX` takes;
- which flags the shell completes with target names (:mod:`vllm_dev_frontends.program`).

One name may carry two options when they mean two things in two tasks (``setup --force`` redoes
the install, ``build --force`` replaces a presets file; ``build --json FILE`` writes a file,
``doctor --json`` prints): each is declared for its own tasks, and no task takes a name twice.
Where one option is worded for one task or the Nox sessions (``--since``: which default applies),
:attr:`TaskOption.help_in` holds those words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vllm_dev.config.declarations import STEPS

#: The kinds of option: an on/off switch, one value, a value that may be given more than once.
SWITCH, VALUE, REPEATABLE = "switch", "value", "repeatable"
#: The Nox build and kernels sessions (``nox -s release -- --target _C``), taking options as a
#: task does.
NOX = "nox"
#: Every task (each step's, of the same name; ``test``; ``demo``), then the Nox sessions.
TASKS = (*STEPS, "test", "demo", NOX)
#: What the shell completes a value with: the preset's build dir's target names.
TARGETS = "targets"

@dataclass(frozen=True)
class TaskOption:
    """One task-only option: what it is called, what it takes, what it means, who takes it."""

    #: The parameter's name; the flag is ``--`` and the name with dashes (``--remove-stale``).
    name: str
    #: What it does, for ``--help`` (and the Nox sessions' error line listing the options).
    help: str
    #: The tasks (:data:`TASKS`) that take it.
    tasks: frozenset[str]
    #: :data:`SWITCH`, :data:`VALUE` or :data:`REPEATABLE`.
    kind: str = SWITCH
    #: A switch's value when not given (``--no-NAME`` turns an on switch off); None otherwise.
    default: Any = None
    #: One letter, the same in every task that takes the option (and the same as a setting's
    #: letter of the same name: ``demo -d`` is ``--device`` as for ``build``).
    short: str | None = None
    #: The help where one task (or :data:`NOX`) words the option its own way.
    help_in: Mapping[str, str] = field(default_factory=dict)
    #: What the shell completes its value with (:data:`TARGETS`), if anything.
    completes: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (SWITCH, VALUE, REPEATABLE):
            raise ValueError(f"--{self.flag_name}: kind {self.kind!r} is none of "
                             f"{SWITCH}, {VALUE}, {REPEATABLE}")
        if (self.kind == SWITCH) != isinstance(self.default, bool):
            raise ValueError(f"--{self.flag_name}: a switch, and only a switch, has a default "
                             "(on or off)")
        unknown = (set(self.tasks) | set(self.help_in)) - set(TASKS)
        if unknown:
            raise ValueError(f"--{self.flag_name}: not tasks: {sorted(unknown)}")

    @property
    def flag_name(self) -> str:
        """``remove-stale``: the long flag without its dashes."""
        return self.name.replace("_", "-")

    @property
    def flag(self) -> str:
        return f"--{self.flag_name}"

    def help_for(self, task: str) -> str:
        """The help as ``task`` shows it."""
        return self.help_in.get(task, self.help)

    def flags(self) -> tuple[str, ...]:
        """``("--target", "-t")``: every spelling on a command line."""
        return (self.flag, *([f"-{self.short}"] if self.short else []))


def _option(name: str, help: str, tasks: tuple[str, ...], kind: str = SWITCH, *,
            default: Any = None, short: str | None = None,
            help_in: Mapping[str, str] | None = None, completes: str | None = None
            ) -> TaskOption:
    return TaskOption(name, help, frozenset(tasks), kind,
                      default=False if kind == SWITCH and default is None else default,
                      short=short, help_in=dict(help_in or {}),
                      completes=completes)


_SINCE_DEFAULT = "the commit of the prebuilt kernels setup installed"

TASK_OPTIONS: tuple[TaskOption, ...] = (
    # --- the targets a build compiles and installs, by name
    _option("target", "build only this target and install only its component (repeatable)",
            ("build", "test", NOX), REPEATABLE, short="t", completes=TARGETS),
    _option("component", "install only this component (= target name; repeatable)",
            ("install",), REPEATABLE, completes=TARGETS),
    # --- the presets file and the configure
    _option("merge", "add vllm-dev's presets beside those of a CMakeUserPresets.json it did not "
                     "write", ("prime", "build", NOX),
            help_in={NOX: "add the session's preset to a CMakeUserPresets.json of your own"}),
    _option("force", "replace a CMakeUserPresets.json vllm-dev did not write (a backup is kept)",
            ("prime", "build", NOX),
            help_in={NOX: "replace a CMakeUserPresets.json of your own (a backup is kept)"}),
    _option("reconfigure", "run cmake's configure even if nothing changed", ("prime",)),
    _option("undefine", "forget a remembered -D NAME and remove NAME from the CMake cache "
                        "(cmake -U NAME, the cache is kept; repeatable)",
            ("prime", "build", "test"), REPEATABLE, short="U"),
    # --- the targets a change reaches, and the stages after the compile
    _option("since", "compile only the targets affected by changes since this git ref (default: "
                     f"{_SINCE_DEFAULT})",
            ("build", "test", NOX), VALUE, help_in={
                "test": "build the targets affected by changes since this git ref (default: "
                        f"{_SINCE_DEFAULT}); the picker's changes too",
                NOX: "compile only the targets affected by changes since this git ref "
                     "(default: every target)"}),
    _option("all", "compile every target, not only the affected ones", ("build", "test", NOX),
            help_in={NOX: "compile every target (the default)"}),
    _option("install", "install into the checkout's vllm/ after compiling (--no-install: "
                       "compile only)", ("build",), default=True),
    _option("verify", "end by loading the extensions this build changed in the target "
                      "interpreter and looking for stale .so files (--no-verify: skip)",
            ("build",), default=True),
    _option("verify", "also load the changed extensions before the tests, as build does (off: "
                      "the tests load them, and an undefined symbol fails them with the loader's "
                      "message)", ("test",)),
    _option("yes", "build without asking, however long the estimate (see --confirm-minutes)",
            ("build",)),
    # --- what a build shows and writes
    _option("plain", "plain output lines instead of the progress bar (automatic when stderr is "
                     "not a terminal)", ("build", "test"),
            help_in={"test": "plain output lines instead of the progress bar"}),
    _option("json", "also write the build report as JSON to this file (for CI)", ("build",),
            VALUE),
    _option("trace", "also write the build's timeline to this file as Chrome trace JSON "
                     "(Perfetto, chrome://tracing) and beside it as SVG", ("build", "report"),
            VALUE, help_in={"report": "write the last build's timeline to this file as Chrome "
                                      "trace JSON (Perfetto, chrome://tracing) and beside it as "
                                      "SVG"}),
    # --- test
    _option("watch", "one cycle now, then one per save of a source or header of the built "
                     "targets, until Ctrl-C", ("test",)),
    _option("under", "run the tests under this tool, e.g. \"compute-sanitizer\", \"gdb --args\", "
                     "\"nsys profile\"", ("test",), VALUE),
    _option("pick", "forget the remembered test selection and pick the tests by what changed",
            ("test",)),
    # --- setup
    _option("force", "redo the install even when nothing changed", ("setup",)),
    _option("tests", "also install the checkout's test requirements (requirements/test/"
                     "<device>.txt or requirements/test.txt), for `vllm-dev test`", ("setup",)),
    # --- the tasks that look
    _option("json", "print the result as JSON", ("verify", "report", "doctor", "settings"),
            help_in={"report": "print the last report as JSON",
                     "doctor": "print the checks as JSON (for tools)",
                     "settings": "print them as JSON"}),
    _option("slowest", "rank the N slowest translation units of the build dir (from "
                       ".ninja_log) instead of showing the last report", ("report",), VALUE),
    _option("remove_stale", "move stale .so files out of vllm/ (into .vllm-dev/stale/)",
            ("verify",)),
    _option("strict", "also fail on stale .so files and on prebuilt extensions whose sources "
                      "changed since W", ("verify",)),
    _option("forget", "forget a remembered setting (flag or key spelling: --python, "
                      "cache_remote) or a remembered define by name (repeatable)",
            ("settings",), REPEATABLE),
    _option("forget_all", "forget every setting remembered for the preset", ("settings",)),
    # --- clean
    _option("all", "remove every build dir vllm-dev created in the checkout", ("clean",)),
    _option("installed", "also remove the files the last install wrote into vllm/", ("clean",)),
    _option("deps", "with --all: also remove the dependency sources shared with pip builds "
                    "(<checkout>/.deps: fetched again next configure)", ("clean",)),
    # --- demo
    _option("keep", "keep the temporary copy of the example project and print its path",
            ("demo",)),
    _option("device", "cuda or cpu (default: cuda when nvcc is found, else cpu)", ("demo",),
            VALUE, short="d"),
)


def for_task(task: str) -> tuple[TaskOption, ...]:
    """The options ``task`` takes, in declaration order; ValueError for a name that is no task,
    or for a task that would take one name twice."""
    if task not in TASKS:
        raise ValueError(f"not a task: {task!r}")
    found = tuple(o for o in TASK_OPTIONS if task in o.tasks)
    names = [o.name for o in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"task {task} takes {twice} twice: declare each name once per task")
    return found


def short_flags() -> dict[str, str]:
    """Each task-only option's one letter, by name (a name has at most one)."""
    letters: dict[str, str] = {}
    for o in TASK_OPTIONS:
        if o.short and letters.setdefault(o.name, o.short) != o.short:
            raise ValueError(f"--{o.flag_name} has two short flags")
    return letters


def completed_with(what: str) -> tuple[str, ...]:
    """Every spelling of the options whose value the shell completes with ``what``."""
    return tuple(f for o in TASK_OPTIONS if o.completes == what for f in o.flags())
