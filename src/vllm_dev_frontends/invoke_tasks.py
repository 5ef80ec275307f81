"""Invoke tasks: argument parsing and error reporting only; the work is in :mod:`vllm_dev`."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Argument, Collection, Context, Exit, Task, task

from vllm_dev.config.declarations import SETTINGS, config_defaults, flags_from_options, for_steps
from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.process.interrupts import Terminated, sigterm_raises
from vllm_dev.process.runner import SubprocessRunner

if TYPE_CHECKING:  # imported where a task runs: `invoke --list` needs no more than invoke
    from vllm_dev.flow.workspace import Workspace

# The ``vllm_dev`` configuration section: every setting's default, so that `invoke.yaml` (key
# vllm_dev) and INVOKE_VLLM_DEV_* variables can set it. Derived from the declarations.
DEFAULTS: dict[str, Any] = config_defaults()

# Short flags of task-only arguments (a setting's short flag is in its declaration). One letter
# means one option in every task: Invoke would take each option's first free letter, so `-p` was
# --preset in one task and --python in another, `-h` --cache-dir. The rest are long only: rare, or
# (--force, --all) better spelled out. No -c: Invoke's zsh completion script reads `-c X` as its
# --collection and passes it on.
TASK_SHORT_FLAGS = {"target": "t"}
SHORT_FLAGS = {**{s.param: s.short for s in SETTINGS if s.param and s.short}, **TASK_SHORT_FLAGS}
# vllm-dev's own options before the task (program.py); no task option may take these letters.
CORE_SHORT_FLAGS = {"h": "help", "V": "version", "l": "list", "R": "dry", "f": "config"}
# Task-only arguments of the tasks that write CMakeUserPresets.json.
PRESET_FILE_HELP = {
    "merge": "add vllm-dev's presets beside those of a CMakeUserPresets.json it did not write",
    "force": "replace a CMakeUserPresets.json vllm-dev did not write (a backup is kept)",
}


class VllmDevTask(Task):
    """A task whose setting options come from the declarations of its step's settings.

    ``@task(klass=VllmDevTask, step="build")`` on ``def build(c, target=None, ..., **settings)``:
    the task's command line is its own arguments plus one option per setting the step reads
    (:func:`~vllm_dev.config.declarations.for_steps`), each with the declared flag, short flag
    and help, identical in every task; the body gets them in ``**settings`` for
    :func:`workspace`. Invoke reads a task's options from :meth:`argspec` (the body's signature),
    so the settings are added there rather than written into every signature. Short flags never
    come by chance (``auto_shortflags`` is off): a setting's is declared, a task-only argument's
    is in :data:`TASK_SHORT_FLAGS`, or is the setting's of the same name (demo's ``-d``).
    """

    def __init__(self, body: Any, *args: Any, step: str | None = None, **kwargs: Any) -> None:
        self.step = step
        #: The options of the step's settings, by parameter name (``define``, ``no_wait``).
        self.settings = {str(s.param): s for s in (for_steps(step) if step else ())}
        given_help = set(kwargs.get("help") or {}) & set(self.settings)
        if given_help:
            raise ValueError(f"{body.__name__}: the help of {sorted(given_help)} comes from the "
                             "settings' declarations")
        kwargs["auto_shortflags"] = False
        kwargs["iterable"] = [*(kwargs.get("iterable") or ()),
                              *(p for p, s in self.settings.items() if s.repeatable)]
        super().__init__(body, *args, **kwargs)
        # What Invoke parses, also for inspect.signature(task) (help(), tests, completion).
        context = next(iter(inspect.signature(body).parameters.values()))
        options = self.argspec(body)
        self.__signature__ = options.replace(
            parameters=[context, *options.parameters.values()])

    def argspec(self, body: Any) -> inspect.Signature:
        """The body's own parameters, then one keyword parameter per setting of the step (in
        place of the body's ``**settings``, which receives them)."""
        signature = super().argspec(body)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        if self.settings and len(own) == len(signature.parameters):
            raise TypeError(f"task {body.__name__} of step {self.step} needs **settings")
        clash = {p.name for p in own} & set(self.settings)
        if clash:
            raise TypeError(f"task {body.__name__}: {sorted(clash)} are settings, declared in "
                            "vllm_dev/config/declarations.py")
        return signature.replace(parameters=[*own, *(
            inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY,
                              default=s.default if s.switch else None)
            for param, s in self.settings.items())])

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
        if name in self.settings:
            opts["help"] = self.settings[name].describe()
        if SHORT_FLAGS.get(name):
            opts["names"] = [*opts["names"], SHORT_FLAGS[name]]
        return opts


