"""The Nox build sessions (``nox -s release``, ``nox -s debug``): the whole flow in a fresh venv.

A session proves from scratch that a checkout builds: its own virtual environment is the target
interpreter; setup installs into it through ``session.install`` (so ``nox -R`` skips it); then the
same pipeline as the Invoke tasks (:func:`vllm_dev.commands.pipeline.run`: configure, compile,
install, check), called once, every stage timed as a session phase; the check also proves the
venv's vllm is this checkout's. Nothing here imports nox: the noxfile hands in its session object,
which only needs the few methods of :class:`NoxSession`.

Isolation from the developer's own build: a session renders one standalone preset ``nox-<template>``
(binary dir ``cmake-build-nox-<template>``) with its venv's interpreter and adds it beside the
developer's presets in ``CMakeUserPresets.json`` (see
:func:`vllm_dev.presets.user_presets.beside_owned`), so neither CMake caches nor preset fingerprints
are ever shared. Both the developer's build and every session install into the checkout's ``vllm/``;
the last one wins. A lock on the checkout (``.vllm-dev/.vllm-dev.lock``) makes concurrent sessions
(two terminals, or ``nox -j``) run one after the other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from vllm_dev.config.declarations import config_defaults, setting
from vllm_dev.errors import VllmDevError
from vllm_dev.presets.render import bundled_presets_dir
from vllm_dev.process.children import Child
from vllm_dev.process.locking import build_lock
from vllm_dev.process.runner import Completed, SubprocessRunner
from vllm_dev.state.records import ensure_state_dir
from vllm_dev_frontends import config_files
from vllm_dev_frontends.nox_options import parse_posargs, setting_flags

if TYPE_CHECKING:
    from vllm_dev.commands.pipeline import Stage
    from vllm_dev.planning.workspace import Workspace

LAYER = "nox-"
PHASES = ("setup", "configure", "compile", "install", "import check")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

class NoxSession(Protocol):
    """What the build sessions use of ``nox.Session`` (kept small so tests can fake it)."""

    @property
    def posargs(self) -> list[str]: ...

    @property
    def invoked_from(self) -> str: ...

    @property
    def venv_backend(self) -> str: ...

    @property
    def bin(self) -> str: ...

    def run(self, *args: str, env: Mapping[str, str] | None = ..., external: bool = ...
            ) -> Any: ...

    def install(self, *args: str, env: Mapping[str, str] | None = ...) -> None: ...

    def chdir(self, dir: str | os.PathLike[str]) -> Any: ...

    def log(self, *args: Any) -> None: ...

    def error(self, *args: Any) -> NoReturn: ...


@dataclass
class SessionRunner:
    """A :class:`~vllm_dev.process.runner.Runner` that runs the commands which change things
    through the nox session (logged by nox, stopped by nox on Ctrl-C, a failure fails the session).

    Queries (probes, ``--version``) need their output and exit code, which ``session.run`` does not
    give back, so they go to a plain :class:`SubprocessRunner`; they change nothing. Output meant
    for a progress display (``stream``) is left to nox, which shows (or, under ``-j``, buffers)
    it like every other command's.
    """

    session: NoxSession
    dry: bool = False
    queries: SubprocessRunner = field(default_factory=SubprocessRunner)
    # Added to every command's environment, as SubprocessRunner.environment: a credentialed
    # remote-cache URL the presets name by variable (``--cache-remote`` after ``--``).
    environment: Mapping[str, str] = field(default_factory=dict)

    def run(self, argv: Sequence[str | os.PathLike[str]], **options: Any) -> Completed:
        """The options are :meth:`vllm_dev.process.runner.Runner.run`'s (not restated here)."""
        args = [os.fspath(a) for a in argv]
        if (options.get("capture") or not options.get("check", True)
                or not options.get("mutates", True)):
            return self.queries.run(args, **options)
        cwd, env = options.get("cwd"), {**self.environment, **(options.get("env") or {})}
        start = time.monotonic()
        with self.session.chdir(cwd) if cwd else contextlib.nullcontext():
            self.session.run(*args, env=env or None, external=True)
        return Completed(args, 0, seconds=time.monotonic() - start)

    def query(self, argv: Sequence[str | os.PathLike[str]], **options: Any) -> Completed:
        """A command that only answers (:meth:`vllm_dev.process.runner.Runner.query`)."""
        return self.queries.query(argv, **options)

    def start(self, argv: Sequence[str | os.PathLike[str]], **options: Any) -> Child:
        """A long-lived child (:meth:`vllm_dev.process.runner.Runner.start`)."""
        return self.queries.start(argv, **options)


