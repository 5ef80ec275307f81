"""Configure: render the presets into the checkout and configure the build dir (when needed).

Configure runs only when needed: no build dir yet, a value of the rendered configure preset
changed, something the cache remembers changed (interpreter, cmake, torch, nvcc), ``-U NAME`` of
a name in the cache, or the last configure did not finish. Each reason is a
:class:`ReconfigureReason`, computed from the build dir's record before cmake runs; the reasons
decide how CMake's cache is treated and what is said.

Nothing the user built is thrown away unasked:

- A cache variable the preset no longer sets (a define dropped with ``-U``, a template edited)
  is removed with ``cmake -U NAME`` on the existing cache, not a fresh one: the configure re-runs
  and ninja recompiles only what a changed command needs (goal: nothing, for a define no source
  reads). The exception is a name CMake derives other entries from (a compiler, a ``*_DIR`` or
  ``*_ROOT`` path, ``FETCHCONTENT_SOURCE_DIR_*``): those entries would stay behind, so the cache
  is fresh and the line says so first.
- A fresh cache (``cmake --fresh``) where CMake would keep the old answer regardless: a new
  interpreter (``VLLM_PYTHON_EXECUTABLE`` and torch's paths are cached), torch, cmake (it may
  read an old cache differently) or nvcc (CMake keeps the first ``CMAKE_CUDA_COMPILER``). The
  line names the change that needs it and how many built objects the build dir holds, before
  CMake runs.
- A line names only real changes, ``name: before -> after``, compared after normalising paths
  (``/a/./b`` is ``/a/b``); a preset whose text changed but whose values did not is no reason.

What does not change a compile command does not reconfigure: the job count reaches the build as
``cmake --build -j`` (see build.py); the compiler cache, its remote, directory and size, and the
build farm live in the *build* presets' environment, which the fingerprint does not cover (see
presets/render.py), and the compiler launcher every configure preset names is one stable path
(caching/launcher.py). A build dir configured by an older vllm-dev (its presets named the compiler
cache by absolute path and held its variables) reconfigures once, without ``--fresh``: the line
then names the launcher's old and new path, and each object recompiles once, through the cache.

The step takes a resolved :class:`~vllm_dev.planning.plan.BuildPlan` and runs under the build dir's
lock, which the pipeline holds (see pipeline.py).
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_dev.caching.compiler_cache import presets_note
from vllm_dev.caching.launcher import SPELLING, write_launcher
from vllm_dev.checkout.compile_db import link_compile_commands, write_clangd_config
from vllm_dev.errors import VllmDevError
from vllm_dev.planning.plan import BuildPlan
from vllm_dev.presets.render import cache_variable_names, preset_fingerprint
from vllm_dev.presets.user_presets import (
    PresetsWrite,
    check_project_presets,
    plan_user_presets,
    write_user_presets,
)
from vllm_dev.reporting.ninja_log import NINJA_LOG, parse_ninja_log
from vllm_dev.state.build_record import BuildRecord

# Fingerprint keys whose change needs a fresh CMake cache, not just a re-run of configure, and
# the change in words: VLLM_PYTHON_EXECUTABLE and torch's Torch_DIR/TORCH_LIBRARY are cached
# paths, CMake keeps the first CMAKE_CUDA_COMPILER it found, and a new cmake may read an old cache
# differently. The arch list is read from the environment on every configure, so a plain re-run
# picks it up.
FRESH_KEYS = {"python": "a new interpreter", "torch": "a new torch", "cmake": "a new cmake",
              "nvcc": "a new nvcc"}
# Cache variables CMake derives other entries from: dropping one with -U leaves those behind.
_DERIVED_RE = re.compile(r"^(CMAKE_\w+_COMPILER|\w+_DIR|\w+_ROOT|FETCHCONTENT_SOURCE_DIR_\w+)$")
# Written into the record while cmake configures, replaced on success: a configure that failed
# (or was interrupted) is redone by the next prime/build, never taken for a configured build dir.
PENDING_KEY = "configure"
ATTEMPTED_KEY = "preset attempted"
UNSET = "unset"


def derived(name: str) -> bool:
    """Whether CMake derives other cache entries from ``name`` (then -U alone is not enough)."""
    return bool(_DERIVED_RE.match(name))


class ReasonKind(enum.Enum):
    """Why a configured build dir is configured again."""

    UNFINISHED = "the last configure did not finish"
    CHANGED = "an input of the configure changed"  # ``key``: python, cmake, torch, nvcc, arch
    PRESET = "a value of the configure preset changed"  # ``key``: a cache variable, env NAME
    REMOVED = "cache variables a failed configure set are no longer set"  # ``names``
    UNDEFINED = "-U NAME of a name in the cache"  # ``names``
    REQUESTED = "--reconfigure"


@dataclass(frozen=True)
class ReconfigureReason:
    kind: ReasonKind
    key: str = ""  # CHANGED: the fingerprint key; PRESET: the variable
    before: str | None = None
    after: str | None = None
    names: tuple[str, ...] = ()  # REMOVED, UNDEFINED: the cache variables

    @property
    def fresh(self) -> str | None:
        """Why CMake's cache would keep the old value (then ``--fresh``), or None."""
        if self.kind is ReasonKind.CHANGED and self.key in FRESH_KEYS:
            return FRESH_KEYS[self.key]
        dropped = [n for n in self.removed if derived(n)]
        if dropped:
            return (f"{', '.join(dropped)} no longer set, and CMake would keep what it derived "
                    "from it")
        return None

    @property
    def removed(self) -> tuple[str, ...]:
        """Cache variables this reason drops from the cache."""
        if self.kind in (ReasonKind.REMOVED, ReasonKind.UNDEFINED):
            return self.names
        if self.kind is ReasonKind.PRESET and self.after is None and \
                not self.key.startswith("environment "):
            return (self.key,)
        return ()

    def text(self) -> str:
        if self.kind in (ReasonKind.CHANGED, ReasonKind.PRESET):
            return f"{self.key}: {self.before or UNSET} -> {self.after or UNSET}"
        if self.kind is ReasonKind.REMOVED:
            return f"{', '.join(self.names)}: set by the configure that did not finish -> {UNSET}"
        if self.kind is ReasonKind.UNDEFINED:
            return f"-U {' '.join(self.names)}"
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

    @property
    def undefine(self) -> tuple[str, ...]:
        """The names ``cmake -U`` removes from the kept cache (none with a fresh one)."""
        if self.fresh:
            return ()
        return tuple(dict.fromkeys(n for r in self.reasons for n in r.removed))

    def line(self, preset: str, *, built_objects: int | None = None) -> str | None:
        """``reconfiguring <preset>: ...`` when something changed (None: nothing to say; a
        first configure or a plain --reconfigure speaks through cmake's own output). With a
        fresh cache it says why first, and how many built objects may recompile."""
        shown = _grouped([r for r in self.reasons if r.kind is not ReasonKind.REQUESTED])
        if not shown:
            return None
        if self.fresh:
            why = "; ".join(dict.fromkeys(r.fresh for r in self.reasons if r.fresh))
            held = (f"; the build dir holds {built_objects} built object(s), which may "
                    "recompile" if built_objects is not None else "")
            return f"reconfiguring {preset} with a fresh CMake cache ({why}{held}): {shown}"
        kept = (f" (cmake -U {' '.join(self.undefine)}, the cache is kept)"
                if self.undefine else "")
        return f"reconfiguring {preset}: {shown}{kept}{self._upgrade_note()}"

    def _upgrade_note(self) -> str:
        """A build dir an older vllm-dev configured names the compiler cache by its absolute
        path: the one reconfigure after the upgrade says what it costs."""
        if any(r.kind is ReasonKind.PRESET and r.key.endswith("_COMPILER_LAUNCHER")
               and r.after == SPELLING and r.before and r.before != SPELLING
               for r in self.reasons):
            return (" (once, after upgrading vllm-dev: the presets now name one compiler "
                    "launcher for every install and keep the cache's variables in the build "
                    "presets; each object recompiles once, through the compiler cache)")
        return ""


