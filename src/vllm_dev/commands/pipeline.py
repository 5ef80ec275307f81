"""The one build pipeline: configure -> compile -> install -> check, over one resolved plan.

Both front ends call :func:`run` once per command: the Invoke tasks ``prime`` (configure),
``build`` (all four stages, or fewer with ``--no-install``/``--no-verify``) and ``install``
(install only), and each Nox build session (all four, every stage timed as a session phase).
:func:`run` resolves the workspace into a :class:`~vllm_dev.planning.plan.BuildPlan` once, checks
the request against it before anything is written, takes the build dir's lock once, and runs the
stages asked for; each stage is a function of ``steps/`` taking the plan.

A request that compiles is a *build*: it writes a report (time per phase, cache hits; see
reporting/), starts the checking interpreter while ninja runs (verify.WarmChecker), and, with
``--dist``, runs the build farm's client around it (farm.py).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_dev.checkout.affected import check_since
from vllm_dev.commands.farm import farm_session
from vllm_dev.errors import VllmDevError
from vllm_dev.installs.components import check_components, components
from vllm_dev.planning.plan import (
    BuildDirPlan,
    BuildPlan,
    plan_lock,
    resolve_build_dir,
    resolve_plan,
)
from vllm_dev.planning.workspace import Workspace
from vllm_dev.process.runner import SubprocessRunner
from vllm_dev.reporting.build_report import CONFIGURE_FAILED, CONFIGURE_NOT_NEEDED, CONFIGURE_RAN
from vllm_dev.reporting.ninja_log import log_size
from vllm_dev.reporting.recorder import Recorder
from vllm_dev.steps.build import compile_targets, remember_explicit, select_targets
from vllm_dev.steps.cost import build_load, confirm_cost, remember_timings
from vllm_dev.steps.install import install_components, require_configured
from vllm_dev.steps.prime import check_presets_file, configure, is_configured
from vllm_dev.steps.verify import WarmChecker, check_editable_install, verify_after_build

# The steps are imported where a stage runs: each command loads only the steps it runs (a
# vllm-dev start is mostly imports; see bench/).
if TYPE_CHECKING:
    from vllm_dev.caching.remote_check import Probe
    from vllm_dev.reporting.recorder import Recorder
    from vllm_dev.steps.install import InstallReport
    from vllm_dev.steps.prime import PrimeResult
    from vllm_dev.steps.verify import VerifyReport, WarmChecker


class Stage(enum.Enum):
    CONFIGURE = "configure"
    COMPILE = "compile"
    INSTALL = "install"
    CHECK = "check"


PRIME = frozenset({Stage.CONFIGURE})
BUILD = frozenset(Stage)
INSTALL = frozenset({Stage.INSTALL})


def build_stages(*, install: bool = True, verify: bool = True) -> frozenset[Stage]:
    """``build``'s stages: ``--no-install`` compiles only; ``--no-verify`` skips the check."""
    stages = {Stage.CONFIGURE, Stage.COMPILE}
    if install:
        stages.add(Stage.INSTALL)
        if verify:
            stages.add(Stage.CHECK)
    return frozenset(stages)


@dataclass(frozen=True)
class Request:
    """What a command asks of the pipeline (the settings are in the workspace)."""

    stages: frozenset[Stage] = BUILD
    targets: tuple[str, ...] = ()  # --target / --component: only these (all: empty)
    merge: bool = False  # add vllm-dev's presets beside a presets file it did not write
    force: bool = False  # replace such a file (a backup is kept)
    reconfigure: bool = False  # configure even when nothing changed
    since: str | None = None  # compile the targets affected since this git ref
    every: bool = False  # compile every target, not only the affected ones
    # Stage every component, not only those whose files may have changed (`vllm-dev install`,
    # a Nox session: they prove the install; unchanged bytes are still never rewritten).
    install_every: bool = False
    plain: bool = False  # plain lines instead of the progress bar
    json_path: Path | None = None  # the build report, also as JSON here
    trace_path: Path | None = None  # the build's timeline: Chrome trace JSON here, SVG beside
    started_at: float | None = None  # time.monotonic() at the command's start (the report)
    # Nox: the check also proves the venv's vllm is this checkout's editable install, and a
    # configure that is not needed says so (a session's log shows each stage).
    editable_check: bool = False
    announce_up_to_date: bool = False
    # -U NAME: removed from the CMake cache (cmake -U) by the configure
    undefine: tuple[str, ...] = ()
    # A big build whose targets vllm-dev chose may ask [y/N] first (steps/cost.py): never in a
    # Nox session, `test` or `--watch` (ask=False); --yes answers for this run.
    ask: bool = True
    yes: bool = False


