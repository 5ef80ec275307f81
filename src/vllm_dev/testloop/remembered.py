"""The test selection remembered for a checkout: what ``vllm-dev test -- ARGS`` chose last.

To move into the settings store (issue 19: one per-checkout store under ``.vllm-dev/`` that every
door opens through ``open_workspace``). Until then the selection is its own small versioned JSON
file, ``.vllm-dev/test-selection.json``, written atomically (temporary file, fsync, rename: see
process/files.py). Only :func:`load_selection`, :func:`save_selection` and
:func:`forget_selection` know where it lives, so re-pointing them at the store is the whole move.
"""

from __future__ import annotations

import time
from pathlib import Path

from vllm_dev.checkout.state import ensure_state_dir, read_json, write_json

SELECTION_FILE = "test-selection.json"
_KIND = "vllm-dev test selection"
_VERSION = 1


def load_selection(state_dir: Path) -> tuple[str, ...] | None:
    """The remembered pytest selection (paths, ``-k``, ``-m`` ...), or None when there is none.

    A file of another kind or a newer version is not ours to read: it counts as none (a corrupt
    one is set aside by :func:`read_json` with its one line)."""
    path = state_dir / SELECTION_FILE
    data = read_json(path) if path.is_file() else None
    if not data or data.get("kind") != _KIND or data.get("version") != _VERSION:
        return None
    args = data.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        return None
    return tuple(args)


def save_selection(state_dir: Path, args: tuple[str, ...]) -> None:
    """Remember ``args`` (a selection only: output flags are never passed here)."""
    ensure_state_dir(state_dir)
    write_json(state_dir / SELECTION_FILE, {
        "kind": _KIND, "version": _VERSION, "args": list(args),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def forget_selection(state_dir: Path) -> bool:
    """Drop the remembered selection (``vllm-dev test --pick``); whether there was one."""
    path = state_dir / SELECTION_FILE
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
