"""What a paused watcher says: a save would start a whole-tree build, so it builds nothing.

The one place that words the cost of such a build. Issue 20 (a cost block before big builds)
will replace :func:`pause_lines` with its cost block; the watcher never asks (no ``[y/N]``):
it pauses until the change is built elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WholeBuild:
    """Why a save would start a whole-tree build, and how many objects it would compile."""

    reason: str
    objects: int
    files: tuple[str, ...]  # the saved files behind it (absolute)


def pause_lines(whole: WholeBuild) -> list[str]:
    """The lines printed when the watcher pauses (to be replaced by issue 20's cost block)."""
    return [f"paused, nothing built: {whole.reason} (up to {whole.objects} object(s))",
            "  to build it, run `vllm-dev build` (or `vllm-dev test`) in another terminal; the "
            "watcher goes on with the first save after that build (Ctrl-C: exit)"]