def _echo(line: str) -> None:
    print(f"vllm-dev: $ {line}", file=sys.stderr, flush=True)


def workspace(c: Context, **options: Any) -> Workspace:
    """A Workspace from the task's setting options (``**settings``: keyed by parameter name,
    ``define=[...]``), the environment and the invoke config."""
    config = dict(c.config.get("vllm_dev", {}) or {})
    settings = Settings.resolve(flags=flags_from_options(options), environ=os.environ,
                                config=config)
    dry = bool(c.config.run.dry)
    from vllm_dev.caching import compiler_cache as cc
    from vllm_dev.flow.workspace import Workspace

    cache = cc.config_from(settings)
    runner = SubprocessRunner(dry=dry, echo=_echo, secrets=cache.secrets,
                              environment=cc.command_environment(cache))
    return Workspace(settings=settings, runner=runner)


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
    import shlex

    if not c.remainder:
        return ()
    if "--" in sys.argv:
        return tuple(sys.argv[sys.argv.index("--") + 1:])
    return tuple(shlex.split(c.remainder))


@task(klass=VllmDevTask, step="setup",
      help={"force": "redo the install even when nothing changed"})
def setup(c, force=False, **settings):
    """Editable install with prebuilt kernels, plus the build requirements, into the target venv.

    Arguments after `--` go to `uv pip install` (e.g. `vllm-dev setup -- --offline --find-links
    DIR`); one that picks the indexes replaces vllm-dev's --torch-backend=auto."""
    from vllm_dev.steps.setup import run_setup

    with reported():
        run_setup(workspace(c, **settings), force=force,
                  extra_args=_remainder(c))


@task(klass=VllmDevTask, step="prime", help={**PRESET_FILE_HELP,
      "reconfigure": "run cmake's configure even if nothing changed"})
def prime(c, merge=False, force=False, reconfigure=False, **settings):
    """Write CMakeUserPresets.json and configure the preset's build dir (only when needed)."""
    from vllm_dev.flow import pipeline

    with reported():
        ws = workspace(c, **settings)
        pipeline.run(ws, pipeline.Request(stages=pipeline.PRIME, merge=merge, force=force,
                                          reconfigure=reconfigure))


@task(
    klass=VllmDevTask,
    step="build",
    iterable=["target"],
    help=dict(PRESET_FILE_HELP,
               target="build only this target and install only its component (repeatable)",
               verify="end by loading the extensions this build changed in the target "
                      "interpreter and looking for stale .so files (--no-verify: skip)",
               install="install into the checkout's vllm/ after compiling (--no-install: "
                       "compile only)",
               plain="plain output lines instead of the progress bar (automatic when stderr "
                     "is not a terminal)",
               json="also write the build report as JSON to this file (for CI)",
               since="compile only the targets affected by changes since this git ref (default: "
                     "the commit of the prebuilt kernels setup installed)",
               all="compile every target, not only the affected ones",
               yes="build without asking, however long the estimate (see --confirm-minutes)"),
)
def build(c, target=None, install=True, merge=False, verify=True, force=False, plain=False,
          json=None, since=None, all=False, yes=False, **settings):
    """Compile incrementally and install into the checkout (primes first when needed)."""
    with reported():
        ws = workspace(c, **settings)
        from vllm_dev.flow import pipeline
        from vllm_dev.reporting.recorder import process_started_at

        pipeline.run(ws, pipeline.Request(
            stages=pipeline.build_stages(install=install, verify=verify),
            targets=tuple(target or ()), merge=merge, force=force, since=since, every=all,
            plain=plain, json_path=Path(json).expanduser().absolute() if json else None,
            started_at=process_started_at(), yes=yes))


