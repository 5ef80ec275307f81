"""Invoke tasks: argument parsing and error reporting only; the work is in :mod:`vllm_dev`."""

from __future__ import annotations

import contextlib
import inspect
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Argument, Collection, Context, Exit, Task, task

from vllm_dev.config import task_options
from vllm_dev.config.declarations import SETTINGS, config_defaults, flags_from_options, for_steps
from vllm_dev.errors import VllmDevError
from vllm_dev.process.interrupts import Terminated, sigterm_raises
from vllm_dev.process.runner import SubprocessRunner
from vllm_dev_frontends import config_files

if TYPE_CHECKING:  # imported where a task runs: `invoke --list` needs no more than invoke
    from vllm_dev.planning.workspace import RunnerSetup, Workspace

# The ``vllm_dev`` configuration section: every setting's default, so that `invoke.yaml` (key
# vllm_dev) and INVOKE_VLLM_DEV_* variables can set it. Derived from the declarations.
DEFAULTS: dict[str, Any] = config_defaults()

# One letter means one option in every task: Invoke would take each option's first free letter,
# so `-p` was --preset in one task and --python in another, `-h` --cache-dir. A setting's letter is
# in its declaration, a task-only option's in its own (config/task_options.py); the rest are long
# only: rare, or (--force, --all) better spelled out. No -c: Invoke's zsh completion script reads
# `-c X` as its --collection and passes it on.
TASK_SHORT_FLAGS = task_options.short_flags()
SHORT_FLAGS = {**{s.param: s.short for s in SETTINGS if s.param and s.short}, **TASK_SHORT_FLAGS}
# vllm-dev's own options before the task (program.py); no task option may take these letters.
CORE_SHORT_FLAGS = {"h": "help", "V": "version", "l": "list", "R": "dry", "f": "config"}


class VllmDevTask(Task):
    """A task whose options all come from declarations: its task-only options from
    :data:`~vllm_dev.config.task_options.TASK_OPTIONS`, its settings from those of its step.

    ``@task(klass=VllmDevTask, step="build")`` on ``def build(c, *, target, install, ...,
    **settings)``: the body names the task-only options it takes, and exactly those declared for
    the task (:func:`~vllm_dev.config.task_options.for_task`); their kind, default, help and
    short flag come from the declarations, as do one option per setting the step reads
    (:func:`~vllm_dev.config.declarations.for_steps`), identical in every task, which the body
    gets in ``**settings`` for :func:`workspace`. Invoke reads a task's options from
    :meth:`argspec` (the body's signature), so the declarations are applied there rather than
    written into every signature. Short flags never come by chance (``auto_shortflags`` is off).
    Called from Python (tests), a task gets the declared default of each option left out.
    """

    def __init__(self, body: Any, *args: Any, step: str | None = None, **kwargs: Any) -> None:
        self.step = step
        #: The options of the step's settings, by parameter name (``define``, ``no_wait``).
        self.settings = {str(s.param): s for s in (for_steps(step) if step else ())}
        given = set(kwargs.get("help") or {}) | set(kwargs.get("iterable") or ())
        if given & set(self.settings):
            raise ValueError(f"{body.__name__}: the help of {sorted(given & set(self.settings))} "
                             "comes from the settings' declarations")
        if given:
            raise ValueError(f"{body.__name__}: the help and kind of {sorted(given)} come from "
                             "the task options' declarations (vllm_dev/config/task_options.py)")
        #: The task's name (``test`` for the body ``test_``), as the declarations name it.
        self.task_name = str(kwargs.get("name") or body.__name__)
        #: The task-only options, by parameter name (``remove_stale``).
        self.options = {o.name: o for o in task_options.for_task(self.task_name)}
        kwargs["auto_shortflags"] = False
        kwargs["iterable"] = [*(p for p, s in self.settings.items() if s.repeatable),
                              *(n for n, o in self.options.items()
                                if o.kind == task_options.REPEATABLE)]
        super().__init__(body, *args, **kwargs)
        # What Invoke parses, also for inspect.signature(task) (help(), tests, completion).
        context = next(iter(inspect.signature(body).parameters.values()))
        options = self.argspec(body)
        self.__signature__ = options.replace(
            parameters=[context, *options.parameters.values()])

    def argspec(self, body: Any) -> inspect.Signature:
        """The body's own parameters with their declared defaults, then one keyword parameter
        per setting of the step (in place of the body's ``**settings``, which receives them)."""
        signature = super().argspec(body)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        if self.settings and len(own) == len(signature.parameters):
            raise TypeError(f"task {body.__name__} of step {self.step} needs **settings")
        clash = {p.name for p in own} & set(self.settings)
        if clash:
            raise TypeError(f"task {body.__name__}: {sorted(clash)} are settings, declared in "
                            "vllm_dev/config/declarations.py")
        named = [p.name for p in own]
        if sorted(named) != sorted(self.options):
            raise TypeError(
                f"task {body.__name__} names {sorted(named)}; the options declared for "
                f"{self.task_name} in vllm_dev/config/task_options.py are "
                f"{sorted(self.options)}")
        with_default = [p.name for p in own if p.default is not p.empty]
        if with_default:
            raise TypeError(f"task {body.__name__}: the defaults of {with_default} come from "
                            "their declarations (vllm_dev/config/task_options.py)")
        return signature.replace(parameters=[
            *(p.replace(kind=p.KEYWORD_ONLY, default=self.options[p.name].default)
              for p in own),
            *(inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY,
                                default=s.default if s.switch else None)
              for param, s in self.settings.items())])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **{**{n: o.default for n, o in self.options.items()},
                                          **kwargs})

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        # Invoke's arg_opts pops each help text out of self.help, so a second call (the parser,
        # then completion or a test) would give options without help: keep the table.
        kept = dict(self.help)
        try:
            return super().get_arguments(ignore_unknown_help)
        finally:
            self.help = kept

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        declared = self.options.get(name)
        if declared is not None:
            opts["help"] = declared.help_for(self.task_name)
        elif name in self.settings:
            opts["help"] = self.settings[name].describe()
        if SHORT_FLAGS.get(name):
            opts["names"] = [*opts["names"], SHORT_FLAGS[name]]
        return opts


