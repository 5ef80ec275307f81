"""What the build is doing right now, read from ninja's ``[N/M] description`` status lines.

Two displays share one model (:class:`BuildProgress`):

* :class:`PlainDisplay` passes every line through unchanged (logs, CI, ``--plain``);
* :class:`BarDisplay` (stderr is a terminal) draws a rich progress bar with elapsed time, ETA and
  the files being compiled now, and prints everything that is not a status line above it.

The bar is redrawn by rich's own refresh thread several times a second, and every column reads
the clock when it is drawn: elapsed time, ETA and the running time of each file move while ninja
is silent (vLLM objects take minutes each; a bar that moves only on ninja's output looks hung).

Nothing but ninja's own status lines is ever hidden: warnings, a failing step's ``FAILED:`` block
with its full compiler output, cmake's messages all reach the user unabridged. The model also
remembers each failed step and its first error line, for the build's summary. rich is imported
only when the bar is shown, to keep a no-op build's start-up cheap.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

# In bar mode ninja runs on a pseudo-terminal and prints a status line when a step starts and
# when it finishes; with both counters in the line (%f finished, %s started) the two cases can
# be told apart, and each start paired with its finish by the step's description.
NINJA_STATUS_FORMAT = "[%f/%t|%s] "
_STATUS_RE = re.compile(r"^\[(\d+)/(\d+)(?:\|(\d+))?\] (.*)$")
_OBJECT_RE = re.compile(r"^Building \S+ object (?:.*?\.dir/)?(.+?)\.(?:o|obj)$")
_LINK_RE = re.compile(r"^Linking \S+ .*?(\S+)$")
# SGR colours and erase-line: ninja >= 1.12 colours its FAILED: label on a terminal.
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# ``FAILED: [code=1] out1 out2`` (ninja >= 1.12 adds the exit code) or ``FAILED: out``.
_FAILED_RE = re.compile(r"^FAILED: (?:\[code=-?\d+\] )?(.*)$")
# A compiler's error line: gcc/clang ``f.cpp:7:1: error:``, ``fatal error:``, nvcc
# ``f.cu(7): error:``, MSVC ``error C2065:``, ``collect2: error:``.
_ERROR_RE = re.compile(r"(?:^|[\s:)])(?:fatal )?error(?: [A-Z]+\d+)?:", re.IGNORECASE)
INSTALL_DESCRIPTION = "Install the project..."
# How many running files the bar names before "+N more".
SHOWN_RUNNING = 3


@dataclass(frozen=True)
class StatusLine:
    """One ninja status line. ``started`` is only known in bar mode (see NINJA_STATUS_FORMAT)."""

    finished: int
    total: int
    description: str
    started: int | None = None


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


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


def file_label(description: str) -> str:
    """What the bar calls a running step: the source file's name alone (``add.cpp``; the bar is
    one terminal line, and a vLLM path is 60 characters), else :func:`short_name`."""
    match = _OBJECT_RE.match(description)
    return os.path.basename(match.group(1)) if match else short_name(description)


@dataclass(frozen=True)
class StepEvent:
    """A step seen starting or finishing, at ``at`` on the progress clock."""

    kind: str  # "start" or "finish"
    description: str
    at: float


@dataclass
class FailedStep:
    """A step ninja reported as ``FAILED:``: its outputs and the first error line it printed."""

    outputs: list[str]
    first_error: str = ""
    # First line of the step's output when no line looks like an error (a linker message...).
    first_line: str = ""

    @property
    def error(self) -> str:
        return self.first_error or self.first_line


@dataclass
class BuildProgress:
    """Counters, running steps and failures, updated from output lines as they arrive.

    ``clock`` gives every time in here (tests pass ``time.time`` to compare with timestamps
    written by the build's own commands)."""

    clock: Callable[[], float] = time.monotonic
    started_at: float | None = None
    total: int = 0
    finished: int = 0
    started: int = 0
    running: dict[str, float] = field(default_factory=dict)  # description -> start time
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    events: list[StepEvent] = field(default_factory=list)
    failures: list[FailedStep] = field(default_factory=list)
    install_started_at: float | None = None
    _failing: FailedStep | None = None
    _skip_command: bool = False

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

    def update(self, line: str, *, now: float | None = None) -> StatusLine | None:
        """Take one line of the build's output; the status it held, if it was a status line."""
        text = strip_ansi(line)
        status = parse_status(text)
        if status is None:
            self._note_output(text)
            return None
        self._failing = None
        now = self.clock() if now is None else now
        if status.finished < self.finished:  # ninja restarted after re-running cmake
            self.finished = self.started = 0
            self.running.clear()
        self.total = max(status.total, status.finished)
        if status.started is not None and status.started > self.started:
            self.started = status.started
            self.running[status.description] = now
            self.events.append(StepEvent("start", status.description, now))
        elif status.finished > self.finished or status.started is None:
            self.running.pop(status.description, None)
            self.recent.append(status.description)
            self.events.append(StepEvent("finish", status.description, now))
        self.finished = max(self.finished, status.finished)
        if status.description == INSTALL_DESCRIPTION and self.install_started_at is None:
            self.install_started_at = now
        return status

    def _note_output(self, text: str) -> None:
        """Follow a ``FAILED:`` block: ninja prints the command, then the step's output."""
        failed = _FAILED_RE.match(text)
        if failed:
            self._failing = FailedStep(failed.group(1).split())
            self.failures.append(self._failing)
            self._skip_command = True
            return
        step = self._failing
        if step is None or not text.strip():
            return
        if self._skip_command:  # the command line itself may well contain "-Werror"
            self._skip_command = False
            return
        if text.startswith("ninja: "):
            self._failing = None
            return
        if not step.first_line:
            step.first_line = text.strip()
        if not step.first_error and _ERROR_RE.search(text):
            step.first_error = text.strip()

    def elapsed(self, now: float | None = None) -> float:
        return (self.clock() if now is None else now) - (self.started_at or 0.0)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the average pace since the build started; None until a step has
        finished (why not rich's ETA: see BarDisplay)."""
        if self.finished <= 0 or self.total <= self.finished:
            return None if self.finished <= 0 else 0.0
        return self.elapsed(now) / self.finished * (self.total - self.finished)

    def waiting_only(self) -> bool:
        """Every step has started: what is left is waiting for the running ones (the tail)."""
        return bool(self.running) and self.total > 0 and self.started >= self.total

    def activity(self, now: float | None = None) -> str:
        """What is compiling now and for how long, oldest first (bar mode); in pipe mode,
        where ninja reports only finished steps, what just finished."""
        if not self.running:
            return ", ".join(short_name(n) for n in list(self.recent)[-1:])
        now = self.clock() if now is None else now
        running = sorted(tuple(self.running.items()), key=lambda item: item[1])
        names = [f"{file_label(d)} {format_seconds(now - t)}"
                 for d, t in running[:SHOWN_RUNNING]]
        more = len(running) - SHOWN_RUNNING
        text = ", ".join(names) + (f" +{more} more" if more > 0 else "")
        return f"waiting for {text}" if self.waiting_only() else text


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
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class BarDisplay:
    """A rich progress bar on a terminal; other output scrolls above it, unabridged.

    ``refresh_per_second`` drives rich's refresh thread: the columns below read the clock at
    every redraw, so the bar moves while ninja prints nothing."""

    pseudo_terminal = True

    def __init__(self, *, console: Any = None, title: str = "compiling",
                 progress: BuildProgress | None = None,
                 refresh_per_second: float = 4) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn
        from rich.text import Text

        self.progress = progress or BuildProgress()
        # The refresh thread reads the model while the reading thread updates it.
        self._lock = threading.Lock()
        self._console = console or Console(stderr=True)
        display = self

        class BarWithActivity(Progress):
            """The bar, and below it a line of the files compiling now (a vLLM path alone is
            60 characters: on one line with the bar it would squeeze the counters out)."""

            def get_renderables(self) -> Any:
                yield self.make_tasks_table(self.tasks)
                yield Text(display.render("activity"), style="dim", no_wrap=True,
                           overflow="ellipsis")

        self._bar = BarWithActivity(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[count]}"),
            # Not rich's TimeElapsedColumn/TimeRemainingColumn: rich's speed is measured between
            # progress samples within speed_estimate_period (it needs two completions, and stays
            # frozen while ninja is silent), and a vLLM step takes minutes; so the ETA is the
            # average pace since the start, and elapsed reads the same clock from the same start.
            _live_column(self, "times"),
            console=self._console,
            transient=False,
            refresh_per_second=refresh_per_second,
            get_time=self.progress.clock,
        )
        self._task = self._bar.add_task(title, total=None, count="")
        self._bar.start()

    def child_env(self) -> dict[str, str]:
        return {"NINJA_STATUS": NINJA_STATUS_FORMAT}

    def line(self, text: str) -> None:
        from rich.text import Text

        with self._lock:
            status = self.progress.update(text)
        if status is None:
            self._bar.console.print(Text.from_ansi(text), soft_wrap=True)
        self._refresh()

    def render(self, what: str) -> str:
        """The text of a live column, read from the model at drawing time."""
        with self._lock:
            p = self.progress
            if what == "times":
                now = p.clock()
                return (f"elapsed {format_seconds(p.elapsed(now))}  "
                        f"eta {format_seconds(p.eta(now))}")
            return p.activity()

    def _refresh(self) -> None:
        p = self.progress
        title = "installing" if p.install_started_at is not None else "compiling"
        self._bar.update(self._task, description=title, total=p.total or None,
                         completed=p.finished, count=f"{p.finished}/{p.total or '?'}")

    def close(self) -> None:
        self._refresh()
        self._bar.refresh()
        self._bar.stop()


def _live_column(display: BarDisplay, what: str) -> Any:
    """A rich column whose text comes from :meth:`BarDisplay.render` at every redraw (a
    function, not a module-level class: rich is imported only when the bar is shown)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class LiveColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(display.render(what), no_wrap=True)

    return LiveColumn()


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
