"""``clean``: remove vllm-dev's build dirs, and optionally what their last install wrote.

Deletion is the one irreversible thing vllm-dev does, so it is fenced in: only directories
carrying vllm-dev's marker, strictly inside the checkout, reached without leaving it through a
symlink; ``shutil.rmtree`` unlinks symlinks inside a build dir rather than following them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.checkout.compile_db import unlink_into
from vllm_dev.errors import VllmDevError
from vllm_dev.installs.install_record import InstallRecord
from vllm_dev.planning.workspace import Workspace
from vllm_dev.presets.render import resolve_binary_dir
from vllm_dev.process.locking import build_lock, current_command
from vllm_dev.state import layout
from vllm_dev.state.build_record import is_marked_build_dir
from vllm_dev.state.records import ensure_state_dir


@dataclass(frozen=True)
class CleanResult:
    removed_dirs: list[Path] = field(default_factory=list)
    removed_files: list[Path] = field(default_factory=list)


def check_removable(path: Path, root: Path) -> None:
    """Refuse anything but a real directory of ours strictly inside the checkout."""
    root = root.resolve()
    lexical = Path(os.path.normpath(path))
    if lexical == root or root not in lexical.parents:
        raise VllmDevError(f"refusing to remove {path}: it is not inside the checkout {root}")
    probe = lexical
    while probe != root:
        if probe.is_symlink():
            raise VllmDevError(
                f"refusing to remove {path}: {probe} is a symlink (pointing to "
                f"{os.readlink(probe)}); remove the link yourself if you mean to")
        probe = probe.parent
    if Path(os.path.realpath(lexical)) != lexical:
        raise VllmDevError(f"refusing to remove {path}: it resolves outside the checkout")
    if not is_marked_build_dir(lexical):
        raise VllmDevError(
            f"refusing to remove {path}: vllm-dev did not create it (no vllm-dev-build.json)")


def _remove_installed(ws: Workspace, build_dir: Path) -> list[Path]:
    package = ws.checkout.package_dir.resolve()
    removed = []
    # vllm-dev's own record of what its installs wrote (never CMake's manifests: see
    # install_record.py); only files inside vllm/ are ever removed.
    files = set(InstallRecord.load(build_dir).files())
    for path in sorted(files):
        real = Path(os.path.realpath(path))
        if package in real.parents and not path.is_symlink() and path.is_file():
            if not ws.dry:
                try:
                    path.unlink()
                except OSError as exc:
                    raise VllmDevError(f"cannot remove installed {path}: {exc.strerror}") \
                        from None
            removed.append(path)
    return removed


def _rmtree(build_dir: Path, root: Path) -> None:
    """Remove a checked build dir; checked again right before (it may have been swapped for a
    symlink meanwhile), and a failure (read-only, busy mount) is one line, not a traceback."""
    check_removable(build_dir, root)
    try:
        # The marker goes last, so a dir whose removal failed halfway is still ours to clean.
        for child in build_dir.iterdir():
            if child.name == layout.BUILD_RECORD:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)  # unlinks symlinks inside, never follows them
            else:
                child.unlink()
        (build_dir / layout.BUILD_RECORD).unlink(missing_ok=True)
        build_dir.rmdir()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise VllmDevError(f"cannot remove {build_dir}: {reason} (run `vllm-dev clean` again "
                           "once that is fixed)") from None


def build_dirs(ws: Workspace, *, every: bool) -> list[Path]:
    root = ws.checkout.root
    if not every:
        return [ws.build_dir]
    found = {resolve_binary_dir(t, source_dir=root) for t in ws.templates.values()}
    found |= {p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
              and is_marked_build_dir(p)}
    return sorted(p for p in found if p.exists() or p.is_symlink())


def _shared_sources(ws: Workspace, *, remove: bool) -> None:
    """``<checkout>/.deps``: dependency sources fetched by pip builds (setup.py's
    FETCHCONTENT_BASE_DIR) and reused by every preset. Left alone unless asked for by name:
    fetching them again needs the network."""
    root = ws.checkout.root
    deps = root / ".deps"
    if not deps.is_dir() or deps.is_symlink():
        if remove:
            ws.say("no shared dependency sources (.deps) to remove")
        return
    names = sorted(p.name for p in deps.iterdir() if p.name.endswith("-src"))
    if not remove:
        ws.say(f"left .deps/ ({', '.join(names) or 'empty'}): dependency sources shared with pip "
               "builds; `vllm-dev clean --all --deps` removes them")
        return
    if ws.dry:
        ws.say("would remove .deps/ (shared dependency sources)")
        return
    # Moved aside first: the rename is atomic, so an interrupted removal leaves no half tree
    # that a configure would take for a complete source dir.
    aside = ensure_state_dir(ws.checkout.state_dir) / layout.DEPS_REMOVING.format(pid=os.getpid())
    try:
        deps.rename(aside)
        shutil.rmtree(aside)
    except OSError as exc:
        raise VllmDevError(f"cannot remove {deps}: {exc.strerror or exc}") from None
    ws.say(f"removed .deps/ ({', '.join(names) or 'empty'}): fetched again by the next "
           "configure that needs them")


def run_clean(ws: Workspace, *, every: bool = False, installed: bool = False,
              deps: bool = False) -> CleanResult:
    if deps and not every:
        raise VllmDevError("--deps removes the sources every preset shares: pass it with --all")
    root = ws.checkout.root
    result = CleanResult()
    targets = build_dirs(ws, every=every)
    for build_dir in targets:
        if not build_dir.exists() and not build_dir.is_symlink():
            continue
        check_removable(build_dir, root)
    for build_dir in targets:
        if not build_dir.exists():
            continue
        if installed:
            result.removed_files.extend(_remove_installed(ws, build_dir))
        verb = "would remove" if ws.dry else "removed"
        if not ws.dry:
            # Never pull a build dir from under a running build: wait for it (or, with
            # no_wait, stop in one line naming it).
            with build_lock(build_dir, wait=not ws.settings.no_wait, say=ws.say,
                            command=current_command()):
                _rmtree(build_dir, root)
        result.removed_dirs.append(build_dir)
        ws.say(f"{verb} {build_dir}")
        if not ws.dry and unlink_into(root, build_dir):
            ws.say("removed the compile_commands.json link into it")
    for path in result.removed_files:
        ws.say(f"{'would remove' if ws.dry else 'removed'} installed {path.relative_to(root)}")
    if not result.removed_dirs:
        ws.say("nothing to clean")
    _shared_sources(ws, remove=deps)
    return result
