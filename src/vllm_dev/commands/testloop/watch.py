"""``vllm-dev test --watch``: one cycle at start, then one per save, until Ctrl-C (exit 130).

Files are watched with watchfiles (inotify through Rust's ``notify``; its loop wakes every
:data:`STEP_MS` to group a burst of events, under 0.2 % of a core while idle, measured in
bench/). Which files: watchset.py. A save is debounced (the burst of events an editor's save
makes is one cycle, :data:`STEP_MS` after the last of them), then decided: a whole-tree build
pauses (pause.py); anything else builds the targets it reaches plus those being watched, as
explicit targets (no selection is re-run per save), installs, and reruns the tests: the
selection given or remembered, else the tests the picker finds for the saved files. Saves made
during a cycle are kept by watchfiles and make the next one. One line per cycle says what
happened and how long it took from the save to the result.

Builds never overlap: each cycle's build holds the build dir's lock (process/locking.py), so a
``vllm-dev build`` in another terminal waits, and this one waits for it. Between cycles the lock
is free. Ctrl-C stops the running build or test run as it would stop them outside the watcher
(installs are staged: no half-installed file, see installs/staged_install.py) and exits 130.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_dev.checkout.affected import built_before
from vllm_dev.commands.testloop.cycle import (
    CycleResult,
    Selection,
    TestOptions,
    build_request,
    installed_preset_line,
    run_cycle,
)
from vllm_dev.commands.testloop.pause import WholeBuild, pause_lines
from vllm_dev.commands.testloop.watchset import SaveDecision, WatchSet, watch_set
from vllm_dev.errors import VllmDevError
from vllm_dev.installs.components import components
from vllm_dev.planning.plan import resolve_plan
from vllm_dev.planning.workspace import Workspace
from vllm_dev.process.interrupts import Terminated
from vllm_dev.steps.cost import estimate_cost

if TYPE_CHECKING:
    from vllm_dev.steps.cost import CostBlock

#: How long the watcher waits after the last event of a burst before starting a cycle (ms).
STEP_MS = 30
#: The longest it groups events of one burst (ms), e.g. a `git checkout` of many files.
DEBOUNCE_MS = 1600
#: How long one wait in the Rust loop lasts before it is simply started again (ms).
TIMEOUT_MS = 5000


WorkspaceFactory = Callable[[], Workspace]


class Watcher:
    """The watch loop's state: what is watched, whether it is paused."""

    def __init__(self, make_ws: WorkspaceFactory, ws: Workspace, options: TestOptions,
                 selection: Selection) -> None:
        self.make_ws = make_ws
        self.ws = ws
        self.options = options
        self.selection = selection
        self.root = ws.checkout.root
        self.build_dir = ws.build_dir
        self.paused: WholeBuild | None = None
        self.watched: WatchSet | None = None
        self._files: frozenset[str] = frozenset()
        self._cycle_started = time.time_ns()  # the last cycle's start (see _watch)
        self._handled: dict[str, int | None] = {}  # file -> its mtime when a cycle took it
        self._always: list[str] = []  # the targets every cycle builds (see _targets)

    def run(self) -> int:
        """Never returns normally: Ctrl-C (KeyboardInterrupt) ends it, exit 130."""
        self._cycle_started = time.time_ns()
        first = run_cycle(self.ws, self.options, self.selection,
                          build_request(self.options, started_at=self.options.started_at))
        self._refresh()
        self._status("start", first)
        while True:
            self._watch()

    def _watch(self) -> None:
        """Watch the current directories until the watched set needs other ones.

        watchfiles' Rust backend (``RustNotify``, documented with watchfiles' API) rather than
        its ``watch()`` generator: the notifier must exist before the files saved while it was
        being made are looked for (their mtimes, against the last cycle's start), or a save
        made during the first build, or while the directories changed, would be missed."""
        from watchfiles._rust_notify import RustNotify

        assert self.watched is not None
        dirs = self.watched.dirs()
        polling = bool(os.environ.get("WATCHFILES_FORCE_POLLING"))
        with RustNotify(dirs, False, polling, 300, False, False) as notify:
            pending = self._saved_since(self._cycle_started)
            while True:
                if not pending:
                    pending = self._wait(notify)
                    if not pending:
                        continue
                saved_at = time.monotonic()
                self._saved(pending, saved_at)
                pending = []
                if self.watched.dirs() != dirs:
                    return  # new include directories: watch them too

    def _wait(self, notify: Any) -> list[str]:
        """The watched files of the next burst of events ([] on a timeout or other files)."""
        caught: list[int] = []

        def note(signum: int, frame: object) -> None:
            caught.append(signum)
            raise KeyboardInterrupt  # seen by the Rust loop, which returns "signal"

        previous = signal.signal(signal.SIGTERM, note)
        try:
            raw = notify.watch(DEBOUNCE_MS, STEP_MS, TIMEOUT_MS, None)
        finally:
            signal.signal(signal.SIGTERM, previous)
        if raw == "signal":
            if caught:
                raise Terminated(caught[-1])
            raise KeyboardInterrupt
        if not isinstance(raw, set):  # "timeout"
            return []
        found = {real for _, path in raw
                 if (real := os.path.realpath(path)) in self._files or path in self._files}
        return sorted(p for p in found if _mtime(p) != self._handled.get(p))

    def _saved_since(self, started_ns: int) -> list[str]:
        """Watched files written after ``started_ns`` (wall clock, ns)."""
        found = []
        for path in sorted(self._files):
            try:
                if os.stat(path).st_mtime_ns > started_ns:
                    found.append(path)
            except OSError:
                continue
        return found

    def _cost(self, decision: SaveDecision) -> CostBlock | None:
        """The cost block of the build a paused save would start, when its targets are known
        (not for a configure input: the graph changes with the configure)."""
        if not decision.targets or decision.pause is None:  # a configure input: no targets
            return None

        try:
            plan = resolve_plan(self.make_ws())
            return estimate_cost(plan, sorted(decision.targets))
        except VllmDevError:  # the pause line alone still says what matters
            return None

    def _saved(self, saved: list[str], saved_at: float) -> None:
        assert self.watched is not None
        names = ", ".join(self.watched.relative(p) for p in saved[:3]) + (
            f" and {len(saved) - 3} more" if len(saved) > 3 else "")
        if self.paused is not None:
            if self.watched.still_pending(self.paused):
                self.ws.say(f"still paused ({names} saved): "
                            f"{self.paused.reason}; build it in another terminal first")
                return
            self.ws.say("the paused change is built now: going on")
            self.paused = None
        decision = self.watched.decide(saved)
        if decision.pause is not None:
            self.paused = decision.pause
            for line in pause_lines(decision.pause, self._cost(decision)):
                self.ws.say(line)
            return
        self.ws.say(f"saved: {names}")
        targets = sorted(set(self._always) | decision.targets)
        self._cycle_started = time.time_ns()
        self._handled.update({p: _mtime(p) for p in saved})  # its events: this cycle's
        ws = self.make_ws()
        self.ws = ws
        rel = [self.watched.relative(p) for p in saved]
        result = run_cycle(ws, self.options, self.selection,
                           build_request(self.options, targets=tuple(targets)),
                           changed=rel, where="in this save")
        self._status(names, result, to_result=time.monotonic() - saved_at)
        self._refresh(recompiled=decision.reached)

    def _refresh(self, recompiled: frozenset[str] | None = None) -> None:
        """The watched set after a build: new headers (of the objects ``recompiled``, when the
        targets are the same), new targets (everything read again)."""
        built = self._targets()
        if recompiled is not None and self.watched is not None and \
                sorted(built) == sorted(self.watched.targets):
            try:
                self.watched.update(recompiled)
            except VllmDevError as exc:
                self.ws.say(f"watching the same files as before ({exc})")
            self._files = frozenset(self.watched.files)
            return
        try:
            self.watched = watch_set(self.root, self.build_dir, built)
        except VllmDevError as exc:
            if self.watched is None:
                raise VllmDevError(f"cannot watch {self.build_dir.name}: {exc}") from None
            self.ws.say(f"watching the same files as before ({exc})")
            return
        self._files = frozenset(self.watched.files)
        if not self._files:
            raise VllmDevError(f"nothing to watch: the targets {', '.join(built) or '(none)'} "
                               "have no source in the checkout")

    def _targets(self) -> list[str]:
        """The targets whose inputs are watched: --target's, else those this build dir builds
        (the selection remembered them), else, when nothing is built yet, every target."""
        known = components(self.build_dir)
        if self.options.targets:
            self._always = list(self.options.targets)
            return self._always
        before = built_before(self.build_dir)
        if before:
            self._always = [t for t in before if t in known]
            return self._always
        if before == []:  # a save builds the targets it reaches, not all of them
            if self.watched is None:
                self.ws.say("nothing is built in this build dir yet: watching the sources of "
                            "every target (a save of one builds its target)")
            self._always = []
        else:  # the build dir builds every target
            self._always = known
        return known

    def _status(self, what: str, result: CycleResult, *, to_result: float | None = None
                ) -> None:
        """The one line per cycle."""
        clock = time.strftime("%H:%M:%S")
        since = (f"; {to_result:.2f} s from the save to the result" if to_result is not None
                 else f"; {result.seconds:.1f} s")
        after = ("; waiting for the next save" if result.status else "")
        watched = len(self._files) if self._files else None
        files = f"; watching {watched} file(s)" if watched else ""
        self.ws.say(f"[{clock}] {what}: {result.summary()}{since}{after}{files}")
        line = installed_preset_line(self.ws, result)
        if line:
            self.ws.say(line)


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def watch(make_ws: WorkspaceFactory, ws: Workspace, options: TestOptions,
          selection: Selection) -> int:
    """Run the watcher (see the module's doc)."""
    return Watcher(make_ws, ws, options, selection).run()


def watched_files(root: Path, build_dir: Path, targets: list[str]) -> list[str]:
    """The watched files of ``targets``, relative to the checkout (for tests and bench)."""
    found = watch_set(root, build_dir, targets)
    return sorted(found.relative(p) for p in found.files)
