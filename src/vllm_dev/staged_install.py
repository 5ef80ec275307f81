"""Installing into ``vllm/`` so that an interruption never leaves a broken extension behind.

CMake's own install copies each file over its destination in place (and then rewrites its RPATH
in place). Killed halfway, it leaves a truncated or half-patched ``_C.so`` in ``vllm/``, and the
next ``import vllm`` loads it (a crash, or worse, a silently old/new mix of code).

Two ways out were possible: detect and repair on the next build, or never write in place. We stage:
``cmake --install <build> --prefix <build>/vllm-dev-stage`` writes the complete files (RPATH edits
included) inside the build dir, and only then each file is moved into the checkout with
``rename(2)``, which is atomic: an import sees the old ``.so`` or the new one, never a partial one.
Repair alone would leave a window (between the interrupt and the next build) in which an import
picks up the broken file, and would require the next build to happen at all; staging has no window.
What an interruption can still leave is a *set* of extensions from two builds (``_C`` new,
``_fast_C`` old), each whole; the next install completes the set, and
:func:`vllm_dev.install.check_installed` compares every installed file with its build output.

The manifest cmake writes lists the staged paths; it is rewritten (atomically) with the final
paths, so ``check_installed`` and ``clean --installed`` keep reading it as before. The stage is
emptied before every install, so cmake never skips a file there as "up to date".
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from vllm_dev.disk import explain_failure
from vllm_dev.errors import CommandFailed, VllmDevError
from vllm_dev.files import atomic_write_bytes, copy_then_rename
from vllm_dev.install import manifest_paths
from vllm_dev.workspace import Workspace

STAGE_NAME = "vllm-dev-stage"


def staged_install(ws: Workspace, build_dir: Path, components: list[str] | None) -> list[Path]:
    """Install the components (all when None) through the stage; returns the installed files."""
    stage = build_dir / STAGE_NAME
    cmake = str(ws.cmake.path)
    if not ws.dry:
        _empty(stage)
    each: list[str | None] = list(components) if components else [None]
    for component in each:
        argv = [cmake, "--install", str(build_dir), "--prefix", str(stage)]
        if component:
            argv += ["--component", component]
        try:
            ws.runner.run(argv, cwd=ws.checkout.root)
        except CommandFailed as exc:
            raise explain_failure(exc, stage) from None
    if ws.dry:
        return []
    return commit_stage(stage, ws.checkout.root, manifest_paths(build_dir, components or None))


def commit_stage(stage: Path, prefix: Path, manifests: list[Path]) -> list[Path]:
    """Move every staged file of the manifests to the same place under ``prefix`` (atomically,
    one file at a time), then rewrite the manifests with the final paths."""
    installed: list[Path] = []
    for manifest in manifests:
        if not manifest.is_file():
            continue
        final_lines = []
        for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            staged = Path(line)
            try:
                relative = staged.relative_to(stage)
            except ValueError:  # an absolute DESTINATION: cmake installed it there itself
                final_lines.append(line)
                continue
            final = prefix / relative
            if staged.is_file():
                _move_into_place(staged, final)
            elif not final.is_file():
                raise VllmDevError(f"the install staged no {staged}: run `vllm-dev build` again")
            final_lines.append(str(final))
            installed.append(final)
        atomic_write_bytes(manifest, ("\n".join(final_lines) + "\n").encode())
    return installed


def _move_into_place(staged: Path, final: Path) -> None:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        # cmake stamps installed files with the build output's mtime cut to whole seconds, which
        # looks older than the output; the moment of install is the honest stamp.
        os.utime(staged)
        try:
            os.replace(staged, final)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy_then_rename(staged, final)  # vllm/ on another file system or mount
    except OSError as exc:
        hint = (" (is the checkout read-only, or vllm/ not writable?)"
                if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else "")
        raise VllmDevError(f"cannot install {final}: {exc.strerror}{hint}; every file in vllm/ "
                           "is still whole (old or new)") from None


def _empty(stage: Path) -> None:
    if stage.is_symlink():
        with contextlib.suppress(OSError):
            stage.unlink()
    if stage.exists():
        try:
            shutil.rmtree(stage)
        except OSError as exc:
            raise VllmDevError(f"cannot empty {stage}: {exc.strerror}") from None
