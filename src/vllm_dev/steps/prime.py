"""Configure: render the presets into the checkout and configure the build dir (when needed).

Configure runs only when needed: no build dir yet, the rendered preset changed, something the
cache remembers changed (interpreter, cmake), or the last configure did not finish. Each reason is
a :class:`ReconfigureReason`, computed from the build dir's record before cmake runs; the reasons
decide whether CMake gets a fresh cache (``cmake --fresh``) and what is said. Changes CMake would
keep in its cache regardless (``VLLM_PYTHON_EXECUTABLE`` is cached, and so is a cache variable a
preset no longer sets) need a fresh cache. The job count is not part of it: it reaches the build
as ``cmake --build -j`` (see build.py), so it never reconfigures.

The step takes a resolved :class:`~vllm_dev.flow.plan.BuildPlan` and runs under the build dir's
lock, which the pipeline holds (see pipeline.py).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.checkout.compile_db import link_compile_commands, write_clangd_config
from vllm_dev.checkout.state import BuildRecord
from vllm_dev.errors import VllmDevError
from vllm_dev.flow.plan import BuildPlan
from vllm_dev.presets.render import cache_variable_names, preset_fingerprint
from vllm_dev.presets.user_presets import (
    PresetsWrite,
    check_project_presets,
    plan_user_presets,
    write_user_presets,
)

# Fingerprint keys whose change needs a fresh CMake cache, not just a re-run of configure:
# VLLM_PYTHON_EXECUTABLE and torch's Torch_DIR/TORCH_LIBRARY are cached paths, CMake keeps the
# first CMAKE_CUDA_COMPILER it found, and a new cmake may read an old cache differently. The arch
# list is read from the environment on every configure, so a plain re-run picks it up.
FRESH_KEYS = ("python", "torch", "cmake", "nvcc")
# Written into the record while cmake configures, replaced on success: a configure that failed
# (or was interrupted) is redone by the next prime/build, never taken for a configured build dir.
PENDING_KEY = "configure"
ATTEMPTED_KEY = "preset attempted"


class ReasonKind(enum.Enum):
    """Why a configured build dir is configured again."""

    UNFINISHED = "the last configure did not finish"
    CHANGED = "an input of the configure changed"  # ``key`` names it
    REMOVED = "cache variables are no longer set"  # ``names`` lists them
    REQUESTED = "--reconfigure"


@dataclass(frozen=True)
class ReconfigureReason:
    kind: ReasonKind
    key: str = ""  # CHANGED: the fingerprint key (preset, python, cmake, torch, nvcc, arch)
    before: str | None = None
    after: str | None = None
    names: tuple[str, ...] = ()  # REMOVED: the cache variables

    @property
    def fresh(self) -> bool:
        """Whether CMake's cache would keep the old value: then configure with ``--fresh``."""
        return self.kind is ReasonKind.REMOVED or (
            self.kind is ReasonKind.CHANGED and self.key in FRESH_KEYS)

    def text(self) -> str:
        if self.kind is ReasonKind.CHANGED:
            if self.key == "preset" or self.before is None:
                return f"{self.key} changed"
            return f"{self.key} changed ({self.before} -> {self.after})"
        if self.kind is ReasonKind.REMOVED:
            return f"{', '.join(self.names)} no longer set"
        return self.kind.value


@dataclass(frozen=True)
class ConfigureDecision:
    """Whether configure runs, and why: computed before anything runs (see :func:`decide`)."""

    needed: bool
    first: bool  # the build dir was never configured (no reasons: nothing to compare with)
    reasons: tuple[ReconfigureReason, ...] = ()

    @property
    def fresh(self) -> bool:
        return any(r.fresh for r in self.reasons)

    def line(self, preset: str) -> str | None:
        """``reconfiguring <preset>: ...`` when something changed (None: nothing to say; a
        first configure or a plain --reconfigure speaks through cmake's own output)."""
        shown = [r.text() for r in self.reasons
                 if r.kind in (ReasonKind.UNFINISHED, ReasonKind.CHANGED)]
        if not shown:
            return None
        removed = [r.text() for r in self.reasons if r.kind is ReasonKind.REMOVED]
        why = f"; {'; '.join(removed)}" if removed else ""
        return (f"reconfiguring {preset}: {'; '.join(shown)}"
                + (f" (fresh CMake cache{why})" if self.fresh else ""))


@dataclass(frozen=True)
class PrimeResult:
    presets: PresetsWrite
    configured: bool
    reasons: tuple[ReconfigureReason, ...] = field(default_factory=tuple)


def fingerprint(plan: BuildPlan) -> dict[str, str]:
    """What configure depends on, as recorded in the build dir after a configure."""
    return {
        "preset": preset_fingerprint(plan.document, plan.template.name),
        "python": str(plan.interpreter.path),
        "cmake": f"{plan.cmake.path} {plan.cmake.version_text}",
        "torch": plan.facts.torch or "none",
        "nvcc": f"{plan.nvcc.path} {plan.nvcc.version_text}" if plan.nvcc else "none",
        "arch": plan.arch.fingerprint,
    }


def changed_inputs(old: dict[str, str], new: dict[str, str]) -> list[ReconfigureReason]:
    return [ReconfigureReason(ReasonKind.CHANGED, key, old.get(key), value)
            for key, value in new.items() if old.get(key) != value]


