"""``build``: prime when needed, compile, install, and check what was installed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_dev.caching.dist import farm_session
from vllm_dev.errors import CommandFailed, VllmDevError
from vllm_dev.flow.workspace import Workspace
from vllm_dev.host.disk import explain_failure
from vllm_dev.process.locking import workspace_lock
from vllm_dev.steps.install import InstallReport, check_components, components, install_components
from vllm_dev.steps.prime import PrimeResult, run_prime

if TYPE_CHECKING:
    from vllm_dev.process.progress import FailedStep
    from vllm_dev.reporting.recorder import Recorder
    from vllm_dev.steps.verify import WarmChecker


@dataclass(frozen=True)
class BuildResult:
    prime: PrimeResult
    install: InstallReport | None
    # False when the install wrote no file (nothing was rebuilt, or the same bytes came out)
    installed: bool = True
    # what was compiled: None = every target, [] = nothing (no change reached a target)
    targets: list[str] | None = None


def run_build(
    ws: Workspace,
    *,
    targets: list[str] | None = None,
    install: bool = True,
    verify: bool = False,
    merge: bool = False,
    force: bool = False,
    plain: bool = False,
    json_path: Path | None = None,
    started_at: float | None = None,
    since: str | None = None,
    every: bool = False,
) -> BuildResult:
    """Configure, compile and install under the build dir's lock: one ninja per build dir.

    ``plain`` turns the progress bar off; every build writes a report (see report.py), also to
    ``json_path`` when given. ``started_at`` (``time.monotonic()``) is when the command started,
    so that the report's total is the command's wall time (default: now). Without ``targets``
    only the targets affected by changes since the prebuilt kernels' commit are built (see
    affected.py); ``every`` builds them all."""
    from vllm_dev.checkout.affected import check_since
    from vllm_dev.reporting.recorder import Recorder

    recorder = Recorder(ws, json_path=json_path, started_at=started_at)
    with recorder.phase("checks"):
        ws.preflight(targets=targets, merge=merge, force=force)  # bad input changes nothing
        check_since(ws.checkout.root, since)
    with workspace_lock(ws):  # a wait for another build is a phase (see locking.py)
        warm = _warm_checker(ws) if install and verify else None
        try:
            with farm_session(ws, recorder):  # no-op without --dist
                result = _run_build_locked(ws, targets=targets, install=install, verify=verify,
                                           merge=merge, force=force, plain=plain,
                                           recorder=recorder, warm=warm, since=since,
                                           every=every)
        except VllmDevError as exc:
            recorder.finish_quietly(exit_code=exc.exit_code)
            raise
        finally:
            if warm is not None:
                with recorder.phase("verify"):  # the check's interpreter: part of its cost
                    warm.close()  # unused (nothing to check, or a failure): never left running
        recorder.finish(exit_code=0)
        return result


def _run_build_locked(
    ws: Workspace, *, targets: list[str] | None, install: bool, verify: bool, merge: bool,
    force: bool, plain: bool, recorder: Recorder, warm: WarmChecker | None,
    since: str | None = None, every: bool = False,
) -> BuildResult:
    from vllm_dev.process.progress import open_display
    from vllm_dev.reporting.build_report import (
        CONFIGURE_FAILED,
        CONFIGURE_NOT_NEEDED,
        CONFIGURE_RAN,
    )

    def configuring() -> None:  # a configure that then fails is still reported as one
        recorder.configured = True
        recorder.configure = CONFIGURE_FAILED  # until prime returns

    with recorder.phase("configure"):
        primed = run_prime(ws, merge=merge, force=force, on_configure=configuring)
    recorder.configured = primed.configured
    recorder.configure = CONFIGURE_RAN if primed.configured else CONFIGURE_NOT_NEEDED
    if not primed.configured:  # prime explained it when it configured
        ws.say(ws.parallelism.line())
    build_dir = ws.build_dir
    if not ws.dry:
        check_components(build_dir, targets)
    if not targets:
        with recorder.phase("select"):
            targets = _select(ws, since=since, every=every, recorder=recorder)
        if targets == []:
            return BuildResult(primed, None, installed=False, targets=[])
    elif not ws.dry:
        _remember_explicit(build_dir, targets)
    cmake = str(ws.cmake.path)
    # The job count goes to the build, not the configure: a change of jobs (or of free memory,
    # which sizes the default) never reconfigures.
    argv = [cmake, "--build", "--preset", ws.template.name]
    if targets:
        argv += ["--target", *targets]
    elif install:
        argv += ["--target", "all"]  # what `install` would build; the install is staged below
    argv += ["--parallel", str(ws.parallelism.jobs)]
    recorder.compile_starting(build_dir)
    display = open_display(plain=plain or ws.dry)  # a bar when stderr is a terminal
    started = time.monotonic()
    try:
        ws.runner.run(argv, cwd=ws.checkout.root, env=display.child_env() or None,
                      stream=_tee(display.line, warm), pseudo_terminal=display.pseudo_terminal)
    except CommandFailed as exc:
        raise explain_failure(name_failed_steps(exc, display.progress.failures),
                              build_dir) from None  # names a full disk
    finally:
        display.close()
        recorder.compile_finished(started=started,
                                  install_started=display.progress.install_started_at,
                                  failures=display.progress.failures)
    report = None
    if install:  # staged, then renamed into vllm/: an interrupt never leaves a partial .so
        with recorder.phase("install"):
            report = install_components(ws, build_dir, targets, only_changed=True)
    if install and verify and not ws.dry:
        from vllm_dev.steps.verify import verify_after_build

        # Inside the report: the check's time is the "verify" phase, not a hidden cost.
        with recorder.phase("verify"):
            verify_after_build(ws, components=targets or components(build_dir), warm=warm)
    installed = bool(report and report.written) or not install
    return BuildResult(primed, report, installed=installed, targets=targets or None)


def _select(ws: Workspace, *, since: str | None, every: bool, recorder: Recorder
            ) -> list[str] | None:
    """The targets to build (None: all, []: none), said for a fresh build dir, a dry run,
    ``--since``, and whenever the set of targets grows; the report always has it."""
    from vllm_dev.checkout import affected

    before = affected.built_before(ws.build_dir)
    selection = affected.plan(ws, since=since, every=every)
    recorder.selection = selection.lines()
    changed = selection.targets is not None and set(selection.targets) != set(before or [])
    if ws.dry or before == [] or changed or since:  # not on every build of the same targets
        for line in selection.lines():
            ws.say(line)
    if selection.targets == []:
        ws.say("nothing to compile or install: the prebuilt kernels in vllm/ stay as they are")
    elif not ws.dry:
        affected.remember_built(ws.build_dir, selection.targets)
    return selection.targets


def _remember_explicit(build_dir: Path, targets: list[str]) -> None:
    """``--target``s are built here from now on too (unless the dir builds everything)."""
    from vllm_dev.checkout import affected

    before = affected.built_before(build_dir)
    if before is not None:
        affected.remember_built(build_dir, sorted(set(before) | set(targets)))


def _warm_checker(ws: Workspace) -> WarmChecker | None:
    """The post-build check's interpreter, started once ninja starts a step (see
    verify.WarmChecker); only for real subprocess runs (a dry or fake runner starts nothing)."""
    from vllm_dev.process.runner import SubprocessRunner
    from vllm_dev.steps.verify import WarmChecker

    if ws.dry or not isinstance(ws.runner, SubprocessRunner):
        return None
    return WarmChecker(ws)


def _tee(display_line: Callable[[str], None], warm: WarmChecker | None
         ) -> Callable[[str], None]:
    if warm is None:
        return display_line

    def on_line(text: str) -> None:
        warm.on_line(text)
        display_line(text)
    return on_line


def name_failed_steps(exc: CommandFailed, failures: list[FailedStep]) -> CommandFailed:
    """``exc`` naming the files that failed (the report's ``failed:`` lines just above it give
    each one's first error line)."""
    if not failures:
        return exc
    from vllm_dev.reporting.ninja_log import source_of

    sources = [source_of(o) for step in failures for o in step.outputs] or ["a build step"]
    named = ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
    better = CommandFailed(exc.argv, exc.returncode)
    better.args = (f"{exc}: {named} failed",)
    return better


def run_build_and_verify(ws: Workspace, *, verify: bool = True, **options: Any) -> BuildResult:
    """``build``, then the check of what it installed (see verify.py), inside the build's
    report. Only extensions not loaded since they last changed are checked."""
    return run_build(ws, verify=verify, **options)