def _grouped(reasons: list[ReconfigureReason]) -> str:
    """Each reason's text, with values that changed the same way named together
    (``CMAKE_C_COMPILER_LAUNCHER, CMAKE_CXX_COMPILER_LAUNCHER: /a/ccache -> ...``)."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    texts: list[tuple[Any, ...]] = []
    for r in reasons:
        group: tuple[Any, ...] = (r.text(),)
        name = ""
        if r.kind in (ReasonKind.CHANGED, ReasonKind.PRESET):
            group = (r.key.startswith("environment "), r.before, r.after)
            name = r.key.removeprefix("environment ")
        if group not in groups:
            groups[group] = []
            texts.append(group)
        if name:
            groups[group].append(name)
    parts = []
    for group in texts:
        if len(group) == 1:
            parts.append(str(group[0]))
        else:
            env, before, after = group
            names = ", ".join(groups[group])
            parts.append(f"{'environment ' if env else ''}{names}: {before or UNSET} -> "
                         f"{after or UNSET}")
    return "; ".join(parts)


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


def normalised(value: str | None) -> str | None:
    """A value as compared: a path (``/a/./b/``, ``${sourceDir}/x/..``) normalised, a tool's
    ``path version`` too; other text stripped."""
    if value is None:
        return None
    text = value.strip()
    head, sep, tail = text.partition(" ")
    if head.startswith(("/", "${sourceDir}")):
        return os.path.normpath(head) + sep + tail
    return text


def changed_inputs(old: dict[str, str], new: dict[str, str]) -> list[ReconfigureReason]:
    """The fingerprint's keys besides the preset whose values really differ."""
    return [ReconfigureReason(ReasonKind.CHANGED, key, old.get(key), value)
            for key, value in new.items()
            if key != "preset" and normalised(old.get(key)) != normalised(value)]


