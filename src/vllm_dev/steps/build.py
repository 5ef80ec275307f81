"""Compile: pick the targets to build and run ``cmake --build`` on them, with progress.

The step takes a resolved :class:`~vllm_dev.flow.plan.BuildPlan`; the pipeline (pipeline.py)
runs it between configure and install, under the build dir's lock, inside the build's report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_dev.errors import CommandFailed, VllmDevError
from vllm_dev.flow.plan import BuildPlan
from vllm_dev.host.disk import explain_failure

if TYPE_CHECKING:
    from vllm_dev.checkout.affected import Selection
    from vllm_dev.process.progress import FailedStep
    from vllm_dev.reporting.recorder import Recorder
    from vllm_dev.steps.verify import WarmChecker


def compile_targets(plan: BuildPlan, targets: list[str] | None, *, install: bool, plain: bool,
                    recorder: Recorder, warm: WarmChecker | None) -> None:
    """``cmake --build`` of ``targets`` (None: what the install needs, i.e. all)."""
    from vllm_dev.process.progress import open_display

    # The job count goes to the build, not the configure: a change of jobs (or of free memory,
    # which sizes the default) never reconfigures.
    argv = [str(plan.cmake.path), "--build", "--preset", plan.template.name]
    if targets:
        argv += ["--target", *targets]
    elif install:
        argv += ["--target", "all"]  # what `install` would build; the install is staged after
    argv += ["--parallel", str(plan.parallelism.jobs)]
    recorder.compile_starting(plan.build_dir)
    display = open_display(plain=plain or plan.dry)  # a bar when stderr is a terminal
    started = time.monotonic()
    try:
        plan.runner.run(argv, cwd=plan.checkout.root, env=display.child_env() or None,
                        stream=_tee(display.line, warm), pseudo_terminal=display.pseudo_terminal)
    except CommandFailed as exc:
        require_build_dir(plan.build_dir, plan.dry)  # gone: that is the failure to name
        raise explain_failure(name_failed_steps(exc, display.progress.failures),
                              plan.build_dir) from None  # names a full disk
    finally:
        display.close()
        recorder.compile_finished(started=started,
                                  install_started=display.progress.install_started_at,
                                  failures=display.progress.failures)
    require_build_dir(plan.build_dir, plan.dry)


def require_build_dir(build_dir: Path, dry: bool = False) -> None:
    """A build dir removed while the build ran (a `rm -rf`, a `clean` from another shell) fails
    with that reason, not with whatever step broke first."""
    if not dry and not build_dir.is_dir():
        raise VllmDevError(f"{build_dir} was removed while the build ran, so nothing was "
                           "installed: run `vllm-dev build` again (it configures a new one)")


def select_targets(plan: BuildPlan, *, since: str | None, every: bool, recorder: Recorder
                   ) -> Selection:
    """The targets to build (``.targets``: None all, [] none) and why, said for a fresh build
    dir, a dry run, ``--since``, whenever the set of targets grows, and when the checkout's base
    moved past W; the report always has it."""
    from vllm_dev.checkout import affected

    before = affected.built_before(plan.build_dir)
    selection = affected.plan(plan.build_dir, plan.checkout, environ=plan.environ,
                              torch=plan.facts.torch, jobs=plan.parallelism.jobs, dry=plan.dry,
                              since=since, every=every)
    recorder.selection = selection.lines()
    changed = selection.targets is not None and set(selection.targets) != set(before or [])
    # Not on every build of the same targets; a base move until `vllm-dev setup` follows it.
    if plan.dry or before == [] or changed or since or selection.base_move is not None:
        for line in selection.lines():
            plan.say(line)
    if selection.targets == []:
        plan.say("nothing to compile or install: the prebuilt kernels in vllm/ stay as they are")
    elif not plan.dry:
        affected.remember_built(plan.build_dir, selection.targets)
    return selection


def remember_explicit(build_dir: Path, targets: list[str]) -> None:
    """``--target``s are built here from now on too (unless the dir builds everything)."""
    from vllm_dev.checkout import affected

    before = affected.built_before(build_dir)
    if before is not None:
        affected.remember_built(build_dir, sorted(set(before) | set(targets)))


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