def _echo(line: str) -> None:
    print(f"vllm-dev: $ {line}", file=sys.stderr, flush=True)


def runner(c: Context) -> Callable[[RunnerSetup], SubprocessRunner]:
    """The tasks' runner: every command that changes something printed as it runs (``--dry``:
    printed only), with what :func:`~vllm_dev.planning.workspace.open_workspace` says every
    runner carries."""
    dry = bool(c.config.run.dry)

    def make(setup: RunnerSetup) -> SubprocessRunner:
        return SubprocessRunner(dry=dry, echo=_echo, secrets=setup.secrets,
                                environment=setup.environment)

    return make


def workspace(c: Context, command: str, *, undefine: Any = (), announce: bool = True,
              **options: Any) -> Workspace:
    """A Workspace from the task's setting options (``**settings``: keyed by parameter name,
    ``define=[...]``), the environment, the invoke config's levels and the checkout's
    remembered settings (see :func:`vllm_dev.planning.workspace.open_workspace`)."""
    from vllm_dev.planning.workspace import open_workspace

    levels = config_files.levels(c.config)
    return open_workspace(command=command, flags=flags_from_options(options), runner=runner(c),
                          environ=os.environ, config=levels.files, announce=announce,
                          undefine=tuple(undefine or ()))


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turn vllm-dev's errors into one line and an exit code; no traceback. SIGTERM exits 143
    after the same clean-up as Ctrl-C (130): children stopped, lock released."""
    try:
        with sigterm_raises():
            yield
    except VllmDevError as exc:
        raise Exit(f"vllm-dev: {exc}", code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("vllm-dev: interrupted", code=130) from None
    except Terminated as exc:
        raise Exit(f"vllm-dev: {exc.message}", code=exc.exit_code) from None


def _remainder(c: Context) -> tuple[str, ...]:
    """What followed a standalone ``--``: exact words from argv when it is ours (invoke keeps
    only a space-joined string, which loses quoting), else that string split like a shell."""
    if not c.remainder:
        return ()
    if "--" in sys.argv:
        return tuple(sys.argv[sys.argv.index("--") + 1:])
    return tuple(shlex.split(c.remainder))


@task(klass=VllmDevTask, step="setup")
def setup(c, *, force, tests, **settings):
    """Editable install with prebuilt kernels, plus the build requirements, into the target venv.

    Arguments after `--` go to `uv pip install` (e.g. `vllm-dev setup -- --offline --find-links
    DIR`); one that picks the indexes replaces vllm-dev's --torch-backend=auto."""
    from vllm_dev.steps.setup import run_setup

    with reported():
        ws = workspace(c, "setup", **settings)
        run_setup(ws, force=force, extra_args=_remainder(c), tests=tests)
        ws.remember()  # it reached its install (see config/remember.py)


@task(klass=VllmDevTask, step="prime")
def prime(c, *, merge, force, reconfigure, undefine, **settings):
    """Write CMakeUserPresets.json and configure the preset's build dir (only when needed)."""
    from vllm_dev.commands import pipeline

    with reported():
        ws = workspace(c, "prime", undefine=undefine, **settings)
        pipeline.run(ws, pipeline.Request(stages=pipeline.PRIME, merge=merge, force=force,
                                          reconfigure=reconfigure,
                                          undefine=tuple(undefine or ())))