@task(klass=VllmDevTask, step="report",
      help={"slowest": "rank the N slowest translation units of the build dir (from "
                       ".ninja_log) instead of showing the last report",
            "json": "print the last report as JSON"})
def report(c, slowest=None, json=False, **settings):
    """Show the last build's report again (time per phase, cache hits, slowest files)."""
    from vllm_dev.steps.report import run_report

    with reported():
        ws = workspace(c, **settings)
        run_report(ws, slowest=slowest, as_json=json)


@task(klass=VllmDevTask, step="verify",
      help={"remove_stale": "move stale .so files out of vllm/ (into .vllm-dev/stale/)",
            "json": "print the result as JSON",
            "strict": "also fail on stale .so files and on prebuilt extensions whose sources "
                      "changed since W"})
def verify(c, remove_stale=False, json=False, strict=False, **settings):
    """List every extension with its state, load the installed ones; find stale .so files."""
    from vllm_dev.steps.verify import run_verify_task

    with reported():
        ws = workspace(c, **settings)
        run_verify_task(ws, remove=remove_stale, as_json=json, strict=strict)


@task(klass=VllmDevTask, step="doctor", help={"json": "print the checks as JSON (for tools)"})
def doctor(c, json=False, **settings):
    """Check every prerequisite of a build: status and the fix for each; non-zero on blockers."""
    from vllm_dev.steps.doctor import run_doctor

    with reported():
        ws = workspace(c, **settings)
        run_doctor(ws, as_json=json)


@task(klass=VllmDevTask, step="install", iterable=["component"],
      help={"component": "install only this component (= target name; repeatable)"})
def install(c, component=None, **settings):
    """Install what was built, without compiling, and check every installed file."""
    from vllm_dev.flow import pipeline

    with reported():
        ws = workspace(c, **settings)
        pipeline.run(ws, pipeline.Request(stages=pipeline.INSTALL,
                                          targets=tuple(component or ()), install_every=True))


@task(klass=VllmDevTask, name="clean", step="clean",
      help={"all": "remove every build dir vllm-dev created in the checkout",
            "installed": "also remove the files the last install wrote into vllm/",
            "deps": "with --all: also remove the dependency sources shared with pip builds "
                    "(<checkout>/.deps: fetched again next configure)"})
def clean_(c, all=False, installed=False, deps=False, **settings):
    """Remove the preset's build dir (only dirs vllm-dev created, only inside the checkout)."""
    from vllm_dev.steps.clean import run_clean

    with reported():
        ws = workspace(c, **settings)
        run_clean(ws, every=all, installed=installed, deps=deps)


@task(klass=VllmDevTask,
      help={"keep": "keep the temporary copy of the example project and print its path",
            "device": "cuda or cpu (default: cuda when nvcc is found, else cpu)"})
def demo(c, keep=False, device=None):
    """Run setup, prime, build and a one-file rebuild on a copy of the bundled example project."""
    from vllm_dev.flow.demo import run_demo

    with reported():
        dry = bool(c.config.run.dry)
        run_demo(runner=SubprocessRunner(dry=dry, echo=_echo), keep=keep, device=device)


def namespace() -> Collection:
    """The task collection with every tunable declared, for tasks.py and the console script."""
    ns = Collection(setup, prime, build, install, clean_, demo, doctor, verify, report)
    ns.configure({"vllm_dev": config_defaults()})
    return ns
