"""What the build is doing right now, read from ninja's ``[N/M] description`` status lines.

Two displays share one model (:class:`BuildProgress`):

* :class:`PlainDisplay` passes every line through unchanged (logs, CI, ``--plain``);
* :class:`BarDisplay` (stderr is a terminal) draws a rich progress bar with elapsed time, ETA and
  the files being compiled, and prints everything that is not a status line above it.

Nothing but ninja's own status lines is ever hidden: warnings, a failing step's ``FAILED:`` block
with its full compiler output, cmake's messages all reach the user unabridged. rich is imported
only when the bar is shown, to keep a no-op build's start-up cheap.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

# In bar mode ninja runs on a pseudo-terminal and prints a status line when a step starts and
# when it finishes; with both counters in the line the two cases can be told apart.
NINJA_STATUS_FORMAT = "[%f/%t|%s] "
_STATUS_RE = re.compile(r"^\[(\d+)/(\d+)(?:\|(\d+))?\] (.*)$")
_OBJECT_RE = re.compile(r"^Building \S+ object (?:.*?\.dir/)?(.+?)\.(?:o|obj)$")
_LINK_RE = re.compile(r"^Linking \S+ .*?(\S+)$")
INSTALL_DESCRIPTION = "Install the project..."


@dataclass(frozen=True)
class StatusLine:
    """One ninja status line. ``started`` is only known in bar mode (see NINJA_STATUS_FORMAT)."""

    finished: int
    total: int
    description: str
    started: int | None = None


def parse_status(line: str) -> StatusLine | None:
    """The status line in ``line``, or None for any other output (compiler messages, cmake...)."""
    match = _STATUS_RE.match(line.rstrip())
    if not match:
        return None
    started = int(match.group(3)) if match.group(3) is not None else None
    return StatusLine(int(match.group(1)), int(match.group(2)), match.group(4), started)


def short_name(description: str) -> str:
    """``Building CXX object CMakeFiles/_C.dir/csrc/ops/add.cpp.o`` -> ``csrc/ops/add.cpp``."""
    match = _OBJECT_RE.match(description)
    if match:
        return match.group(1)
    match = _LINK_RE.match(description)
    if match:
        return f"link {match.group(1)}"
    return description


@dataclass
class BuildProgress:
    """Counters and the set of running steps, updated from status lines as they arrive."""

    started_at: float = field(default_factory=time.monotonic)
    total: int = 0
    finished: int = 0
    running: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    install_started_at: float | None = None
    _started: int = 0

    def update(self, line: str, *, now: float | None = None) -> StatusLine | None:
        status = parse_status(line)
        if status is None:
            return None
        now = time.monotonic() if now is None else now
        self.total = max(status.total, status.finished)
        if status.started is not None and status.started > self._started:
            self._started = status.started
            self.running[status.description] = None
        if status.finished > self.finished or status.started is None:
            self.running.pop(status.description, None)
            self.recent.append(status.description)
        self.finished = max(self.finished, status.finished)
        if status.description == INSTALL_DESCRIPTION and self.install_started_at is None:
            self.install_started_at = now
        return status

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started_at

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the average pace so far; None until a step has finished."""
        if self.finished <= 0 or self.total <= self.finished:
            return None if self.finished <= 0 else 0.0
        return self.elapsed(now) / self.finished * (self.total - self.finished)

    def activity(self) -> str:
        """Short names of what is compiling now (bar mode), else of what just finished."""
        names = list(self.running) or list(self.recent)[-1:]
        return ", ".join(short_name(n) for n in names)


class Display(Protocol):
    progress: BuildProgress
    pseudo_terminal: bool

    def child_env(self) -> dict[str, str]: ...

    def line(self, text: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class PlainDisplay:
    """Every line of the build, as cmake and ninja wrote it, one per line."""

    out: IO[str] = field(default_factory=lambda: sys.stdout)
    progress: BuildProgress = field(default_factory=BuildProgress)
    pseudo_terminal: bool = False

    def child_env(self) -> dict[str, str]:
        return {}

    def line(self, text: str) -> None:
        self.progress.update(text)
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class BarDisplay:
    """A rich progress bar on a terminal; other output scrolls above it, unabridged."""

    pseudo_terminal = True

    def __init__(self, *, console: Any = None, title: str = "compiling") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.progress = BuildProgress()
        self._console = console or Console(stderr=True)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("elapsed {task.fields[elapsed]}  eta {task.fields[eta]}"),
            TextColumn("{task.fields[activity]}", style="dim"),
            console=self._console,
            transient=False,
            refresh_per_second=8,
        )
        self._task = self._bar.add_task(title, total=None, count="", elapsed="0:00",
                                        eta="-:--", activity="")
        self._bar.start()

    def child_env(self) -> dict[str, str]:
        return {"NINJA_STATUS": NINJA_STATUS_FORMAT}

    def line(self, text: str) -> None:
        from rich.text import Text

        status = self.progress.update(text)
        if status is None:
            self._bar.console.print(Text.from_ansi(text), soft_wrap=True)
        self._refresh()

    def _refresh(self) -> None:
        p = self.progress
        title = "installing" if p.install_started_at is not None else "compiling"
        self._bar.update(self._task, description=title, total=p.total or None,
                         completed=p.finished, count=f"{p.finished}/{p.total or '?'}",
                         elapsed=format_seconds(p.elapsed()),
                         eta=format_seconds(p.eta()), activity=p.activity()[:80])

    def close(self) -> None:
        self._refresh()
        self._bar.stop()


def wants_bar(*, plain: bool, stream: IO[str] | None = None,
              environ: dict[str, str] | None = None) -> bool:
    """The bar only where a person watches: stderr is a terminal, not dumb, and not --plain."""
    if plain:
        return False
    stream = stream or sys.stderr
    env = os.environ if environ is None else environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and env.get("TERM", "") != "dumb" and os.name == "posix"


def open_display(*, plain: bool) -> Display:
    if wants_bar(plain=plain):
        return BarDisplay()
    return PlainDisplay()
