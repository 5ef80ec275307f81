"""Installing into ``vllm/`` so that an interruption never leaves a broken extension behind.

CMake's own install copies each file over its destination in place (and then rewrites its RPATH
in place). Killed halfway, it leaves a truncated or half-patched ``_C.so`` in ``vllm/``, and the
next ``import vllm`` loads it (a crash, or worse, a silently old/new mix of code).

Two ways out were possible: detect and repair on the next build, or never write in place. We stage:
``cmake --install <build> --prefix <build>/vllm-dev-stage --component <c>`` writes the complete
files (RPATH edits included) inside the build dir, and only then each file is moved into the
checkout with ``rename(2)``, which is atomic: an import sees the old ``.so`` or the new one, never
a partial one. Repair alone would leave a window (between the interrupt and the next build) in
which an import picks up the broken file, and would require the next build to happen at all;
staging has no window. What an interruption can still leave is a *set* of extensions from two
builds (``_C`` new, ``_fast_C`` old), each whole; the record (install_record.py) is written only
after the commit, so the next build installs the set again.

The stage is vllm-dev's own and emptied before every install, so (a) cmake never skips a file
there as "Up-to-date" (its same-second timestamp check cannot leave an old file in place), and
(b) what a component wrote is simply what appeared or changed in the stage during its
``cmake --install``: no CMake manifest is read (CMake 3.30 writes none with vLLM's
``CMAKE_INSTALL_LOCAL_ONLY`` line, 3.31+ only ``install_local_manifest.txt``).

What reaches ``vllm/`` is always the staged file, i.e. exactly what ``cmake --install`` produced
(never the build dir's file, whose build-tree RUNPATH the install removes). A staged file whose
bytes equal the installed file (same sha256 as recorded, installed file untouched since) is not
moved at all: the installed file keeps its inode and mtime.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.errors import CommandFailed, VllmDevError
from vllm_dev.host.disk import explain_failure
from vllm_dev.installs.components import check_destinations
from vllm_dev.installs.install_record import (
    ComponentRecord,
    InstalledFile,
    InstallRecord,
    sha256_of,
)
from vllm_dev.process.files import copy_then_rename
from vllm_dev.process.runner import Runner
from vllm_dev.state import layout
from vllm_dev.toolchain.fact_cache import identity

STAGE_NAME = layout.STAGE
_SKIP_DIRS = {"CMakeFiles", "_deps", ".deps", STAGE_NAME}


@dataclass
class CommitResult:
    """What one install did to the checkout."""

    written: list[Path] = field(default_factory=list)  # moved into place now
    unchanged: list[Path] = field(default_factory=list)  # same bytes already there: left alone
    # installed by vllm-dev earlier, then changed by someone else: replaced by the install's file
    replaced: list[Path] = field(default_factory=list)
    components: list[str] = field(default_factory=list)  # components staged and committed

    @property
    def files(self) -> list[Path]:
        return self.written + self.unchanged


def staged_install(build_dir: Path, components: list[str], *, cmake: Path, runner: Runner,
                   root: Path, package_dir: Path) -> CommitResult:
    """Install ``components`` through the stage, one ``cmake --install`` each, then commit the
    staged files under ``root`` (the checkout), refusing any outside ``package_dir``."""
    stage = build_dir / STAGE_NAME
    dry = runner.dry
    if not dry:
        _empty(stage)
    staged: dict[str, list[Path]] = {}
    before: dict[Path, list[int] | None] = {}
    # A dry run before the first configure knows no component: it shows the command's shape.
    each: list[str | None] = list(components) if components or not dry else [None]
    for component in each:
        argv = [str(cmake), "--install", str(build_dir), "--prefix", str(stage)]
        if component:
            argv += ["--component", component]
        try:
            runner.run(argv, cwd=root)
        except CommandFailed as exc:
            raise explain_failure(exc, stage) from None
        if dry:
            continue
        after = walk_stage(stage)
        staged[str(component)] = sorted(p for p, ident in after.items() if before.get(p) != ident)
        before = after
    if dry:
        return CommitResult()
    check_destinations(package_dir, [root / r for rels in staged.values() for r in rels])
    record = InstallRecord.load(build_dir)
    return commit_stage(stage, root, staged, record)


def walk_stage(stage: Path) -> dict[Path, list[int] | None]:
    """Every file (or symlink) under the stage, relative to it, with its identity."""
    found: dict[Path, list[int] | None] = {}
    for top, _dirs, names in os.walk(stage):
        for name in names:
            path = Path(top) / name
            try:
                st = os.lstat(path)
            except OSError:
                continue
            found[path.relative_to(stage)] = [st.st_mtime_ns, st.st_size, st.st_ino]
    return found


def build_outputs(build_dir: Path) -> dict[str, Path]:
    """Built files by name. Hand-walked: CMake records no file-to-target map we can read cheaply."""
    found: dict[str, Path] = {}
    for top, dirs, names in os.walk(build_dir):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in names:
            if name.endswith((".so", ".pyd", ".dylib")) or ".so." in name:
                found.setdefault(name, Path(top) / name)
    return found


def commit_stage(stage: Path, prefix: Path, staged: dict[str, list[Path]],
                 record: InstallRecord) -> CommitResult:
    """Move each component's staged files (relative to the stage) to the same place under
    ``prefix`` (atomically, one file at a time), then write the record."""
    result = CommitResult()
    previous = {f.path: f for f in record.entries()} if record.prefix == prefix else {}
    outputs = build_outputs(record.build_dir)
    record.prefix = prefix
    script = identity(record.build_dir / "cmake_install.cmake")
    for component, relatives in staged.items():
        files = []
        changed = False
        for relative in relatives:
            source, final = stage / relative, prefix / relative
            if not source.is_file():
                raise VllmDevError(f"the install staged no {source}: run `vllm-dev build` again")
            digest = sha256_of(source)
            before = previous.get(str(relative))
            touched = before is None or before.installed_changed(prefix)
            if not touched and before is not None and before.sha256 == digest:
                result.unchanged.append(final)  # the recorded bytes, untouched since
            elif touched and final.is_file() and not final.is_symlink() and \
                    filecmp.cmp(source, final, shallow=False):
                result.unchanged.append(final)  # not ours (or touched), but the same bytes
            else:
                if before is not None and touched and final.exists():
                    result.replaced.append(final)  # we installed it; someone changed it since
                _move_into_place(source, final)
                result.written.append(final)
                changed = True
            built = outputs.get(relative.name)
            files.append(InstalledFile(
                path=str(relative), sha256=digest, identity=identity(final),
                source=str(built) if built else None,
                source_identity=identity(built) if built else None))
        old = record.components.get(component)
        verified = bool(old and old.verified and not changed) or not files  # nothing to load
        record.components[component] = ComponentRecord(files, verified, script)
        result.components.append(component)
    with contextlib.suppress(OSError):
        record.save()
    return result


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
