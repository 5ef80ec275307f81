"""One cycle of ``vllm-dev test``: build what the change reaches, install it, run the kernel
tests, say what happened in one line. ``vllm-dev test`` runs one (command.py); ``--watch``
(watch.py) runs one at start and one per save.

The build is the pipeline every build runs (commands/pipeline.py: configure, compile, install,
check, under the build dir's lock, with its report); nothing of it is done again here. If it
fails, the compiler's error has been shown in full by the build and no test runs; the exit
status is then the build's. Otherwise the tests run in the target interpreter from the checkout
(kerneltests/pytest_run.py), on the selection given after ``--``, else the one remembered for
the checkout (kerneltests/remembered.py), else the tests the picker finds for what changed
(kerneltests/picker.py); the exit status is the tests'.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_dev.checkout.affected import changed_files, check_since
from vllm_dev.checkout.precompiled import Base, find_base
from vllm_dev.commands import pipeline
from vllm_dev.config.declarations import setting
from vllm_dev.errors import CommandFailed, VllmDevError
from vllm_dev.kerneltests import pytest_args, remembered
from vllm_dev.kerneltests.picker import Picker
from vllm_dev.kerneltests.pytest_args import PytestArgs
from vllm_dev.kerneltests.pytest_run import (
    JUNIT_FILE,
    NOTHING_TESTED,
    TestOutcome,
    pytest_argv,
    run_tests,
)
from vllm_dev.planning.workspace import Workspace
from vllm_dev.process.runner import format_command
from vllm_dev.reporting.build_report import REPORT_FILE, read_report

if TYPE_CHECKING:
    from vllm_dev.commands.pipeline import PipelineResult, Request



@dataclass(frozen=True)
class TestOptions:
    """What ``vllm-dev test`` was asked (the build settings are in the workspace)."""

    __test__ = False  # a name pytest would otherwise try to collect

    targets: tuple[str, ...] = ()  # --target: only these (else the affected ones, as build)
    since: str | None = None
    every: bool = False  # --all
    plain: bool = False
    verify: bool = False  # the build's load check: the tests load the extensions themselves
    args: tuple[str, ...] = ()  # after --: pytest's
    under: str | None = None  # --under "compute-sanitizer": the tool the tests run under
    pick: bool = False  # forget the remembered selection, pick by change
    remember: bool = True  # a Nox session remembers nothing
    watch: bool = False
    started_at: float | None = None  # the process's start (the first build's report)
    undefine: tuple[str, ...] = ()  # -U NAME: removed from the kept CMake cache (as build's)


@dataclass(frozen=True)
class BuildFigures:
    """What a cycle's build did, from its report (reporting/build_report.py)."""

    ok: bool
    exit_code: int
    objects: int  # compiled (failed ones not counted)
    failed: int
    compile_seconds: float
    seconds: float  # the whole build, configure and install included
    installed: int = 0  # files written into vllm/

    def describe(self) -> str:
        if not self.ok:
            return (f"build FAILED (exit code {self.exit_code}): {self.failed} object(s) failed, "
                    f"{self.objects} compiled in {self.compile_seconds:.1f} s")
        return (f"{self.objects} object(s) compiled in {self.compile_seconds:.1f} s, "
                f"{self.installed} file(s) installed")


@dataclass
class CycleResult:
    status: int
    build: BuildFigures | None = None
    outcome: TestOutcome | None = None
    note: str = ""  # why no test ran, when none did
    targets: list[str] | None = field(default_factory=list)  # built (None: every target)
    installed_here: bool = False  # this preset's files are in vllm/ now
    seconds: float = 0.0

    def summary(self) -> str:
        """The one line a run ends with: objects compiled and time, files installed, tests
        passed/failed/skipped and time."""
        build = self.build.describe() if self.build else "no build report"
        if self.outcome is not None:
            tests = f"{self.outcome.counts()} in {self.outcome.seconds:.1f} s"
        else:
            tests = self.note or "no test run"
        return f"test: {build}; {tests}"


# ----------------------------------------------------------------------------- the selection


@dataclass(frozen=True)
class Selection:
    """Which tests: ``args`` (selection and per-run rest); ``pick``: choose by change."""

    args: PytestArgs
    pick: bool


def choose_selection(ws: Workspace, options: TestOptions) -> Selection:
    """The selection given after ``--`` (remembered), else the remembered one (said), else the
    picker's. A Nox session (``remember=False``) neither reads nor writes the memory."""
    given = pytest_args.split(options.args)
    state_dir = ws.checkout.state_dir
    # --no-remember (VLLM_DEV_NO_REMEMBER=1) leaves the selection alone too, as the settings.
    options = replace(options, remember=options.remember and not ws.settings.no_remember)
    if given.selection:
        if options.remember and not ws.dry:
            remembered.save_selection(state_dir, given.selection, say=ws.say)
        return Selection(given, pick=False)
    if options.pick:
        if options.remember and not ws.dry and remembered.forget_selection(state_dir, say=ws.say):
            ws.say("forgot the remembered test selection: picking the tests by what changed")
        return Selection(given, pick=True)
    kept = remembered.load_selection(state_dir, say=ws.say) if options.remember else None
    if kept:
        ws.say(f"reusing the test selection remembered for this checkout: {' '.join(kept)} "
               "(give another after --, or --pick to pick tests by what changed)")
        return Selection(replace(given, selection=kept), pick=False)
    return Selection(given, pick=True)