def preset_values(fingerprint_text: str) -> dict[str, str]:
    """The effective values of a :func:`preset_fingerprint` (its inherits chain merged, the
    preset's own winning): each cache variable by name, each environment variable as
    ``environment NAME``, and the other keys that configure reads (generator, binaryDir, ...)."""
    try:
        parts = json.loads(fingerprint_text)
    except ValueError:
        return {}
    merged: dict[str, str] = {}
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key in ("name", "inherits", "hidden", "description", "displayName", "vendor"):
                continue
            if key == "cacheVariables" and isinstance(value, dict):
                for name, v in value.items():
                    merged[name] = _cache_text(v)
            elif key == "environment" and isinstance(value, dict):
                for name, v in value.items():
                    if v is None:
                        merged.pop(f"environment {name}", None)
                    else:
                        merged[f"environment {name}"] = str(v)
            else:
                merged[key] = json.dumps(value, sort_keys=True) if not isinstance(value, str) \
                    else value
    return merged


def _cache_text(value: Any) -> str:
    if isinstance(value, dict):
        kind, text = value.get("type"), value.get("value")
        text = ("ON" if text else "OFF") if isinstance(text, bool) else str(text)
        return f"{text} ({kind})" if kind else text
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    return str(value)


def preset_changes(old: str | None, new: str) -> list[ReconfigureReason]:
    """Every value of the configure preset that really changed (see :func:`normalised`)."""
    before, after = preset_values(old or "[]"), preset_values(new)
    return [ReconfigureReason(ReasonKind.PRESET, key, before.get(key), after.get(key))
            for key in sorted(set(before) | set(after),
                              key=lambda k: (k.startswith("environment "), k))
            if normalised(before.get(key)) != normalised(after.get(key))]


