"""Naming a full disk when a build step fails because of it.

Compilers and ninja report ENOSPC in their own words, somewhere above the last line; vllm-dev's
one line (``cmake --build ... failed``) should say what to fix. After a failed step the free space
of the file systems involved is checked, and a nearly full one is named.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vllm_dev.errors import CommandFailed, VllmDevError

# Below this, a failed compile or install is blamed on the disk (one nvcc object can be larger).
NEARLY_FULL_BYTES = 64 * 1024 * 1024


def explain_failure(exc: CommandFailed, *places: Path) -> VllmDevError:
    """``exc`` itself, or a CommandFailed whose line names the full disk and its fix."""
    for place in places:
        probe = place
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            continue
        if free < NEARLY_FULL_BYTES:
            better = CommandFailed(exc.argv, exc.returncode)
            better.args = (f"{exc}; the disk holding {place} is full ({free // 1024} KiB free); "
                           "free some space and run the build again",)
            return better
    return exc