@dataclass(frozen=True)
class PipelineResult:
    plan: BuildDirPlan  # a BuildPlan unless only the install ran
    prime: PrimeResult | None = None
    # what was compiled: None = every target, [] = nothing (no change reached a target)
    targets: list[str] | None = None
    install: InstallReport | None = None
    verify: VerifyReport | None = None

    @property
    def installed(self) -> bool:
        """Whether the install wrote a file (False: nothing rebuilt, or the same bytes)."""
        return bool(self.install and self.install.written)


StageTimer = Callable[[Stage], AbstractContextManager[object]]


def _untimed(stage: Stage) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


def run(ws: Workspace, request: Request, *, timer: StageTimer = _untimed) -> PipelineResult:
    """Resolve the plan, check the request, and run its stages under the build dir's lock.

    ``timer`` wraps each stage that runs (the Nox sessions time them as phases)."""
    if Stage.COMPILE in request.stages:
        return _build(ws, request, timer)
    # An install of what is built needs the build dir and cmake, not a configure's probes
    plan = resolve_plan(ws) if request.stages - INSTALL else resolve_build_dir(ws)
    _preflight(plan, request)
    with plan_lock(plan):
        if Stage.CONFIGURE in request.stages:
            ws.remember()  # the command reached its configure (config/remember.py)
        return _stages(plan, request, timer, recorder=None, warm=None)


def _preflight(plan: BuildDirPlan, request: Request) -> None:
    """Bad input fails with its one line before anything is written or locked."""
    targets = list(request.targets)
    if Stage.CONFIGURE in request.stages:
        check_presets_file(_full(plan), merge=request.merge, force=request.force)
        if targets and is_configured(plan.build_dir):  # else configure runs first
            check_components(plan.build_dir, targets)
    else:  # install only: what an earlier build left
        require_configured(plan.build_dir)
        check_components(plan.build_dir, targets)
    if Stage.COMPILE in request.stages:
        check_since(plan.checkout.root, request.since)


def _build(ws: Workspace, request: Request, timer: StageTimer) -> PipelineResult:
    """A request that compiles, inside its report: one ninja per build dir (the lock)."""
    recorder = Recorder(ws, json_path=request.json_path, started_at=request.started_at,
                        trace_path=request.trace_path)
    with recorder.phase("checks"):
        probe = _remote_probe(ws)  # asks while the plan resolves (remote_check.py)
        plan = resolve_plan(ws)
        _preflight(plan, request)
        if probe is not None:
            origin = ws.settings.origin("cache_remote")
            probe.warn(plan.say, check_command="vllm-dev doctor" + (
                f" --cache-remote {probe.shown}" if origin == "--cache-remote" else ""))
    recorder.ws = plan  # the report describes the build as planned

    with plan_lock(plan, waiting=lambda: recorder.phase("waiting for lock")):
        ws.remember()  # the command reached its configure and build (config/remember.py)
        warm = _warm_checker(plan) if Stage.CHECK in request.stages else None
        offset = None if plan.dry else log_size(plan.build_dir)  # the steps timed: after it
        load = build_load(plan)  # before its compiles: the machine's other work
        # the build's steps join the timing history, inside the report's time
        recorder.before_total.append(lambda report: remember_timings(
            plan, offset, report, wall=recorder.phases.get("compile"), load=load))
        try:
            with farm_session(plan, recorder):  # no-op without --dist
                result = _stages(plan, request, timer, recorder=recorder, warm=warm)
        except VllmDevError as exc:
            if not getattr(exc, "quiet", False):  # a "no" to the cost question: no report
                recorder.finish_quietly(exit_code=exc.exit_code)
            raise
        except KeyboardInterrupt:  # no report then; the steps that finished still count
            remember_timings(plan, offset, None, load=load)
            raise
        finally:
            if warm is not None:
                with recorder.phase("verify"):  # the check's interpreter: part of its cost
                    warm.close()  # unused (nothing to check, or a failure): never left running
        recorder.finish(exit_code=0)
        return result


def _remote_probe(ws: Workspace) -> Probe | None:
    """A look at the remote cache, started now (None without one, and in dry runs)."""
    if not ws.settings.cache_remote or ws.dry:
        return None
    # lazy (urllib's HTTP client, for a remote cache only): tests/test_lazy_imports.py
    from vllm_dev.caching.remote_check import start_probe

    return start_probe(ws.settings.cache_remote)


