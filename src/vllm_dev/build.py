"""``build``: prime when needed, compile, install, and check what was installed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_dev import install_state
from vllm_dev.disk import explain_failure
from vllm_dev.errors import CommandFailed, VllmDevError
from vllm_dev.install import InstallReport, check_components, check_installed, manifest_paths
from vllm_dev.locking import workspace_lock
from vllm_dev.prime import PrimeResult, run_prime
from vllm_dev.staged_install import staged_install
from vllm_dev.workspace import Workspace

if TYPE_CHECKING:
    from vllm_dev.progress import FailedStep
    from vllm_dev.report import Recorder


@dataclass(frozen=True)
class BuildResult:
    prime: PrimeResult
    install: InstallReport | None
    # False when the install was skipped as up to date (nothing new to verify either)
    installed: bool = True


def run_build(
    ws: Workspace,
    *,
    targets: list[str] | None = None,
    install: bool = True,
    merge: bool = False,
    force: bool = False,
    plain: bool = False,
    json_path: Path | None = None,
    recorder: Recorder | None = None,
    then: Callable[[BuildResult], None] | None = None,
) -> BuildResult:
    """Configure, compile and install under the build dir's lock: one ninja per build dir.

    ``plain`` turns the progress bar off; every build writes a report (see report.py), also to
    ``json_path`` when given, or to the given ``recorder`` (made earlier, to time the whole
    command). ``then`` is more work of this build (the import check): it runs under the same
    lock, before the report is written, so a ``clean`` or another build waiting for the lock
    never meets the build dir half-way through it."""
    from vllm_dev.report import Recorder

    rec = Recorder(ws, json_path=json_path) if recorder is None else recorder
    with rec.phase("checks"):
        ws.preflight(targets=targets, merge=merge, force=force)  # bad input changes nothing
    with workspace_lock(ws):  # a wait for another build is a phase (see locking.py)
        try:
            result = _run_build_locked(ws, targets=targets, install=install, merge=merge,
                                       force=force, plain=plain, recorder=rec)
            if then is not None:
                then(result)
        except VllmDevError as exc:
            rec.finish_quietly(exit_code=exc.exit_code)
            raise
        rec.finish(exit_code=0)
    return result


def _run_build_locked(
    ws: Workspace, *, targets: list[str] | None, install: bool, merge: bool, force: bool,
    plain: bool, recorder: Recorder,
) -> BuildResult:
    from vllm_dev.progress import open_display
    from vllm_dev.report import CONFIGURE_FAILED, CONFIGURE_NOT_NEEDED, CONFIGURE_RAN

    recorder.configure = CONFIGURE_FAILED  # until prime returns
    with recorder.phase("configure"):
        primed = run_prime(ws, merge=merge, force=force)
    recorder.configured = primed.configured
    recorder.configure = CONFIGURE_RAN if primed.configured else CONFIGURE_NOT_NEEDED
    if not primed.configured:  # prime explained it when it configured
        ws.say(ws.parallelism.line())
    build_dir = ws.build_dir
    if not ws.dry:
        check_components(build_dir, targets)
    cmake = str(ws.cmake.path)
    argv = [cmake, "--build", "--preset", ws.template.name]
    if targets:
        argv += ["--target", *targets]
    elif install:
        argv += ["--target", "all"]  # what `install` would build; the install is staged below
    recorder.compile_starting(build_dir)
    display = open_display(plain=plain or ws.dry)  # a bar when stderr is a terminal
    started = time.monotonic()
    try:
        ws.runner.run(argv, cwd=ws.checkout.root, env=display.child_env() or None,
                      stream=display.line, pseudo_terminal=display.pseudo_terminal)
    except CommandFailed as exc:
        raise explain_failure(name_failed_steps(exc, display.progress.failures),
                              build_dir) from None  # names a full disk
    finally:
        display.close()
        recorder.compile_finished(started=started,
                                  install_started=display.progress.install_started_at,
                                  failures=display.progress.failures)
    manifests = manifest_paths(build_dir, targets or None)
    installed_now = False
    if install:  # staged, then renamed into vllm/: an interrupt never leaves a partial .so
        with recorder.phase("install"):
            if not ws.dry and install_state.up_to_date(build_dir, targets or None, manifests,
                                                       steps_run=recorder.steps_run()):
                ws.say("install skipped: nothing was rebuilt and the installed files are "
                       "unchanged")
            else:
                install_state.forget(build_dir)
                staged_install(ws, build_dir, targets or None)
                installed_now = True
    report = None
    if install and not ws.dry:
        with recorder.phase("verify"):
            report = check_installed(ws, build_dir, targets)
        if installed_now:  # a skipped install left the remembered state as it was
            install_state.remember(build_dir, targets or None, manifests)
    return BuildResult(primed, report, installed=installed_now or not install)


def name_failed_steps(exc: CommandFailed, failures: list[FailedStep]) -> CommandFailed:
    """``exc`` naming the files that failed (the report's ``failed:`` lines just above it give
    each one's first error line)."""
    if not failures:
        return exc
    from vllm_dev.report import source_of

    sources = [source_of(o) for step in failures for o in step.outputs] or ["a build step"]
    named = ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
    better = CommandFailed(exc.argv, exc.returncode)
    better.args = (f"{exc}: {named} failed",)
    return better


def run_build_and_verify(ws: Workspace, *, verify: bool = True,
                         started_at: float | None = None, json_path: Path | None = None,
                         **options: Any) -> BuildResult:
    """``build``, then ``verify`` of what it installed (see verify.py), in one report.

    ``started_at`` (``time.monotonic()``) is when the command started, so the report's total
    is the command's wall time. Verify is skipped after a skipped install of files that
    imported fine when they were installed; a failed verify forgets the install state, so a
    broken extension is never skipped over."""
    from vllm_dev.report import Recorder

    recorder = Recorder(ws, json_path=json_path, started_at=started_at)

    def check(result: BuildResult) -> None:
        if not verify:
            return
        if not result.installed and install_state.verified(ws.build_dir):
            ws.say("verify skipped: the installed extensions are the ones verified before")
            return
        if ws.dry:
            return
        from vllm_dev.verify import verify_after_build

        try:
            with recorder.phase("import check"):
                verify_after_build(ws)
        except VllmDevError:
            install_state.forget(ws.build_dir)
            raise
        install_state.mark_verified(ws.build_dir)

    return run_build(ws, recorder=recorder, then=check, **options)
