"""One invocation's view of the world, looked up lazily: settings, checkout, interpreter, tools.

Every fact is looked up at most once and only when asked for, so a task only pays for what it
uses (``clean`` never probes the interpreter, ``verify`` never looks for cmake). The commands that
build (prime, build, install, the Nox sessions) do not work from this lazy view: the pipeline
resolves it once into a frozen :class:`~vllm_dev.planning.plan.BuildPlan` (an install of what is
built: its :class:`~vllm_dev.planning.plan.BuildDirPlan` part; see plan.py), which the steps take.

Every door opens its workspace with :func:`open_workspace` (the Invoke tasks, the Nox sessions, the
demo): settings are resolved and the runner's environment assembled in one place, so a source of
settings (the remembered ones, the checkout root's ``invoke.yaml``) or a variable every command
needs (the compiler cache's) reaches every door at once. A door only says which kind of runner it
wants (:data:`RunnerFactory`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_dev.caching import compiler_cache as cc
from vllm_dev.caching import dist
from vllm_dev.caching.dist import farm_jobs
from vllm_dev.checkout.tree import Checkout, find_checkout
from vllm_dev.config import remember as memo
from vllm_dev.config.declarations import setting
from vllm_dev.config.settings import ConfigFile, Settings, Source
from vllm_dev.errors import VllmDevError
from vllm_dev.host.machine import probe_machine
from vllm_dev.host.parallelism import DEFAULT_ARCH_COUNT, Parallelism, choose
from vllm_dev.presets import document as presets_doc
from vllm_dev.presets.render import (
    PresetTemplate,
    TemplateSet,
    check_define_name,
    resolve_binary_dir,
)
from vllm_dev.process.runner import Runner
from vllm_dev.state import layout
from vllm_dev.toolchain.arch import ArchSelection, nvcc_arches, probe_gpus, select_arches
from vllm_dev.toolchain.fact_cache import cached_probe, cached_version, for_state_dir
from vllm_dev.toolchain.interpreter import (
    Interpreter,
    InterpreterFacts,
    find_interpreter,
    requirement_names,
)
from vllm_dev.toolchain.tools import (
    Tool,
    find_cmake,
    find_launcher,
    require_nvcc,
)

if TYPE_CHECKING:
    from vllm_dev.caching.dist import DistPlan
    from vllm_dev.config.remember import Pending
    from vllm_dev.toolchain.fact_cache import FactCache


def _stderr(message: str) -> None:
    print(f"vllm-dev: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunnerSetup:
    """What every door's runner carries, taken from the resolved settings by
    :func:`open_workspace`: variables added to every command's environment without being echoed
    (a credentialed remote-cache URL the presets name by variable), and the secrets a printed
    command line never shows."""

    environment: Mapping[str, str]
    secrets: tuple[str, ...]


#: How a door makes its runner (real commands printed as they run, a Nox session's, a dry one)
#: from what every runner carries.
RunnerFactory = Callable[[RunnerSetup], Runner]


@dataclass
class Workspace:
    """Lazily resolved context: what setup, clean, verify, report and doctor read directly, and
    what :func:`vllm_dev.planning.plan.resolve_plan` turns into a build's plan."""

    settings: Settings
    runner: Runner
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    say: Callable[[str], None] = _stderr
    # Non-empty (the Nox sessions use "nox-"): render only this workspace's preset, named
    # <layer><template>, standalone and beside the presets already in the file (presets.layered).
    layer: str = ""
    #: What this run leaves in the checkout's memory (see :meth:`remember`); None: nothing.
    pending: Pending | None = None

    @property
    def dry(self) -> bool:
        return self.runner.dry

    def remember(self) -> None:
        """Write the settings this run remembers (config/remember.py): called once the command
        reaches its configure or build. Never in a dry run; at most once."""
        pending, self.pending = self.pending, None
        if pending is not None and not self.dry:
            pending.commit(self.say)

    @cached_property
    def checkout(self) -> Checkout:
        return find_checkout(self.settings.source, cwd=self.cwd,
                             origin=self.settings.origin("source"))

    @cached_property
    def interpreter(self) -> Interpreter:
        python = self.settings.python
        source = self.settings.source_of("python")
        if python and source.kind == "remembered" and not os.path.exists(
                os.path.expanduser(python)):
            raise VllmDevError(
                f"the remembered --python {python} ({source.words}) no longer exists: pass "
                "--python, or forget it with `vllm-dev settings --forget python`")
        return find_interpreter(python, checkout=self.checkout,
                                environ=self.environ, origin=self.settings.origin("python"))

    @cached_property
    def facts(self) -> InterpreterFacts:
        return self.probe_facts()

    def probe_facts(self) -> InterpreterFacts:
        """The target interpreter's facts as they are now: remembered across commands while its
        files are unchanged (see fact_cache.py), but not by this workspace, so that a caller that
        just installed into the interpreter (a Nox session's setup) sees what arrived."""
        names: list[str] = []
        with contextlib.suppress(VllmDevError):  # a missing file is reported where it matters
            names = requirement_names(self.checkout.build_requirements(
                self.settings.device or "cuda"))
        # remembered: see fact_cache.py
        facts = cached_probe(self.fact_cache, self.interpreter, runner=self.runner,
                             packages=names)
        if not (3, 10) <= facts.version[:2] <= (3, 14):
            version = ".".join(map(str, facts.version))
            raise VllmDevError(
                f"target interpreter {self.interpreter.path} is Python {version}; vLLM needs "
                "3.10 to 3.14: create a venv with a supported Python"
            )
        return facts

    @cached_property
    def device(self) -> str:
        return self.settings.device or self.facts.torch_device

    @cached_property
    def template_set(self) -> TemplateSet:
        """Every template this checkout sees (see presets/document.py)."""
        return presets_doc.find_templates(self.checkout.state_dir, self.settings.presets_dir,
                                          preset=self.settings.preset, say=self.say,
                                          cache=self.fact_cache)

    @cached_property
    def templates(self) -> dict[str, PresetTemplate]:
        return presets_doc.templates_in_use(self.template_set, self.layer)

    @cached_property
    def template(self) -> PresetTemplate:
        return presets_doc.choose(self.template_set, self.settings.preset, layer=self.layer,
                                  state_dir=self.checkout.state_dir)

    @cached_property
    def build_dir(self) -> Path:
        return resolve_binary_dir(self.template, source_dir=self.checkout.root)

    @cached_property
    def cmake(self) -> Tool:
        return find_cmake(interpreter=self.interpreter, runner=self.runner,
                          minimum=self.checkout.cmake_minimum(),
                          version=lambda p: cached_version(self.fact_cache, p,
                                                           runner=self.runner))

    @cached_property
    def fact_cache(self) -> FactCache:
        """Answers of slow probes, kept while their files are unchanged (see fact_cache.py)."""
        return for_state_dir(self.checkout.state_dir, dry=self.dry)

    @cached_property
    def parallelism(self) -> Parallelism:
        arches = self.arch.archs
        local = choose(self.settings, device=self.device,
                       arch_count=len(arches) if arches else DEFAULT_ARCH_COUNT)
        farm = self.dist_plan
        if farm is None or not farm.status.ok or self.settings.jobs or self.settings.max_jobs:
            return local  # a farm that is down never sizes a local build

        jobs, why = farm_jobs(farm.status, available_gib=probe_machine().memory.gib)
        return Parallelism(jobs, local.nvcc_threads, why)

    @cached_property
    def dist_plan(self) -> DistPlan | None:
        """``--dist``: the token, this checkout's sccache client, what the scheduler said."""
        if not self.settings.dist:
            return None

        sccache = find_launcher("sccache", interpreter=self.interpreter)
        found = dist.plan(self.settings.dist, state_dir=self.checkout.state_dir, sccache=sccache,
                          version=cached_version(self.fact_cache, sccache, runner=self.runner)
                          if sccache else None,
                          cache_dir=self.settings.cache_dir, environ=self.environ)
        secrets = getattr(self.runner, "secrets", None)
        if secrets is not None:  # never echoed, whatever command might carry it
            self.runner.secrets = (*secrets, *found.secrets)  # type: ignore[attr-defined]
        return found

    @cached_property
    def nvcc(self) -> Tool | None:
        """nvcc and its version, for CUDA builds (None otherwise)."""
        if self.device != "cuda":
            return None
        path = require_nvcc(self.environ)

        return Tool("nvcc", path, cached_version(self.fact_cache, path, runner=self.runner))

    @cached_property
    def arch(self) -> ArchSelection:
        """TORCH_CUDA_ARCH_LIST for the preset: --arch, else this machine's GPUs (see arch.py)."""
        if self.device != "cuda":  # an --arch given for it is refused there
            return select_arches(self.settings.arch, origin=self.settings.origin("arch"),
                                 device=self.device, gpus=None, supported=None)
        nvcc = self.nvcc
        supported = self.fact_cache.memo(
            f"nvcc-arches {nvcc.path}", [nvcc.path],
            lambda: nvcc_arches(nvcc.path, runner=self.runner),
            encode=lambda v: list(v) if v else None,
            decode=tuple) if nvcc else None
        gpus = None if self.settings.arch else probe_gpus(runner=self.runner)
        return select_arches(self.settings.arch, origin=self.settings.origin("arch"),
                             device=self.device, gpus=gpus, supported=supported)