@dataclass
class PhaseClock:
    """Elapsed time of each phase, said as each one ends and once more, all together, at the end
    (also when a phase fails: the summary then shows how far the session got)."""

    say: Callable[[str], None]
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - start
            self.say(f"{name}: {self.seconds[name]:.1f} s")

    def summary(self) -> str:
        parts = [f"{name} {self.seconds[name]:.1f} s" for name in PHASES if name in self.seconds]
        return "elapsed: " + (", ".join(parts) or "nothing ran") + (
            f"; total {sum(self.seconds.values()):.1f} s" if self.seconds else "")


def presets_dirs(environ: Mapping[str, str]) -> list[Path]:
    """Where the session list comes from: the bundled templates plus the user's (as for the
    tasks; the checkout's .vllm-dev/presets/ is not known when the noxfile is imported)."""
    configured = next((environ[v] for v in setting("presets_dir").env if environ.get(v)), None)
    return [bundled_presets_dir(), *([Path(configured).expanduser()] if configured else [])]


def session_templates(environ: Mapping[str, str]) -> dict[str, Path]:
    """Each session name with the directory of its template (the user's wins by name)."""
    return dict(sorted({name: directory for directory in presets_dirs(environ)
                        for name in preset_names(directory)}.items()))


def preset_names(directory: Path) -> list[str]:
    """One build session per template file. Only names are read here (at noxfile import): a
    broken template then fails its own session with a one-line error, not ``nox -l``."""
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.json") if _NAME_RE.match(p.stem))


def session_doc(name: str, directory: Path) -> str:
    """The session's docstring for ``nox -l``: what it does, and the template's description."""
    description = ""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        description = str(json.loads((directory / f"{name}.json").read_text()).get(
            "description", ""))
    return (f"Build the {name} preset from scratch in its own venv (setup, configure, compile, "
            f"install, import check; build dir cmake-build-{LAYER}{name})"
            + (f": {description}" if description else "."))


def invoke_config(project_dir: Path, environ: Mapping[str, str]) -> config_files.Levels:
    """The ``vllm_dev`` configuration, read as the ``vllm-dev`` script reads it (system and user
    files, ``invoke.yaml`` of the invocation directory and, once the checkout is known, of its
    root, ``INVOKE_VLLM_DEV_*``), each source kept apart (see config_files.py); its defines
    included. Not the remembered settings: a session is a clean room.

    Invoke is imported lazily: nox's own interpreter may lack it, and then only the environment
    variables and the flags after ``--`` count (install nox beside vllm-dev to get the config).
    """
    try:
        from invoke import Config
    except ImportError:
        return config_files.Levels()
    logging.getLogger("invoke").setLevel(logging.WARNING)  # nox's handler would show its debug
    config = Config(defaults={**Config.global_defaults(), "vllm_dev": config_defaults()},
                    project_location=project_dir)
    config.load_project()
    config.load_shell_env()
    return config_files.levels(config)


def build_session(session: NoxSession, *, preset: str) -> None:
    """The body of ``nox -s <preset>``; every user error ends the session with one line."""
    clock = PhaseClock(say=lambda m: session.log(f"vllm-dev: {m}"))
    try:
        _build(session, preset=preset, clock=clock)
    except VllmDevError as exc:
        if clock.seconds:  # how far it got; a checkout that is not one fails before any phase
            session.log(f"vllm-dev: {clock.summary()}")
        session.error(f"vllm-dev: {exc}")
    session.log(f"vllm-dev: {clock.summary()}")


