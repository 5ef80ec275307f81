"""What a paused watcher says: a save would start a whole-tree build, so it builds nothing.

The one place that words such a pause. Where the save's targets are known (it reaches every
object of them), the cost block of a build (steps/cost.py: ninja's object count, the estimate
from this checkout's history, how to narrow it) says what the build would cost; a save of a file
CMake's configure reads changes the build graph itself, which no dry run can count before the
configure, so that pause names the objects that may recompile. The watcher never asks
(no ``[y/N]``): it pauses until the change is built elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vllm_dev.steps.cost import CostBlock


@dataclass(frozen=True)
class WholeBuild:
    """Why a save would start a whole-tree build, and how many objects it would compile."""

    reason: str
    objects: int
    files: tuple[str, ...]  # the saved files behind it (absolute)


def pause_lines(whole: WholeBuild, cost: CostBlock | None = None) -> list[str]:
    """The lines printed when the watcher pauses: why, and the build's cost block when known."""
    head = ([f"paused, nothing built: {whole.reason}", *cost.lines()] if cost is not None
            else [f"paused, nothing built: {whole.reason} (up to {whole.objects} object(s))"])
    return [*head,
            "  to build it, run `vllm-dev build` (or `vllm-dev test`) in another terminal; the "
            "watcher goes on with the first save after that build (Ctrl-C: exit)"]
