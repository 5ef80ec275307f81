"""Compile: pick the targets to build and run ``cmake --build`` on them, with progress.

The step takes a resolved :class:`~vllm_dev.planning.plan.BuildPlan`; the pipeline (pipeline.py)
runs it between configure and install, under the build dir's lock, inside the build's report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_dev.caching.compiler_cache import NVCC_EXTRA_ENV
from vllm_dev.checkout import affected
from vllm_dev.checkout.build_graph import cache_value, ninja_of
from vllm_dev.errors import CommandFailed, VllmDevError
from vllm_dev.host.disk import explain_failure
from vllm_dev.host.parallelism import SPLIT_OPTION, Split, plan_unit_threads, split_threads
from vllm_dev.host.split_launcher import KIND, PLAN_FILE
from vllm_dev.planning.plan import BuildPlan
from vllm_dev.process.progress import open_display
from vllm_dev.reporting.ninja_log import source_of
from vllm_dev.reporting.trace import CACHE_LOG
from vllm_dev.state import records
from vllm_dev.steps.cost import history_for

if TYPE_CHECKING:
    from vllm_dev.checkout.affected import Selection
    from vllm_dev.checkout.pending import Pending
    from vllm_dev.host.parallelism import Split
    from vllm_dev.process.progress import FailedStep
    from vllm_dev.reporting.recorder import Recorder
    from vllm_dev.steps.verify import WarmChecker


def compile_targets(plan: BuildPlan, targets: list[str] | None, *, install: bool, plain: bool,
                    recorder: Recorder, warm: WarmChecker | None,
                    announce_up_to_date: bool = False) -> None:
    """``cmake --build`` of ``targets`` (None: what the install needs, i.e. all);
    ``announce_up_to_date``: say so when there is nothing to compile (a Nox session's log)."""
    # The job count goes to the build, not the configure: a change of jobs (or of free memory,
    # which sizes the default) never reconfigures.
    argv = [str(plan.cmake.path), "--build", "--preset", plan.template.name]
    if targets:
        argv += ["--target", *targets]
    elif install:
        argv += ["--target", "all"]  # what `install` would build; the install is staged after
    argv += ["--parallel", str(plan.parallelism.jobs)]
    split = None
    pending = None
    if plan.device == "cuda" and plan.nvcc is not None:
        with recorder.phase("split"):  # a `ninja -n`: the report shows what it cost
            pending = pending_units(plan, targets if targets else ["all"])
            split = choose_split(plan, pending)
            split = per_object_split(plan, pending, split)
        recorder.split = split
        if split is not None and (plan.dry or split.flag):
            plan.say(split.line())
    if pending is not None and pending.steps == 0 and not plan.dry:
        # ninja itself said it has nothing to do: `cmake --build` would only start cmake and
        # ninja again to say so (a no-op build's largest cost; see docs/benchmarks.md,
        # "What a no-op build costs").
        recorder.build_dir = plan.build_dir
        if announce_up_to_date:
            plan.say(f"compile: nothing to do in {plan.build_dir.name} (ninja -n)")
        return
    env = {**split_environment(split), **cache_log_environment(plan)}
    recorder.compile_starting(plan.build_dir)
    display = open_display(plain=plain or plan.dry)  # a bar when stderr is a terminal
    started = time.monotonic()
    try:
        plan.runner.run(argv, cwd=plan.checkout.root, env={**env, **display.child_env()} or None,
                        stream=_tee(_without_own_warning(display.line, split), warm),
                        pseudo_terminal=display.pseudo_terminal)
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


def pending_units(plan: BuildPlan, targets: list[str]) -> Pending | None:
    """What ninja would run for ``targets`` (``ninja -n``: read-only, so a dry run asks too);
    None when it cannot say (not configured, not a Ninja build, an unknown target)."""
    from vllm_dev.checkout.pending import pending_compiles

    try:
        return pending_compiles(plan.build_dir, targets, ninja=ninja_of(plan.build_dir))
    except VllmDevError:  # not configured yet, or not a Ninja build
        return None


def choose_split(plan: BuildPlan, pending: Pending | None) -> Split | None:
    """How the CUDA units of this build are split over idle cores (host/parallelism.py), from
    what ninja will compile (:func:`pending_units`); None when nvcc is not in the build."""
    if plan.device != "cuda" or plan.nvcc is None:
        return None

    if plan.settings.no_split:
        return Split(1, 0, f"off: {plan.settings.origin('no_split')}")
    if plan.dist_plan is not None and plan.dist_plan.status.ok:
        return Split(1, 0, "off on the build farm: its servers size their slots at one thread")
    own = " ".join(plan.environ.get(name, "") for name in ("NVCC_PREPEND_FLAGS",
                                                             "NVCC_APPEND_FLAGS"))
    if SPLIT_OPTION in own or "--split-compile" in own:
        return Split(1, 0, "your NVCC_APPEND_FLAGS/NVCC_PREPEND_FLAGS choose the split")
    if pending is None:
        return Split(1, 0, "the units to compile are known once the build dir is configured")
    if pending.regenerates:
        return Split(1, 0, "CMake re-runs first, so the units to compile are not known yet")
    own_threads = re.search(r"(^|\s)(-t|--threads)(=|\s|\d)", own) is not None
    return split_threads(plan.parallelism, cuda_units=len(pending.cuda),
                         other_units=len(pending.other), host_thread=not own_threads)


def per_object_split(plan: BuildPlan, pending: Pending | None, split: Split | None
                     ) -> Split | None:
    """With the per-object launcher configured (host/split_launcher.py in the build's
    ``CMAKE_CUDA_COMPILER_LAUNCHER``), the threads of each CUDA object from its past compile
    times (host/parallelism.plan_unit_threads), written for the launcher; the environment then
    carries no split. Without it, or where the split is off, no plan file is left behind (the
    launcher then changes nothing)."""
    path = plan.build_dir / PLAN_FILE
    if not uses_split_launcher(plan.build_dir) or pending is None or split is None \
            or split.cuda_units == 0 or plan.dry:
        if not plan.dry:
            path.unlink(missing_ok=True)
        return split

    history = history_for(plan).compile_times(plan.build_dir, preset=plan.template.name)
    weights = {obj: history.get(obj) for obj in pending.cuda}
    threads = plan_unit_threads(weights, plan.parallelism)
    split_ones = {o: t for o, t in threads.items() if t > 1}
    records.save(records.Format("thread plan", KIND, 1), path, {"objects": split_ones})
    known = sum(1 for w in weights.values() if w)
    why = (f"per object, by past compile times ({known} of {len(weights)} known): "
           f"{len(split_ones)} of {len(weights)} CUDA unit(s) split"
           + (f", longest planned: {max(split_ones, key=lambda o: weights[o] or 0)}"
              if split_ones else ""))
    return Split(max(threads.values(), default=1), len(weights), why, per_object=True)


def uses_split_launcher(build_dir: Path) -> bool:
    """Whether the build dir's CUDA compiles go through host/split_launcher.py."""
    return "split_launcher" in (cache_value(build_dir, "CMAKE_CUDA_COMPILER_LAUNCHER") or "")


def split_environment(split: Split | None) -> dict[str, str]:
    """The variable the presets append to the user's ``NVCC_APPEND_FLAGS`` (see
    caching/compiler_cache.nvcc_environment), when the units are split."""
    if split is None or not split.flag or split.per_object:  # the launcher's, per object
        return {}
    return {NVCC_EXTRA_ENV: split.flag}


def cache_log_environment(plan: BuildPlan) -> dict[str, str]:
    """``CCACHE_STATSLOG`` for this build: ccache appends one record per compile (the source
    and its counters: ``direct_cache_hit``, ``cache_miss``...), which the trace reads to mark
    cache hits (reporting/trace.py). Emptied first: the file holds one build."""
    if plan.settings.cache != "ccache" or plan.dry or plan.dist_plan is not None:
        return {}
    path = plan.build_dir / CACHE_LOG
    try:
        path.write_bytes(b"")
    except OSError:  # no build dir yet: configure makes it, and the marks are only missing
        return {}
    return {"CCACHE_STATSLOG": str(path)}


def select_targets(plan: BuildPlan, *, since: str | None, every: bool, recorder: Recorder
                   ) -> Selection:
    """The targets to build (``.targets``: None all, [] none) and why, said for a fresh build
    dir, a dry run, ``--since``, whenever the set of targets grows, and when the checkout's base
    moved past W; the report always has it."""
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
    before = affected.built_before(build_dir)
    if before is not None:
        affected.remember_built(build_dir, sorted(set(before) | set(targets)))


#: What nvcc says on every compile given the split's ``-t 2`` beside the command's
#: ``--threads=1`` (host/parallelism.py, "Splitting one unit"): vllm-dev's doing, not the code's.
NVCC_THREADS_WARNING = ("nvcc warning : incompatible redefinition for option 'threads', "
                        "the last value of this option was used")


def _without_own_warning(display_line: Callable[[str], None], split: Split | None
                         ) -> Callable[[str], None]:
    """The build's output without the one warning vllm-dev's own ``-t 2`` causes."""
    if split is None or not split.host_threads or split.per_object:
        return display_line

    def on_line(text: str) -> None:
        if text.strip() != NVCC_THREADS_WARNING:
            display_line(text)
    return on_line


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

    sources = [source_of(o) for step in failures for o in step.outputs] or ["a build step"]
    named = ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
    better = CommandFailed(exc.argv, exc.returncode)
    better.args = (f"{exc}: {named} failed",)
    return better