def _build(session: NoxSession, *, preset: str, clock: PhaseClock) -> None:
    from vllm_dev.commands import pipeline

    args = parse_posargs(session.posargs)
    say = clock.say
    # One workspace: setup reads only the checkout and the settings from it (the device it
    # needs after the editable install is probed then, see _setup), so nothing it looked up
    # is stale when the pipeline resolves the build's plan.
    ws, python = _session_workspace(session, args, preset=preset, name=preset, say=say)
    settings, checkout = ws.settings, ws.checkout
    ensure_state_dir(checkout.state_dir)
    targets = tuple(args.target)
    phases = _stage_phases()
    with build_lock(checkout.state_dir, wait=not settings.no_wait, say=say,
                    command=f"nox -s {preset}"):
        if args.python:
            say(f"setup: skipped (--python {python}: the interpreter is yours, set up already)")
        else:
            with clock.phase("setup"):
                _setup(session, ws)
        # A session proves the whole checkout builds: every target unless --since; every
        # component staged; the check also proves the venv's vllm is this checkout's.
        result = pipeline.run(ws, pipeline.Request(
            stages=pipeline.BUILD, targets=targets, merge=args.merge, force=args.force,
            since=args.since, every=not args.since, install_every=True, editable_check=True,
            announce_up_to_date=True, ask=False), timer=lambda stage: clock.phase(phases[stage]))
    if result.targets == []:
        say("import check: nothing was built, the prebuilt kernels stay as they are")
    elif result.verify is not None:
        modules = sorted(r.module for r in result.verify.modules)
        say(f"import check: {', '.join(modules) or 'no extension'} load from "
            f"{checkout.package_dir}")


KERNELS = "kernels"
# Long options of vllm-dev's that pytest lacks: given without the second -- they are a mistake.
_KERNELS_OWN = ("--source", "--target", "--since", "--python", "--jobs", "--device", "--cache")


def kernels_session(session: NoxSession) -> None:
    """The body of ``nox -s kernels -- [OPTIONS --] PYTEST ARGS``: ``vllm-dev test`` from
    scratch in the session's venv (release preset, build dir ``cmake-build-nox-release``, the
    test requirements installed by setup; no remembered settings, no remembered test selection).
    vllm-dev's options (``--source``, ``--target``, ``--since``, ``--python``...) come before a
    second ``--``; without one, every argument is pytest's."""
    clock = PhaseClock(say=lambda m: session.log(f"vllm-dev: {m}"))
    try:
        status = _kernels(session, clock)
    except VllmDevError as exc:
        session.error(f"vllm-dev: {exc}")
    if status:
        session.error(f"vllm-dev: the kernel tests failed (exit status {status})")


def _kernels(session: NoxSession, clock: PhaseClock) -> int:
    from vllm_dev.commands import pipeline
    from vllm_dev.commands.testloop import cycle
    from vllm_dev.commands.testloop.command import check

    posargs = list(session.posargs)
    ours, theirs = ((posargs[:posargs.index("--")], posargs[posargs.index("--") + 1:])
                    if "--" in posargs else ([], posargs))
    if "--" not in posargs:
        ours_in_theirs = [a for a in theirs if a.split("=")[0] in _KERNELS_OWN]
        if ours_in_theirs:
            raise VllmDevError(f"{ours_in_theirs[0]} is vllm-dev's: its options go before a "
                               f"second --, pytest's after it (nox -s {KERNELS} -- "
                               f"{ours_in_theirs[0].split('=')[0]} ... -- -k rms)")
    args = parse_posargs(ours)
    ws, python = _session_workspace(session, args, preset="release", name=KERNELS,
                                    say=clock.say)
    checkout = ws.checkout
    ensure_state_dir(checkout.state_dir)
    options = cycle.TestOptions(targets=tuple(args.target), since=args.since, every=args.all,
                                args=tuple(theirs), remember=False)
    with build_lock(checkout.state_dir, wait=not ws.settings.no_wait, say=clock.say,
                    command=f"nox -s {KERNELS}"):
        if args.python:
            clock.say(f"setup: skipped (--python {python}: the interpreter is yours)")
        else:
            with clock.phase("setup"):
                _setup(session, ws, tests=True)
        selection = cycle.choose_selection(ws, options)
        check(ws)
        request = pipeline.Request(stages=pipeline.BUILD, targets=options.targets,
                                   since=options.since, every=options.every,
                                   editable_check=True, announce_up_to_date=True, ask=False)
        result = cycle.run_cycle(ws, options, selection, request)
    clock.say(result.summary())
    return result.status