def open_workspace(
    *,
    command: str,
    flags: Mapping[str, object],
    runner: RunnerFactory,
    environ: Mapping[str, str] | None = None,
    config: Callable[[Path | None], Sequence[ConfigFile]] | None = None,
    cwd: Path | None = None,
    say: Callable[[str], None] = _stderr,
    layer: str = "",
    remember: bool = True,
    undefine: Sequence[str] = (),
    announce: bool = True,
    chosen: Mapping[str, tuple[object, str]] | None = None,
) -> Workspace:
    """The one way every door resolves a run's settings and opens its workspace.

    ``flags`` are the command line's (``Settings.resolve``'s), ``config(root)`` the configuration
    sources weakest first, with the checkout root's file once the checkout is known (None before
    that). ``remember=False`` (a Nox session: a clean room) neither reads nor writes the
    remembered settings, like ``--no-remember``. ``undefine`` are ``-U`` names: forgotten, and
    dropped from the run's defines. ``runner(setup)`` makes the runner from what every runner
    carries (:class:`RunnerSetup`: the resolved compiler cache's environment and secrets).
    ``announce=False`` leaves out the line naming the remembered values in use (``vllm-dev
    settings`` shows them anyway). ``chosen`` are values the command itself picked for this run,
    by setting name, each with why in words (the demo's example arch when no GPU narrows it):
    they rank as flags, are checked as flags are, and every message names the why as their origin.
    """
    environ = dict(os.environ) if environ is None else environ
    cwd = cwd or Path.cwd()
    files: Sequence[ConfigFile] = config(None) if config else ()
    given = Settings.resolve(flags=flags, environ=environ, config=files)
    _check_undefine(undefine, given)
    root = _checkout_root(given, cwd)
    if config is not None and root is not None:
        files = config(root)
        given = Settings.resolve(flags=flags, environ=environ, config=files)
    memory = None
    pending = None
    if remember and not given.no_remember and root is not None:
        state_dir = root / layout.STATE_DIR
        memory = memo.usable(memo.read(state_dir, say=say), given.preset, given=given,
                             environ=environ, undefine=undefine, say=say)
    settings = Settings.resolve(flags=flags, environ=environ, config=files, remembered=memory)
    if chosen:
        settings = _with_chosen(settings, chosen)
    _still_defined(undefine, settings, say)
    if memory is not None and root is not None:
        if announce and (line := memo.in_use_line(settings, command)):
            say(line)
        pending = memo.Pending(root / layout.STATE_DIR, settings.preset, command, settings,
                               tuple(undefine))
    cache = cc.config_from(settings)
    setup = RunnerSetup(environment=cc.command_environment(cache), secrets=cache.secrets)
    return Workspace(settings=settings, runner=runner(setup), environ=environ, cwd=cwd,
                     say=say, layer=layer, pending=pending)


