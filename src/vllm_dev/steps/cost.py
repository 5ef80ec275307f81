"""A big build says what it will cost before it starts, and asks ``[y/N]`` where someone can answer.

A daily ``vllm-dev build`` whose targets could not be narrowed (W unknown, the checkout's base
moved past W, an input that decides the whole build changed) once started 504 compiles, about 47
minutes on a 2-core machine, announced by one line. Now, when no ``--target`` and no ``--all``
were given and the estimated compile time is over a threshold, the build first prints one short
block: the objects and targets it would build, the wall time as a range (reporting/estimate.py:
ninja's own dry run, this checkout's timing history, else a per-kind model; at the job count the
build will use, counting expected compiler-cache hits and a build farm's capacity), why it could
not be narrowed, and the command that narrows it.

The API (the pipeline uses it; so can any caller that is about to compile):

* :func:`estimate_cost` ``(plan, targets, *, reasons=(), narrow="") -> CostBlock``: ``targets``
  None means every target; ``reasons`` says why the selection could not be narrowed (one line
  each), ``narrow`` the command that narrows it. :func:`from_selection` takes both from an
  :class:`~vllm_dev.checkout.affected.Selection`.
* :class:`CostBlock`: ``objects``, ``steps``, ``targets``, ``estimate`` (an
  :class:`~vllm_dev.reporting.estimate.Estimate`: ``seconds``, ``low``, ``high``, ``hits``...),
  ``reasons``, ``narrow``; :meth:`CostBlock.lines` renders it, :meth:`CostBlock.over` compares it
  with a threshold in minutes.
* :func:`threshold_minutes` ``(settings)``: the setting ``confirm_minutes`` (default
  :data:`DEFAULT_MINUTES`; 0 keeps that threshold for the block but never asks).
* :func:`should_ask` ``(*, confirm_minutes, yes, allowed, environ, stdin, stdout) -> bool``: ask
  only when both stdin and stdout are terminals, ``CI`` is not set, ``--yes`` was not given,
  ``confirm_minutes`` is not 0, and the caller allows it (``allowed=False``: a Nox session,
  ``vllm-dev test``, ``--watch``; the pipeline's ``Request.ask``).
* :func:`confirm_cost` ``(plan, targets, selection, *, ask, yes)``: the pipeline's hook: the
  block when over the threshold, then the question when :func:`should_ask`; a "no" raises
  :class:`Declined`. Otherwise the block is printed and the build goes on (CI and scripts keep
  working).
* :func:`remember_timings`: after a build, its steps go into the history the next estimate reads,
  with the load the build met at its start (``load``: :func:`build_load`, read by the caller
  before the build's compiles; the estimate scales history times by the load now against then).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from vllm_dev.checkout.build_graph import ninja_deps, ninja_of
from vllm_dev.errors import VllmDevError
from vllm_dev.host.machine import probe_machine
from vllm_dev.installs.components import components
from vllm_dev.planning.plan import BuildPlan
from vllm_dev.reporting.estimate import Estimate, estimate, planned_steps
from vllm_dev.reporting.history import History, Load, history_path, machine_load
from vllm_dev.reporting.ninja_log import entries_since
from vllm_dev.reporting.recorder import phase

if TYPE_CHECKING:
    from vllm_dev.checkout.affected import Selection
    from vllm_dev.reporting.build_report import BuildReport
    from vllm_dev.reporting.history import History

DEFAULT_MINUTES = 5.0


class Declined(VllmDevError):
    """The user answered no: nothing was compiled (and no build report says "FAILED")."""

    quiet = True


@dataclass(frozen=True)
class CostBlock:
    """What a build will compile and cost, why, and how to make it smaller (see the module)."""

    objects: int
    steps: int
    targets: list[str]  # what it builds (every target of the build dir when ``every``)
    every: bool
    estimate: Estimate
    reasons: list[str] = field(default_factory=list)
    narrow: str = ""

    def over(self, minutes: float) -> bool:
        """Whether the estimated compile time is over ``minutes``."""
        return self.estimate.seconds > minutes * 60

    def lines(self) -> list[str]:
        est = self.estimate
        names = ", ".join(self.targets[:6]) + (f" and {len(self.targets) - 6} more"
                                                if len(self.targets) > 6 else "")
        what = (f"every target ({len(self.targets)}: {names})" if self.every
                else f"{len(self.targets)} target(s) ({names})")
        out = [f"this build compiles {self.objects} object(s) ({self.steps} ninja step(s)) for "
               f"{what}: {est.range_text()} at {est.slots} job(s) ({est.basis()})"]
        out += [f"  why: {reason}" for reason in self.reasons]
        out.append(f"  to narrow it: {self.narrow or _NARROW_TARGET}")
        return out


_NARROW_TARGET = "`vllm-dev build --target T` builds one extension"


def threshold_minutes(settings: Any) -> float:
    """Above this estimate the block is shown (and, where one can answer, the question asked)."""
    minutes = getattr(settings, "confirm_minutes", None)
    return float(minutes) if minutes else DEFAULT_MINUTES


def should_ask(*, confirm_minutes: float | None, yes: bool, allowed: bool,
               environ: Mapping[str, str], stdin: TextIO | None = None,
               stdout: TextIO | None = None) -> bool:
    """Whether to ask ``[y/N]`` before a big build (see the module docstring)."""
    if yes or not allowed or confirm_minutes == 0 or environ.get("CI"):
        return False
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    try:
        return bool(stdin and stdout and stdin.isatty() and stdout.isatty())
    except (ValueError, OSError):  # closed or odd streams: nobody to ask
        return False


def history_for(plan: BuildPlan) -> History:
    return History.load(history_path(plan.checkout.state_dir, preset=plan.preset,
                                     device=plan.device, arch=plan.arch.env_value))


def cache_identity(plan: BuildPlan) -> str:
    """The compiler cache a build's objects go through (kind and directory), "" for none or a
    cache that holds nothing (no hit to expect there)."""
    kind = plan.cache.kind
    if kind == "none":
        return ""
    home = Path(plan.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if kind == "ccache":
        directory = plan.cache.directory or plan.environ.get("CCACHE_DIR") or str(home / "ccache")
    else:
        directory = plan.cache.directory or plan.environ.get("SCCACHE_DIR") or str(
            home / "sccache")
    path = Path(directory).expanduser()
    try:
        if not any(path.iterdir()):
            return ""
    except OSError:
        return ""
    return f"{kind}:{os.path.realpath(path)}"


def build_load(plan: BuildPlan) -> Load | None:
    """The load a build meets, read before its compiles start (None: unknown, or a farm build:
    its compiles do not run on this machine's CPUs)."""
    if plan.dry or (plan.dist_plan is not None and plan.dist_plan.status.ok):
        return None
    return machine_load()


def estimate_cost(plan: BuildPlan, targets: list[str] | None, *, reasons: Sequence[str] = (),
                  narrow: str = "", correct_load: bool = True) -> CostBlock:
    """What compiling ``targets`` (None: every target) in the plan's build dir will cost.
    ``correct_load``: scale the times by the machine's load now against then (False: as timed;
    bench/estimate_vs_actual.py shows both)."""
    every = targets is None
    names = components(plan.build_dir) if every else list(targets or [])
    # what the build runs: every target is ninja's `all` (steps/build.py)
    steps = planned_steps(ninja_of(plan.build_dir), plan.build_dir,
                          ["all"] if every else names)
    if not steps:  # up to date (a no-op build): nothing to time, no history to read
        return CostBlock(objects=0, steps=0, targets=names, every=every,
                         estimate=Estimate(0, 0, 0, 0, plan.parallelism.jobs, 0.0, 0.0, 0.0),
                         reasons=list(reasons), narrow=narrow)
    farm = plan.dist_plan is not None and plan.dist_plan.status.ok
    arches = plan.arch.archs
    history = history_for(plan)
    history.fill_from_log(plan.build_dir)
    found = estimate(steps, history, device=plan.device,
                     arch_count=len(arches) if arches else 1, jobs=plan.parallelism.jobs,
                     cpus=probe_machine().cpus.count, farm=farm, cache=cache_identity(plan),
                     now=machine_load() if correct_load else None)
    return CostBlock(objects=found.objects, steps=found.steps, targets=names, every=every,
                     estimate=found, reasons=list(reasons), narrow=narrow)


def from_selection(plan: BuildPlan, selection: Selection) -> CostBlock:
    """:func:`estimate_cost` with the reasons and the narrowing command of a selection."""
    reasons = [selection.why] if selection.why else [selection.reason]
    if selection.base_move is not None:
        reasons.append(selection.base_move.line())
    return estimate_cost(plan, selection.targets, reasons=reasons, narrow=selection.narrow)


def _answer(stdin: TextIO) -> bool:
    print("vllm-dev: build it? [y/N] ", end="", file=sys.stderr, flush=True)
    with phase("waiting for an answer"):  # the report's time: the user's, not the build's
        try:
            reply = stdin.readline()
        except (OSError, ValueError):
            return False
    return reply.strip().lower() in ("y", "yes")


def confirm_cost(plan: BuildPlan, selection: Selection, *, ask: bool = True,
                 yes: bool = False, stdin: TextIO | None = None,
                 stdout: TextIO | None = None) -> CostBlock | None:
    """The pipeline's hook before a compile whose targets vllm-dev chose: the block when the
    estimate is over the threshold, then the question where one can answer. Returns the block
    (None: under the threshold, or the build dir cannot tell yet)."""
    if not (plan.build_dir / "build.ninja").is_file():
        return None  # a dry run before any configure: ninja has no graph to ask
    block = from_selection(plan, selection)
    minutes = threshold_minutes(plan.settings)
    if not block.over(minutes):
        return None
    for line in block.lines():
        plan.say(line)
    if plan.dry:
        return block
    confirm = getattr(plan.settings, "confirm_minutes", None)
    asked = should_ask(confirm_minutes=confirm, yes=yes, allowed=ask, environ=plan.environ,
                       stdin=stdin, stdout=stdout)
    if asked and not _answer(stdin or sys.stdin):
        raise Declined(f"nothing built (answered no); to narrow it: "
                           f"{block.narrow or _NARROW_TARGET}")
    return block


def remember_timings(plan: BuildPlan, offset: int | None, report: BuildReport | None, *,
                     wall: float | None = None, load: Load | None = None) -> None:
    """Add the steps this build ran (``.ninja_log`` after ``offset``) to the timing history;
    ``report`` gives the compiler-cache hits, ``wall`` the compile phase's seconds, ``load``
    the load the build met at its start (:func:`build_load`; None: unknown). Never fails a
    build: a history that cannot be written is only a worse next estimate."""
    if offset is None or plan.dry:
        return

    entries = entries_since(plan.build_dir, offset)
    if not entries:
        return

    try:
        history = history_for(plan)
        cache = cache_identity(plan) if plan.cache.kind != "none" else ""
        hits = None
        if not cache:
            hits = 0
        elif report is not None and report.cache is not None:
            hits = report.cache.hits
        objects = [e.output for e in entries if e.is_object]
        deps = ninja_deps(plan.build_dir, objects) if objects else {}
        history.record(entries, hits=hits, cache=cache, deps=deps,
                       build_dir=plan.build_dir, wall=wall, jobs=plan.parallelism.jobs,
                       load=load)
        history.save()
    except (OSError, VllmDevError) as exc:
        plan.say(f"timing history not updated: {exc}")
