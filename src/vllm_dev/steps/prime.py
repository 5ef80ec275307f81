"""``prime``: render the presets into the checkout and configure the preset's build dir.

Configure runs only when needed: no build dir yet, the rendered preset changed, something the
cache remembers changed (interpreter, cmake), or the last configure did not finish. Changes CMake
would keep in its cache regardless (``VLLM_PYTHON_EXECUTABLE`` is cached, and so is a cache
variable a preset no longer sets) get a fresh cache (``cmake --fresh``). The job count is not part
of it: it reaches the build as ``cmake --build -j`` (see build.py), so it never reconfigures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.checkout.compile_db import link_compile_commands, write_clangd_config
from vllm_dev.checkout.state import BuildRecord
from vllm_dev.errors import VllmDevError
from vllm_dev.flow.workspace import Workspace
from vllm_dev.presets.render import cache_variable_names, preset_fingerprint
from vllm_dev.presets.user_presets import PresetsWrite, write_user_presets
from vllm_dev.process.locking import workspace_lock

# Fingerprint keys whose change needs a fresh CMake cache, not just a re-run of configure:
# VLLM_PYTHON_EXECUTABLE and torch's Torch_DIR/TORCH_LIBRARY are cached paths, CMake keeps the
# first CMAKE_CUDA_COMPILER it found, and a new cmake may read an old cache differently. The arch
# list is read from the environment on every configure, so a plain re-run picks it up.
FRESH_KEYS = ("python", "torch", "cmake", "nvcc")
# Written into the record while cmake configures, replaced on success: a configure that failed
# (or was interrupted) is redone by the next prime/build, never taken for a configured build dir.
PENDING_KEY = "configure"
ATTEMPTED_KEY = "preset attempted"


@dataclass(frozen=True)
class PrimeResult:
    presets: PresetsWrite
    configured: bool
    changes: list[str] = field(default_factory=list)


def fingerprint(ws: Workspace) -> dict[str, str]:
    return {
        "preset": preset_fingerprint(ws.document, ws.template.name),
        "python": str(ws.interpreter.path),
        "cmake": f"{ws.cmake.path} {ws.cmake.version_text}",
        "torch": ws.facts.torch or "none",
        "nvcc": f"{ws.nvcc.path} {ws.nvcc.version_text}" if ws.nvcc else "none",
        "arch": ws.arch.fingerprint,
    }


def describe_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    changes = []
    for key, value in new.items():
        before = old.get(key)
        if before != value:
            if key == "preset" or before is None:
                changes.append(f"{key} changed")
            else:
                changes.append(f"{key} changed ({before} -> {value})")
    return changes


def is_configured(build_dir: Path) -> bool:
    """Whether the last configure of ``build_dir`` finished (its targets can be trusted)."""
    record = BuildRecord.load(build_dir)
    return bool(record and record.fingerprint and PENDING_KEY not in record.fingerprint
                and (build_dir / "CMakeCache.txt").is_file())


def removed_cache_variables(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Cache variables an earlier (or attempted) configure set that the preset no longer sets:
    CMake would keep them in CMakeCache.txt, so they need a fresh cache."""
    before = cache_variable_names(old.get("preset", "[]"))
    before |= cache_variable_names(old.get(ATTEMPTED_KEY, "[]"))
    return sorted(before - cache_variable_names(new["preset"]))


def run_prime(
    ws: Workspace, *, merge: bool = False, force: bool = False, reconfigure: bool = False,
    on_configure: Callable[[], None] | None = None,
) -> PrimeResult:
    """Prime while holding the build dir's lock (a concurrent build waits; see locking.py).

    ``on_configure`` is called right before cmake configures (the build's report counts a
    configure that then fails as a configure)."""
    ws.preflight(merge=merge, force=force)
    with workspace_lock(ws):
        return _run_prime_locked(ws, merge=merge, force=force, reconfigure=reconfigure,
                                 on_configure=on_configure)


def _run_prime_locked(
    ws: Workspace, *, merge: bool, force: bool, reconfigure: bool,
    on_configure: Callable[[], None] | None = None,
) -> PrimeResult:
    cmake = ws.cmake
    written = write_user_presets(ws.checkout.user_presets, ws.document, merge=merge, force=force,
                                 dry=ws.dry)
    if written.backup:
        ws.say(f"kept a backup of your presets file: {written.backup}")
    if written.changed:
        verb = "would write" if ws.dry else ("merged vllm-dev's presets into" if written.merged
                                             else "wrote")
        ws.say(f"{verb} {written.path}")
        from vllm_dev.caching.compiler_cache import presets_note

        if note := presets_note(ws.settings):
            ws.say(note)
    build_dir = ws.build_dir
    if build_dir.exists() and not build_dir.is_dir():
        raise VllmDevError(f"build dir {build_dir} exists and is not a directory: remove it")
    record = BuildRecord.load(build_dir)
    new = fingerprint(ws)
    old = record.fingerprint if record else {}
    unfinished = PENDING_KEY in old
    configured_before = (build_dir / "CMakeCache.txt").is_file() and bool(old)
    changes = describe_changes(old, new) if configured_before else []
    if unfinished and configured_before:
        changes.insert(0, "the last configure did not finish")
    if configured_before and not changes and not reconfigure:
        if not ws.dry:
            _link(ws)
        return PrimeResult(written, configured=False)
    removed = removed_cache_variables(old, new) if configured_before else []
    fresh = configured_before and (bool(removed) or any(
        c.startswith(k + " ") for c in changes for k in FRESH_KEYS))
    if changes:
        why = f"; {', '.join(removed)} no longer set" if removed else ""
        ws.say(f"reconfiguring {ws.template.name}: {'; '.join(changes)}"
               + (f" (fresh CMake cache{why})" if fresh else ""))
    ws.say(ws.parallelism.line())
    if ws.device == "cuda":
        ws.say(ws.arch.line())
    if not ws.dry:
        build_dir.mkdir(parents=True, exist_ok=True)
        record = record or BuildRecord(build_dir, ws.template.name, str(ws.checkout.root))
        # Marks the dir as ours before configure (so `clean` can remove a failure), and the
        # configure as unfinished until cmake succeeds.
        record.fingerprint = {**old, PENDING_KEY: "unfinished", ATTEMPTED_KEY: new["preset"]}
        record.save()
    argv = [str(cmake.path), "--preset", ws.template.name]
    if fresh:
        argv.append("--fresh")
    if on_configure:
        on_configure()
    ws.runner.run(argv, cwd=ws.checkout.root)
    if not ws.dry and record is not None:
        record.fingerprint = new
        record.save()
        _link(ws, configured=True)
    return PrimeResult(written, configured=True, changes=changes)


def _link(ws: Workspace, *, configured: bool = False) -> None:
    """compile_commands.json at the checkout root follows the preset in use (see compile_db)."""
    try:
        note = link_compile_commands(ws.checkout.root, ws.build_dir,
                                     announce_user_file=configured)
        if ws.device == "cuda" and (written := write_clangd_config(ws.checkout.root)):
            ws.say(written)
    except (OSError, VllmDevError) as exc:  # a read-only checkout root: the build is unaffected
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        note = f"cannot set up compile_commands.json for clangd: {reason}"
    if note:
        ws.say(note)