@task(klass=VllmDevTask, step="build")
def build(c, *, target, install, merge, verify, force, plain, json, since, all, undefine, trace,
          yes, **settings):
    """Compile incrementally and install into the checkout (primes first when needed)."""
    with reported():
        ws = workspace(c, "build", undefine=undefine, **settings)
        from vllm_dev.commands import pipeline
        from vllm_dev.reporting.recorder import process_started_at

        pipeline.run(ws, pipeline.Request(
            stages=pipeline.build_stages(install=install, verify=verify),
            targets=tuple(target or ()), merge=merge, force=force, since=since, every=all,
            plain=plain, json_path=Path(json).expanduser().absolute() if json else None,
            trace_path=Path(trace).expanduser().absolute() if trace else None,
            started_at=process_started_at(), undefine=tuple(undefine or ()), yes=yes))


@task(klass=VllmDevTask, name="test", step="build")
def test_(c, *, target, since, all, watch, under, pick, plain, verify, undefine, **settings):
    """Build what changed, install it, run the kernel tests; one summary line at the end.

    Arguments after `--` go to pytest: the selection among them (paths, -k, -m) is remembered
    for the checkout and reused by a plain `vllm-dev test`; with none, the tests under
    tests/kernels/ that call the ops of the changed files are picked. The exit status is the
    tests' (the build's when it fails; 5 when nothing was tested)."""
    from vllm_dev.commands.testloop.command import run_test
    from vllm_dev.commands.testloop.cycle import TestOptions
    from vllm_dev.reporting.recorder import process_started_at

    with reported():
        opened = [False]

        def open_ws() -> Workspace:  # one per cycle; a watch's later ones say nothing again
            first, opened[0] = not opened[0], True
            return workspace(c, "test", undefine=undefine if first else (), announce=first,
                             **settings)

        status = run_test(open_ws,
                          TestOptions(targets=tuple(target or ()), since=since, every=all,
                                      plain=plain, verify=verify, args=_remainder(c),
                                      under=under, pick=pick, watch=watch,
                                      started_at=process_started_at(),
                                      undefine=tuple(undefine or ())))
    if status:
        raise Exit(code=status)


@task(klass=VllmDevTask, step="report")
def report(c, *, slowest, json, trace, **settings):
    """Show the last build's report again (time per phase, cache hits, slowest files)."""
    from vllm_dev.steps.report import run_report

    with reported():
        ws = workspace(c, "report", **settings)
        run_report(ws, slowest=slowest, as_json=json,
                   trace=Path(trace).expanduser().absolute() if trace else None)


@task(klass=VllmDevTask, step="verify")
def verify(c, *, remove_stale, json, strict, **settings):
    """List every extension with its state, load the installed ones; find stale .so files."""
    from vllm_dev.steps.verify import run_verify_task

    with reported():
        ws = workspace(c, "verify", **settings)
        run_verify_task(ws, remove=remove_stale, as_json=json, strict=strict)


@task(klass=VllmDevTask, step="doctor")
def doctor(c, *, json, **settings):
    """Check every prerequisite of a build: status and the fix for each; non-zero on blockers."""
    from vllm_dev.steps.doctor import run_doctor

    with reported():
        ws = workspace(c, "doctor", **settings)
        run_doctor(ws, as_json=json)


@task(klass=VllmDevTask, step="install")
def install(c, *, component, **settings):
    """Install what was built, without compiling, and check every installed file."""
    from vllm_dev.commands import pipeline

    with reported():
        ws = workspace(c, "install", **settings)
        pipeline.run(ws, pipeline.Request(stages=pipeline.INSTALL,
                                          targets=tuple(component or ()), install_every=True))


@task(klass=VllmDevTask, name="clean", step="clean")
def clean_(c, *, all, installed, deps, **settings):
    """Remove the preset's build dir (only dirs vllm-dev created, only inside the checkout)."""
    from vllm_dev.steps.clean import run_clean

    with reported():
        ws = workspace(c, "clean", **settings)
        run_clean(ws, every=all, installed=installed, deps=deps)


@task(klass=VllmDevTask)
def demo(c, *, keep, device):
    """Run setup, prime, build and a one-file rebuild on a copy of the bundled example project."""
    from vllm_dev.commands.demo import run_demo

    with reported():
        run_demo(runner=runner(c), keep=keep, device=device)


@task(klass=VllmDevTask, name="settings", step="settings")
def settings_(c, *, json, forget, forget_all, **settings):
    """Every setting: its value for this checkout and preset, and where it comes from.

    Given as a flag to setup, prime or build, a setting that shapes the build (interpreter,
    device, arch, defines, compiler cache, remote cache, farm, nvcc threads) is remembered for
    the checkout and preset; later commands use it unless a flag or the environment says
    otherwise. Forget with --forget NAME, -U NAME (a define) or --forget-all."""
    from vllm_dev.steps.settings import run_settings

    with reported():
        ws = workspace(c, "settings", announce=False, **settings)
        run_settings(ws, as_json=json, forget=tuple(forget or ()), forget_all=forget_all)


def namespace() -> Collection:
    """The task collection with every tunable declared, for tasks.py and the console script."""
    ns = Collection(setup, prime, build, install, clean_, demo, doctor, verify, report, test_,
                    settings_)
    ns.configure({"vllm_dev": config_defaults()})
    return ns