# ----------------------------------------------------------------------------- one cycle


def build_request(options: TestOptions, *, targets: tuple[str, ...] | None = None,
                  started_at: float | None = None) -> Request:
    """The pipeline request of a cycle (``targets``: a later watch cycle's explicit ones)."""
    return pipeline.Request(
        stages=pipeline.build_stages(install=True, verify=options.verify),
        targets=options.targets if targets is None else targets, since=options.since,
        every=options.every and targets is None, plain=options.plain, started_at=started_at,
        undefine=options.undefine, ask=False)  # test and --watch never ask [y/N]


def run_cycle(ws: Workspace, options: TestOptions, selection: Selection, request: Request, *,
              changed: Iterable[str] | None = None, where: str = "") -> CycleResult:
    """Build, install, pick (if asked), test. ``changed``: the files this cycle is for (a
    watch save); None: what changed since the prebuilt kernels' commit, as the build selects."""
    started, wall = time.monotonic(), time.time()
    result: PipelineResult | None = None
    try:
        result = pipeline.run(ws, request)
    except CommandFailed as exc:  # the compiler's output and the build report are above
        figures = _figures(ws.build_dir, since=wall, installed=0)
        return CycleResult(exc.exit_code, figures, note="no test run",
                           seconds=time.monotonic() - started)
    plan = result.plan
    installed = len(result.install.written) if result.install else 0
    figures = _figures(plan.build_dir, since=wall, installed=installed)
    done = CycleResult(0, figures, targets=result.targets,
                       installed_here=result.install is not None)
    args = selection.args
    if selection.pick:
        if ws.dry:
            ws.say("the tests would be picked from the objects of this build (nothing is run "
                   "in a dry run)")
            return done

        if changed is None:
            try:
                changed, where = changed_since_base(ws, options.since)
            except VllmDevError as exc:  # W unknown: nothing to pick from
                ws.say(str(exc))
                done.status, done.note = NOTHING_TESTED, "no test picked"
                return done
        pick = Picker(plan.checkout.root, plan.build_dir).pick(changed, where=where)
        for line in pick.lines():
            ws.say(line)
        if not pick.tests:
            done.status, done.note = NOTHING_TESTED, "no test picked"
            done.seconds = time.monotonic() - started
            return done
        args = replace(args, selection=tuple(pick.tests))
    done.outcome = _test(ws, plan.build_dir, args, under=options.under)
    if done.outcome is None:  # dry
        return done
    problem = done.outcome.problem()
    if problem:
        ws.say(problem)
    done.status = done.outcome.status
    done.seconds = time.monotonic() - started
    return done


def _test(ws: Workspace, build_dir: Path, args: PytestArgs, *, under: str | None
          ) -> TestOutcome | None:
    root = ws.checkout.root
    junit = build_dir / JUNIT_FILE
    argv = pytest_argv(ws.interpreter.path, args, under=under, junit=junit)
    if ws.dry:
        ws.say(f"would run the tests: {format_command(argv)}")
        return None
    ws.say(f"$ {format_command(argv)}")
    mine = args.junit_path
    report = Path(mine) if mine and os.path.isabs(mine) else root / mine if mine else junit
    return run_tests(argv, cwd=root, junit=report, own_interrupt=bool(under))


def changed_since_base(ws: Workspace, since: str | None) -> tuple[list[str], str]:
    """The files changed since the prebuilt kernels' commit W (or ``--since``), as the build's
    selection sees them, and how to name that base."""
    root = ws.checkout.root
    sha = check_since(root, since)
    base = Base(sha, f"--since {since}") if sha else find_base(root, ws.checkout.state_dir,
                                                               ws.environ)
    if base.commit is None:
        raise VllmDevError(f"cannot pick tests by what changed: W is unknown ({base.problem}); "
                           "give the tests after -- (vllm-dev test -- tests/kernels/...) or "
                           "--since REF")
    return (changed_files(root, base.commit, skip=[ws.build_dir]),
            f"since {base.commit[:12]} ({base.origin})")


def _figures(build_dir: Path, *, since: float, installed: int) -> BuildFigures | None:
    """This cycle's build figures, from the report it wrote (None when it wrote none)."""
    path = build_dir / REPORT_FILE
    try:
        if path.stat().st_mtime < since - 1:  # ``since``: the cycle's start, wall clock
            return None  # an earlier build's
    except OSError:
        return None
    report = read_report(path)
    if report is None:
        return None
    failed = len({f.output for f in report.failed})
    return BuildFigures(report.ok, report.exit_code, max(0, report.compile_steps - failed),
                        failed, report.phases.get("compile", 0.0), report.total_seconds,
                        installed)


def installed_preset_line(ws: Workspace, result: CycleResult) -> str | None:
    """``debug kernels are now installed ...; `vllm-dev build --preset release` puts ...``."""
    preset = ws.settings.preset
    default = setting("preset").default
    if preset == default or not result.installed_here or ws.dry:
        return None
    build_type = ws.template.build_type
    what = "debug kernels" if build_type == "Debug" else f"{preset} kernels ({build_type})"
    return (f"{what} are now installed in {ws.checkout.package_dir} (preset {preset}); "
            f"`vllm-dev build --preset {default}` puts the {default} kernels back")