def removed_cache_variables(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Cache variables an earlier (or attempted) configure set that the preset no longer sets:
    CMake would keep them in CMakeCache.txt, so they need a fresh cache."""
    before = cache_variable_names(old.get("preset", "[]"))
    before |= cache_variable_names(old.get(ATTEMPTED_KEY, "[]"))
    return sorted(before - cache_variable_names(new["preset"]))


def decide(old: dict[str, str], new: dict[str, str], *, configured_before: bool,
           requested: bool) -> ConfigureDecision:
    """Compare the build dir's record (``old``) with the plan's fingerprint (``new``)."""
    if not configured_before:
        return ConfigureDecision(needed=True, first=True)
    reasons: list[ReconfigureReason] = []
    if PENDING_KEY in old:
        reasons.append(ReconfigureReason(ReasonKind.UNFINISHED))
    reasons += changed_inputs(old, new)
    if removed := removed_cache_variables(old, new):
        reasons.append(ReconfigureReason(ReasonKind.REMOVED, names=tuple(removed)))
    if requested:
        reasons.append(ReconfigureReason(ReasonKind.REQUESTED))
    # Removed variables alone never start a configure (they come with a changed preset); they
    # only make it fresh.
    needed = any(r.kind is not ReasonKind.REMOVED for r in reasons)
    return ConfigureDecision(needed=needed, first=False, reasons=tuple(reasons))


def is_configured(build_dir: Path) -> bool:
    """Whether the last configure of ``build_dir`` finished (its targets can be trusted)."""
    record = BuildRecord.load(build_dir)
    return bool(record and record.fingerprint and PENDING_KEY not in record.fingerprint
                and (build_dir / "CMakeCache.txt").is_file())


def check_presets_file(plan: BuildPlan, *, merge: bool, force: bool) -> None:
    """Before anything is written: the project's own presets and the user's presets file accept
    vllm-dev's (``--merge``/``--force`` as given)."""
    check_project_presets(plan.checkout.root, plan.document)
    plan_user_presets(plan.checkout.user_presets, plan.document, merge=merge, force=force)


def configure(
    plan: BuildPlan, *, merge: bool = False, force: bool = False, reconfigure: bool = False,
    on_configure: Callable[[], None] | None = None,
) -> PrimeResult:
    """Write the presets and configure when :func:`decide` says so (the caller holds the build
    dir's lock). ``on_configure`` is called right before cmake configures (the build's report
    counts a configure that then fails as a configure)."""
    written = write_user_presets(plan.checkout.user_presets, plan.document, merge=merge,
                                 force=force, dry=plan.dry)
    if written.backup:
        plan.say(f"kept a backup of your presets file: {written.backup}")
    if written.changed:
        verb = "would write" if plan.dry else ("merged vllm-dev's presets into" if written.merged
                                               else "wrote")
        plan.say(f"{verb} {written.path}")
        from vllm_dev.caching.compiler_cache import presets_note

        if note := presets_note(plan.settings):
            plan.say(note)
    build_dir = plan.build_dir
    if build_dir.exists() and not build_dir.is_dir():
        raise VllmDevError(f"build dir {build_dir} exists and is not a directory: remove it")
    record = BuildRecord.load(build_dir)
    new = fingerprint(plan)
    old = record.fingerprint if record else {}
    decision = decide(old, new, requested=reconfigure,
                      configured_before=(build_dir / "CMakeCache.txt").is_file() and bool(old))
    if not decision.needed:
        if not plan.dry:
            _link(plan)
        return PrimeResult(written, configured=False)
    if line := decision.line(plan.template.name):
        plan.say(line)
    plan.say(plan.parallelism.line())
    if plan.device == "cuda":
        plan.say(plan.arch.line())
    if not plan.dry:
        build_dir.mkdir(parents=True, exist_ok=True)
        record = record or BuildRecord(build_dir, plan.template.name, str(plan.checkout.root))
        # Marks the dir as ours before configure (so `clean` can remove a failure), and the
        # configure as unfinished until cmake succeeds.
        record.fingerprint = {**old, PENDING_KEY: "unfinished", ATTEMPTED_KEY: new["preset"]}
        record.save()
    argv = [str(plan.cmake.path), "--preset", plan.template.name]
    if decision.fresh:
        argv.append("--fresh")
    if on_configure:
        on_configure()
    plan.runner.run(argv, cwd=plan.checkout.root)
    if not plan.dry and record is not None:
        record.fingerprint = new
        record.save()
        _link(plan, configured=True)
    return PrimeResult(written, configured=True, reasons=decision.reasons)


def _link(plan: BuildPlan, *, configured: bool = False) -> None:
    """compile_commands.json at the checkout root follows the preset in use (see compile_db)."""
    try:
        note = link_compile_commands(plan.checkout.root, plan.build_dir,
                                     announce_user_file=configured)
        if plan.device == "cuda" and (written := write_clangd_config(plan.checkout.root)):
            plan.say(written)
    except (OSError, VllmDevError) as exc:  # a read-only checkout root: the build is unaffected
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        note = f"cannot set up compile_commands.json for clangd: {reason}"
    if note:
        plan.say(note)
