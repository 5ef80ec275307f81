"""``compile_commands.json`` at the checkout root, for clangd and other editors.

CMake writes the compilation database into the build dir (``CMAKE_EXPORT_COMPILE_COMMANDS``);
clangd looks for it in the source file's parent directories (and their ``build/``), so kernel
sources under ``csrc/`` only find it through the checkout root. After each configure vllm-dev
links ``<checkout>/compile_commands.json`` to the build dir of the preset in use. A file or link
that vllm-dev did not make is the user's: it is never replaced. The files vllm-dev writes at the
root go into git's exclude file (:func:`exclude_from_git`), so the checkout's ``git status`` does
not list them.
"""

from __future__ import annotations

import os
from pathlib import Path

from vllm_dev.errors import CannotRun
from vllm_dev.process.files import write_if_changed
from vllm_dev.process.runner import query
from vllm_dev.state import layout
from vllm_dev.state.build_record import is_marked_build_dir

DATABASE = layout.COMPILE_DB
CLANGD_CONFIG = layout.CLANGD
_CLANGD_MARK = "# Written by vllm-dev"
# nvcc's options that clang's driver rejects ("unsupported option"), dropped by clangd's own
# config (CompileFlags.Remove); clang then parses .cu files as CUDA itself. Measured with
# Debian's clangd 14 and nvcc 13.0: 3 errors on the test project's saxpy.cu without it, 0 with.
_CLANGD_TEXT = f"""{_CLANGD_MARK} for clangd: nvcc's own options, which clang does not know, are
# dropped from compile_commands.json's commands. Delete the first line to make this file yours
# (vllm-dev then never touches it again).
CompileFlags:
  Remove: [-forward-unknown-to-host-compiler, --generate-code*, -gencode*, --threads*, -rdc=*,
           --expt-relaxed-constexpr, --expt-extended-lambda, -Xcompiler*, -Xfatbin*, -Xptxas*,
           --options-file, --diag-suppress*, --use_fast_math, -static-global-template-stub*]
  Add: [--no-cuda-version-check, -nocudalib]
"""


def _ours(link: Path, root: Path) -> bool:
    """A symlink made by vllm-dev: relative, down into a directory of the checkout that is (or
    was, when ``clean`` removed it) a vllm-dev build dir."""
    if not link.is_symlink():
        return False
    target = Path(os.readlink(link))
    if target.is_absolute() or ".." in target.parts or len(target.parts) < 2 or \
            target.name != DATABASE:
        return False
    build_dir = root / target.parent
    return not build_dir.exists() or is_marked_build_dir(build_dir)


def link_compile_commands(root: Path, build_dir: Path, *, announce_user_file: bool = False
                          ) -> str | None:
    """Point ``<root>/compile_commands.json`` at ``build_dir``'s; what changed, as one line (None
    when nothing did)."""
    database = build_dir / DATABASE
    link = root / DATABASE
    if not database.is_file() or root not in build_dir.parents:
        return None
    relative = build_dir.relative_to(root) / DATABASE
    if link.exists() or link.is_symlink():
        if not _ours(link, root):
            return (f"left your {link} as it is (clangd: point it at {database})"
                    if announce_user_file else None)
        if Path(os.readlink(link)) == relative:
            return None
        link.unlink()
        os.symlink(relative, link)
        exclude_from_git(root)
        return f"compile_commands.json now follows {relative.parent} (for clangd)"
    os.symlink(relative, link)
    exclude_from_git(root)
    return f"linked compile_commands.json -> {relative} (for clangd)"


# What vllm-dev writes at the checkout root (its own state is in .vllm-dev/, which ignores itself).
OWN_ROOT_FILES = layout.ROOT_FILES
_EXCLUDE_NOTE = "# vllm-dev's own files at the checkout root (vllm-dev adds these lines)"


def exclude_from_git(root: Path) -> Path | None:
    """Keep vllm-dev's root files out of the checkout's ``git status``: they go into the exclude
    file git names (``git rev-parse --git-path info/exclude``: the repository's own, shared by
    its worktrees), never into the tracked ``.gitignore``. Lines already there are left alone;
    returns the exclude file when it was written (None: nothing to add, or no git checkout)."""
    try:  # a query with the module default: no runner is at hand here (process/runner.py)
        done = query(["git", "-C", str(root), "rev-parse", "--git-path", layout.GIT_EXCLUDE],
                     timeout=10)
    except CannotRun:
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    path = root / done.stdout.strip()  # relative to root unless git printed an absolute path
    try:
        text = path.read_text() if path.is_file() else ""
        have = {line.strip() for line in text.splitlines()}
        missing = [f"/{name}" for name in OWN_ROOT_FILES
                   if f"/{name}" not in have and name not in have]
        if not missing:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            prefix = "" if not text or text.endswith("\n") else "\n"
            note = "" if _EXCLUDE_NOTE in have else f"{_EXCLUDE_NOTE}\n"
            handle.write(prefix + note + "".join(f"{m}\n" for m in missing))
    except OSError:
        return None  # a read-only .git: git status shows them, nothing else is affected
    return path


def unlink_into(root: Path, build_dir: Path) -> bool:
    """Remove vllm-dev's link when it points into ``build_dir`` (which ``clean`` removes)."""
    link = root / DATABASE
    if _ours(link, root) and root / Path(os.readlink(link)).parent == build_dir:
        link.unlink()
        return True
    return False


def write_clangd_config(root: Path) -> str | None:
    """``<checkout>/.clangd`` for CUDA builds, unless one that vllm-dev did not write is there."""
    path = root / CLANGD_CONFIG
    if path.is_symlink() or (path.exists() and not path.read_text(
            errors="replace").startswith(_CLANGD_MARK)):
        return None
    existed = path.exists()
    if write_if_changed(path, _CLANGD_TEXT) and not existed:
        return f"wrote {CLANGD_CONFIG} (clangd: drops nvcc-only options from .cu commands)"
    return None
