"""``prime``: render the presets into the checkout and configure the preset's build dir.

Configure runs only when needed: no build dir yet, the rendered preset changed, or something the
cache remembers changed (interpreter, cmake). Changes CMake would keep in its cache regardless
(``VLLM_PYTHON_EXECUTABLE`` is cached) get a fresh cache (``cmake --fresh``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm_dev.errors import VllmDevError
from vllm_dev.locking import workspace_lock
from vllm_dev.presets import preset_fingerprint
from vllm_dev.state import BuildRecord
from vllm_dev.user_presets import PresetsWrite, write_user_presets
from vllm_dev.workspace import Workspace

# Fingerprint keys whose change needs a fresh CMake cache, not just a re-run of configure:
# VLLM_PYTHON_EXECUTABLE and torch's Torch_DIR/TORCH_LIBRARY are cached paths, CMake keeps the
# first CMAKE_CUDA_COMPILER it found, and a new cmake may read an old cache differently. The arch
# list is read from the environment on every configure, so a plain re-run picks it up.
FRESH_KEYS = ("python", "torch", "cmake", "nvcc")


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


def run_prime(
    ws: Workspace, *, merge: bool = False, force: bool = False, reconfigure: bool = False
) -> PrimeResult:
    """Prime while holding the build dir's lock (a concurrent build waits; see locking.py)."""
    ws.preflight(merge=merge, force=force)
    with workspace_lock(ws):
        return _run_prime_locked(ws, merge=merge, force=force, reconfigure=reconfigure)


def _run_prime_locked(
    ws: Workspace, *, merge: bool, force: bool, reconfigure: bool
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
        from vllm_dev.compiler_cache import presets_note

        if note := presets_note(ws.settings):
            ws.say(note)
    build_dir = ws.build_dir
    if build_dir.exists() and not build_dir.is_dir():
        raise VllmDevError(f"build dir {build_dir} exists and is not a directory: remove it")
    record = BuildRecord.load(build_dir)
    new = fingerprint(ws)
    old = record.fingerprint if record else {}
    configured_before = (build_dir / "CMakeCache.txt").is_file() and bool(old)
    changes = describe_changes(old, new) if configured_before else []
    if configured_before and not changes and not reconfigure:
        return PrimeResult(written, configured=False)
    fresh = configured_before and any(
        c.startswith(k + " ") for c in changes for k in FRESH_KEYS)
    if changes:
        ws.say(f"reconfiguring {ws.template.name}: {'; '.join(changes)}"
               + (" (fresh CMake cache)" if fresh else ""))
    ws.say(ws.parallelism.line())
    if ws.device == "cuda":
        ws.say(ws.arch.line())
    if not ws.dry:
        build_dir.mkdir(parents=True, exist_ok=True)
        record = record or BuildRecord(build_dir, ws.template.name, str(ws.checkout.root))
        record.save()  # marks the dir as ours before configure, so `clean` can remove a failure
    argv = [str(cmake.path), "--preset", ws.template.name]
    if fresh:
        argv.append("--fresh")
    ws.runner.run(argv, cwd=ws.checkout.root)
    if not ws.dry and record is not None:
        record.fingerprint = new
        record.save()
    return PrimeResult(written, configured=True, changes=changes)
