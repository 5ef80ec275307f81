"""The test selection remembered for a checkout: what ``vllm-dev test -- ARGS`` chose last.

It is one checkout-wide entry (``test_selection``) of the settings store,
``.vllm-dev/settings.json`` (config/store.py): the same file, lock, atomic write and handling of a
corrupt or newer file as the remembered settings. A selection belongs to the checkout, not to a
preset: ``vllm-dev test --preset debug`` reruns what the release loop ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vllm_dev.config import store

ENTRY = "test_selection"


def load_selection(state_dir: Path, *, say: Callable[[str], None]) -> tuple[str, ...] | None:
    """The remembered pytest selection (paths, ``-k``, ``-m`` ...), or None when there is none.
    An entry that is not a list of words (a hand edit) counts as none."""
    entry = store.read_entry(state_dir, ENTRY, say=say)
    args = entry.value if entry else None
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        return None
    return tuple(args)


def save_selection(state_dir: Path, args: tuple[str, ...], *,
                   say: Callable[[str], None]) -> None:
    """Remember ``args`` (a selection only: output flags are never passed here)."""
    store.write_entry(state_dir, ENTRY, list(args), command="test", say=say)


def forget_selection(state_dir: Path, *, say: Callable[[str], None]) -> bool:
    """Drop the remembered selection (``vllm-dev test --pick``); whether there was one."""
    return store.write_entry(state_dir, ENTRY, None, command="test", say=say)