def _full(plan: BuildDirPlan) -> BuildPlan:
    """The whole plan, which every stage but an install on its own needs (see :func:`run`)."""
    assert isinstance(plan, BuildPlan), f"{plan!r} lacks what configure, compile, check need"
    return plan


def _stages(plan: BuildDirPlan, request: Request, timer: StageTimer, *,
            recorder: Recorder | None, warm: WarmChecker | None) -> PipelineResult:
    stages = request.stages
    targets: list[str] | None = list(request.targets)
    primed = None
    if Stage.CONFIGURE in stages:
        with timer(Stage.CONFIGURE), _phase(recorder, "configure"):
            primed = _configure(_full(plan), request, recorder)
            if not primed.configured and request.announce_up_to_date:
                plan.say(f"configure: {plan.build_dir.name} is up to date")
    if Stage.COMPILE in stages:
        assert recorder is not None  # a compile is a build (see run)
        with timer(Stage.COMPILE):
            targets = _compile(_full(plan), request, recorder, warm)
        if targets == []:  # nothing affected: the prebuilt kernels stay
            return PipelineResult(plan, primed, targets=[])
    report = None
    if Stage.INSTALL in stages:
        # staged, then renamed into vllm/: an interrupt never leaves a partial .so
        with timer(Stage.INSTALL), _phase(recorder, "install"):
            report = install_components(plan, targets, only_changed=not request.install_every)
    checked = None
    if Stage.CHECK in stages and Stage.INSTALL in stages and not plan.dry:
        # Inside the report: the check's time is the "verify" phase, not a hidden cost.
        with timer(Stage.CHECK), _phase(recorder, "verify"):
            checked = _check(_full(plan), request, targets, warm)
    return PipelineResult(plan, primed, targets=targets or None, install=report, verify=checked)


def _configure(plan: BuildPlan, request: Request, recorder: Recorder | None) -> PrimeResult:
    if recorder is None:
        return configure(plan, merge=request.merge, force=request.force,
                         reconfigure=request.reconfigure, undefine=request.undefine)

    def configuring() -> None:  # a configure that then fails is still reported as one
        recorder.configured = True
        recorder.configure = CONFIGURE_FAILED  # until configure returns

    primed = configure(plan, merge=request.merge, force=request.force,
                       reconfigure=request.reconfigure, on_configure=configuring,
                       undefine=request.undefine)
    recorder.configured = primed.configured
    recorder.configure = CONFIGURE_RAN if primed.configured else CONFIGURE_NOT_NEEDED
    return primed


def _compile(plan: BuildPlan, request: Request, recorder: Recorder,
             warm: WarmChecker | None) -> list[str] | None:
    if not recorder.configured:  # configure explained it when it ran
        plan.say(plan.parallelism.line())
    targets: list[str] | None = list(request.targets)
    if not plan.dry and recorder.configured:  # else the preflight checked them already
        check_components(plan.build_dir, targets)
    if not targets:
        with recorder.phase("select"):
            selection = select_targets(plan, since=request.since, every=request.every,
                                       recorder=recorder)
        targets = selection.targets
        if targets == []:
            return []
        if not request.every:  # a big build vllm-dev chose says its cost first (steps/cost.py)
            with recorder.phase("select"):
                confirm_cost(plan, selection, ask=request.ask, yes=request.yes)
    elif not plan.dry:
        remember_explicit(plan.build_dir, targets)
    compile_targets(plan, targets, install=Stage.INSTALL in request.stages, plain=request.plain,
                    recorder=recorder, warm=warm, announce_up_to_date=request.announce_up_to_date)
    return targets


def _check(plan: BuildPlan, request: Request, targets: list[str] | None,
           warm: WarmChecker | None) -> VerifyReport | None:
    if request.editable_check:
        check_editable_install(plan)
    return verify_after_build(plan, components=targets or components(plan.build_dir), warm=warm)


def _warm_checker(plan: BuildPlan) -> WarmChecker | None:
    """The post-build check's interpreter, started once ninja starts a step (see
    verify.WarmChecker); only for real subprocess runs (a dry or fake runner starts nothing)."""
    if plan.dry or not isinstance(plan.runner, SubprocessRunner):
        return None
    return WarmChecker(plan)


@contextlib.contextmanager
def _phase(recorder: Recorder | None, name: str) -> Iterator[None]:
    """``recorder.phase(name)`` for a build; nothing otherwise (prime, install: no report)."""
    if recorder is None:
        yield
        return
    with recorder.phase(name):
        yield