def _with_chosen(settings: Settings, chosen: Mapping[str, tuple[object, str]]) -> Settings:
    """``settings`` with the values a command chose itself (see :func:`open_workspace`)."""
    values = {name: setting(name).convert(value, why) for name, (value, why) in chosen.items()}
    why = {name: reason for name, (_, reason) in chosen.items()}
    return replace(
        settings, **values,
        origins=tuple(sorted({**dict(settings.origins), **why}.items())),
        sources=tuple(sorted({**dict(settings.sources),
                              **{name: Source("flag", reason) for name, reason in why.items()}
                              }.items())))


def _checkout_root(settings: Settings, cwd: Path) -> Path | None:
    """The checkout's root, when there is one (its absence is reported where it matters)."""
    try:
        return find_checkout(settings.source, cwd=cwd, origin=settings.origin("source")).root
    except VllmDevError:
        return None


def _check_undefine(names: Sequence[str], given: Settings) -> None:
    """``-U NAME``: a cache variable's name (CMake's ``-U`` takes globs; vllm-dev's takes names
    only), and not also given with ``-D`` in the same command."""
    flagged = {n for n, s in given.define_sources if s.kind == "flag"}
    for name in names:
        check_define_name(name, "-U")
        if name in flagged:
            raise VllmDevError(f"-U {name} and -D {name}=... in one command: give one of them")


def _still_defined(names: Sequence[str], settings: Settings, say: Callable[[str], None]) -> None:
    """A ``-U``'s name that another layer still sets stays set: say where."""
    sources = dict(settings.define_sources)
    for name in names:
        if name in sources:
            say(f"-U {name}: {name} is still set by {sources[name].words}; remove it there to "
                "drop it")