def removed_cache_variables(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Cache variables a configure that did not finish set, which the preset no longer sets
    (those of the last successful configure are preset changes: :func:`preset_changes`)."""
    attempted = cache_variable_names(old.get(ATTEMPTED_KEY, "[]"))
    return sorted(attempted - cache_variable_names(old.get("preset", "[]"))
                  - cache_variable_names(new["preset"]))


def cached_names(build_dir: Path) -> set[str]:
    """The names in ``CMakeCache.txt`` (``NAME:TYPE=VALUE`` lines)."""
    try:
        text = (build_dir / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return set()
    return {line.split(":", 1)[0] for line in text.splitlines()
            if line and not line.startswith(("#", "//")) and ":" in line}


def decide(old: dict[str, str], new: dict[str, str], *, configured_before: bool,
           requested: bool, undefine: Iterable[str] = ()) -> ConfigureDecision:
    """Compare the build dir's record (``old``) with the plan's fingerprint (``new``);
    ``undefine`` are the ``-U`` names found in the cache and not set by the preset."""
    if not configured_before:
        return ConfigureDecision(needed=True, first=True)
    reasons: list[ReconfigureReason] = []
    if PENDING_KEY in old:
        reasons.append(ReconfigureReason(ReasonKind.UNFINISHED))
    reasons += changed_inputs(old, new)
    # The arch fingerprint is the preset's TORCH_CUDA_ARCH_LIST: one change, said once.
    said_arch = any(r.key == "arch" for r in reasons)
    reasons += [r for r in preset_changes(old.get("preset"), new["preset"])
                if not (said_arch and r.key == "environment TORCH_CUDA_ARCH_LIST")]
    if removed := removed_cache_variables(old, new):
        reasons.append(ReconfigureReason(ReasonKind.REMOVED, names=tuple(removed)))
    dropped = {n for r in reasons for n in r.removed}
    if extra := tuple(n for n in undefine if n not in dropped):
        reasons.append(ReconfigureReason(ReasonKind.UNDEFINED, names=extra))
    if requested:
        reasons.append(ReconfigureReason(ReasonKind.REQUESTED))
    # Names a failed configure set never start a configure alone (one is redone anyway).
    needed = any(r.kind is not ReasonKind.REMOVED for r in reasons)
    return ConfigureDecision(needed=needed, first=False, reasons=tuple(reasons))


def built_objects(build_dir: Path) -> int:
    """How many object files ninja built in ``build_dir`` that are still there (its log's
    object outputs): what a fresh cache may make recompile."""
    try:
        text = (build_dir / NINJA_LOG).read_text(errors="replace")
    except OSError:
        return 0
    outputs = {e.output for e in parse_ninja_log(text) if e.is_object}
    return sum(1 for o in outputs if (build_dir / o).is_file())


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
    on_configure: Callable[[], None] | None = None, undefine: Iterable[str] = (),
) -> PrimeResult:
    """Write the presets and configure when :func:`decide` says so (the caller holds the build
    dir's lock). ``on_configure`` is called right before cmake configures (the build's report
    counts a configure that then fails as a configure). ``undefine``: ``-U`` names, removed from
    the cache when it holds them."""
    if not plan.dry:
        write_launcher(plan.checkout.state_dir)
    written = write_user_presets(plan.checkout.user_presets, plan.document, merge=merge,
                                 force=force, dry=plan.dry)
    if written.backup:
        plan.say(f"kept a backup of your presets file: {written.backup}")
    if written.changed:
        verb = "would write" if plan.dry else ("merged vllm-dev's presets into" if written.merged
                                               else "wrote")
        plan.say(f"{verb} {written.path}")

        if note := presets_note(plan.settings):
            plan.say(note)
    build_dir = plan.build_dir
    if build_dir.exists() and not build_dir.is_dir():
        raise VllmDevError(f"build dir {build_dir} exists and is not a directory: remove it")
    record = BuildRecord.load(build_dir)
    new = fingerprint(plan)
    old = record.fingerprint if record else {}
    configured_before = (build_dir / "CMakeCache.txt").is_file() and bool(old)
    asked = [n for n in undefine if n not in cache_variable_names(new["preset"])]
    in_cache = cached_names(build_dir) if asked and configured_before else set()
    decision = decide(old, new, requested=reconfigure, configured_before=configured_before,
                      undefine=[n for n in asked if n in in_cache])
    if not decision.needed:
        if not plan.dry:
            if record is not None and old and old != new and PENDING_KEY not in old:
                record.fingerprint = new  # the same values, spelled differently: keep it current
                record.save()
            _link(plan)
        return PrimeResult(written, configured=False)
    if line := decision.line(plan.template.name, built_objects=built_objects(build_dir)
                             if decision.fresh else None):
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
    for name in decision.undefine:
        argv += ["-U", name]
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