def _session_workspace(session: NoxSession, args: Any, *, preset: str, name: str,
                       say: Callable[[str], None]) -> tuple[Workspace, Path]:
    """A session's workspace (layer ``nox-``, the session's venv or ``--python``, the settings
    as the tasks resolve them, commands through nox) and its target interpreter; says which
    checkout, interpreter and build dir. A missing or non-vLLM checkout stops here."""
    from vllm_dev.planning.workspace import RunnerSetup, open_workspace

    if args.python:
        # The user's own interpreter: setup cannot always run in a fresh venv (offline, behind a
        # PyPI-only mirror, or a torch pin no reachable index has), so the session can prove the
        # rest of the flow (own preset, own build dir, import check) with a venv already set up.
        python = Path(args.python).expanduser().absolute()
        if not python.is_file():
            raise VllmDevError(f"--python {args.python} does not exist: give the python of a "
                               "venv that holds vLLM's build requirements")
    else:
        try:
            python = Path(session.bin) / ("python.exe" if os.name == "nt" else "python")
        except ValueError:
            raise VllmDevError(f"nox -s {name} needs a virtualenv of its own: run it without "
                               "--no-venv / --force-venv-backend none (or pass --python)"
                               ) from None
    invoked_from = Path(session.invoked_from)
    environ = dict(os.environ)
    flags = {**setting_flags(args), "python": str(python), "preset": preset}

    def runner(setup: RunnerSetup) -> SessionRunner:
        return SessionRunner(session, environment=setup.environment, queries=SubprocessRunner(
            secrets=setup.secrets, environment=setup.environment))

    # A session is a clean room: the checkout's remembered settings are neither read nor
    # written (the configuration files and their defines are read, as the tasks read them).
    ws = open_workspace(command=f"nox -s {name}", flags=flags, runner=runner, environ=environ,
                        config=invoke_config(invoked_from, environ).files, cwd=invoked_from,
                        say=say, layer=LAYER, remember=False)
    say(f"checkout {ws.checkout.root}, target interpreter {python}, build dir "
        f"{ws.build_dir.relative_to(ws.checkout.root)}")
    return ws, python


def _stage_phases() -> dict[Stage, str]:
    from vllm_dev.commands.pipeline import Stage

    return {Stage.CONFIGURE: "configure", Stage.COMPILE: "compile", Stage.INSTALL: "install",
            Stage.CHECK: "import check"}


def _setup(session: NoxSession, ws: Workspace, *, tests: bool = False) -> None:
    """Editable install, then the build requirements, into the session's venv. The device that
    picks the requirements is torch's, and torch (if any) arrives with the editable install: the
    interpreter is probed as it is then (the fact cache notices the install; the workspace keeps
    no answer about it yet, so the build's plan probes it as it is after setup)."""
    from vllm_dev.steps.setup import UV_ONLY_ARGS, editable_step, requirements_step

    say = ws.say
    extra = UV_ONLY_ARGS if session.venv_backend == "uv" else ()
    step = editable_step(ws)
    say(f"setup: {step.message} (skipped under nox -R)")
    session.install(*step.args, *extra, env=step.env)
    device = ws.settings.device or ws.probe_facts().torch_device
    step = requirements_step(ws, ws.checkout.build_requirements(device))
    say(f"setup: {step.message} (skipped under nox -R)")
    session.install(*step.args, *extra)
    if tests:  # nox -s kernels
        from vllm_dev.steps.setup import test_requirements_step

        step = test_requirements_step(ws)
        say(f"setup: {step.message} (skipped under nox -R)")
        session.install(*step.args, *extra)
