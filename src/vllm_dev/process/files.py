"""Writing files so that a crash or a full disk never leaves a half-written one behind.

Hand-written (temporary file, fsync, rename: a few lines): ``atomicwrites``, the library for
it, is archived; these also keep the file's mode and remove the temporary file on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from vllm_dev.errors import VllmDevError


def _cannot_write(path: Path, exc: OSError) -> VllmDevError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return VllmDevError(f"cannot write {path}: {exc.strerror}; the disk holding "
                            f"{path.parent} is full: free some space and run the build again")
    return VllmDevError(f"cannot write {path}: {exc.strerror}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic on POSIX, so readers see the old file or the new one, never a mix; the
    original mode is kept, and a new file gets the user's umask (mkstemp alone makes it 0600).
    """
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _cannot_write(path, exc) from None
    except BaseException:  # Ctrl-C/SIGTERM mid-write: no stray temporary file either
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask: from /proc (Linux), else by setting it and straight back (a moment in
    which another thread's new file would get 022, which /proc avoids)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` unless the file already holds exactly these bytes (mtime then unchanged)."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise VllmDevError(f"cannot read {path}: {exc.strerror}") from None
    atomic_write_bytes(path, data)
    return True


def copy_then_rename(src: Path, dest: Path) -> None:
    """Copy ``src`` to a temporary file beside ``dest``, then rename it over ``dest``; the
    temporary file is removed on any error or interrupt. OSError propagates to the caller."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    except BaseException:  # also Ctrl-C/SIGTERM mid-copy: no stray temporary file in vllm/
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
