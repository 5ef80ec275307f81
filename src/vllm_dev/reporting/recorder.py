"""What a build cost, measured while it runs: time per phase, steps run, compiler-cache hits,
slowest files, peak memory. A :class:`Recorder` watches one ``vllm-dev build`` and writes its
:class:`~vllm_dev.reporting.build_report.BuildReport`.

Sources, each chosen because it needs nothing the user does not already have:

* phases: wall time measured around each step (configure, compile, install, verify...), from
  the start of the command (the process's own start time, read from /proc, so interpreter
  start-up counts) to its end; what no phase measured (locking, probes, writing the
  report) is the explicit phase ``other``, so the phases always add up to the total;
* failed steps: ninja's ``FAILED:`` lines and the first error line each printed (see
  progress.py), mapped to their source file;
* steps and per-file times: the ``.ninja_log`` lines ninja appended during this build (the log is
  read before the build; if ninja rewrote it meanwhile, the lines that are new are taken);
* cache hits/misses: ``ccache --print-stats`` before and after, subtracted. The user's counters
  are never zeroed; a concurrent build using the same cache directory would be counted in too;
* peak memory: ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest resident set of any *single*
  process vllm-dev waited for (directly or through cmake/ninja), i.e. the biggest compiler
  process, not the sum of the parallel jobs (that would need sampling /proc during the build).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from vllm_dev.caching.cache_stats import read_stats
from vllm_dev.caching.dist import DistStats
from vllm_dev.errors import VllmDevError
from vllm_dev.presets.render import build_environment
from vllm_dev.process.files import atomic_write_bytes
from vllm_dev.reporting.build_report import (
    REPORT_FILE,
    BuildReport,
    CacheDelta,
    FailedFile,
    SplitNote,
    save_report,
    timed_phases,
)
from vllm_dev.reporting.ninja_log import (
    OBJECT_SUFFIXES,
    LogMark,
    entries_since,
    slowest_units,
    source_of,
)
from vllm_dev.reporting.trace import build_timeline, chrome_trace, from_rows, to_rows
from vllm_dev.toolchain.tools import find_launcher

SLOWEST_IN_REPORT = 10


def process_started_at() -> float | None:
    """When this process started, on the :func:`time.monotonic` clock; None where unknown.

    Read from ``/proc/self/stat`` (field 22, clock ticks since boot, on the boot-time clock),
    so the report's total covers the interpreter's start-up and imports as the user's wall
    clock does. Linux only; elsewhere the total starts when the recorder is made. (psutil's
    create_time would read the same field: not worth a dependency, see process/interrupts.py.)"""
    try:
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):
        return None
    if not 0 <= age < 3600:  # a clock we misread: better no start-up than a wrong one
        return None
    return time.monotonic() - age


_active: Recorder | None = None  # the recorder of the build this process is running


def phase(name: str) -> AbstractContextManager[None]:
    """``with report.phase("verify"):`` times a step of the running build as phase ``name``,
    from any module, without passing the recorder around; outside a build it does nothing."""
    return _active.phase(name) if _active is not None else nullcontext()


class Recorder:
    """Collects the figures of one build; :meth:`finish` writes and returns the report.

    Time: ``with recorder.phase("name"):`` around any step adds its wall time to that phase
    (phases may nest; an inner phase's time counts for the inner phase only, so nothing is
    counted twice). The total runs from ``started_at`` (default: now) to :meth:`finish`; time
    before the recorder existed is ``start-up``, time in no phase is ``other``.

    ``ws`` describes the build: the :class:`~vllm_dev.planning.workspace.Workspace` while the plan
    is being resolved, then the :class:`~vllm_dev.planning.plan.BuildPlan` (the pipeline swaps it
    in). It is typed loosely because the recorder only reads what both answer: ``dry``,
    ``settings``, ``interpreter``, ``runner``, ``checkout``, ``build_dir``, ``say`` and, once
    planned, ``document`` and ``template``.
    """

    def __init__(self, ws: Any, *, json_path: Path | None = None,
                 started_at: float | None = None, trace_path: Path | None = None) -> None:
        self.ws = ws
        self.json_path = json_path
        self.trace_path = trace_path
        self.phases: dict[str, float] = {}
        self.configured = False
        self.configure = ""  # CONFIGURE_*
        self.build_dir: Path | None = None
        self.failed: list[FailedFile] = []
        self._inner: list[float] = []  # per open phase: time spent in phases nested in it
        now = time.monotonic()
        self._t0 = now if started_at is None else min(started_at, now)
        if now > self._t0:
            self.add("start-up", now - self._t0)
        self._started = time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                      time.localtime(time.time() - (now - self._t0)))
        self._log_mark: LogMark | None = None
        self._cache_before: Any = None
        self._cache_note = ""
        self._ccache: str | None = None
        self.selection: list[str] = []
        self.dist: DistStats | None = None  # set by commands/farm.py's farm_session
        self.split: Any = None  # host.parallelism.Split, set by the compile step (CUDA builds)
        # called with the report before its total is taken (work that belongs to the build)
        self.before_total: list[Callable[[BuildReport], None]] = []
        global _active
        _active = self

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the time of the ``with`` block as ``name`` (added up over repeated uses)."""
        start = time.monotonic()
        self._inner.append(0.0)
        try:
            yield
        finally:
            spent = time.monotonic() - start
            own = max(0.0, spent - self._inner.pop())
            self.phases[name] = self.phases.get(name, 0.0) + own
            if self._inner:  # the enclosing phase must not count this block again
                self._inner[-1] += spent

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` measured elsewhere to phase ``name`` (see :meth:`phase`)."""
        seconds = max(0.0, seconds)
        self.phases[name] = self.phases.get(name, 0.0) + seconds
        if self._inner:  # measured inside an open phase: that one must not count it again
            self._inner[-1] += seconds

    def elapsed(self) -> float:
        """Seconds since the command started."""
        return time.monotonic() - self._t0

    def compile_starting(self, build_dir: Path) -> None:
        """Note where the ninja log ends and read the cache counters, just before compiling."""
        self.build_dir = build_dir
        if self.ws.dry:
            return
        self._log_mark = LogMark.take(build_dir)
        self._cache_before = self._read_cache()

    def compile_finished(self, *, started: float, install_started: float | None,
                         failures: Sequence[Any] = ()) -> None:
        """Split the compile command's time (cmake's own install target counts as install) and
        note the steps that failed (:class:`vllm_dev.process.progress.FailedStep`)."""
        end = time.monotonic()
        if install_started is not None and started <= install_started <= end:
            self.add("compile", install_started - started)
            self.add("install", end - install_started)
        else:
            self.add("compile", end - started)
        for step in failures:
            for output in step.outputs or [""]:
                self.failed.append(FailedFile(source_of(output), output, step.error))

    def _ccache_path(self) -> str | None:
        if self._ccache is None and self.ws.settings.cache == "ccache":
            found = find_launcher("ccache", interpreter=self.ws.interpreter)
            self._ccache = str(found) if found else None
        return self._ccache

    def _read_cache(self) -> Any:
        cache = self.ws.settings.cache
        if cache != "ccache":
            self._cache_note = ("off (--cache none)" if cache == "none"
                                else f"hits not measured for {cache}")
            return None
        path = self._ccache_path()
        if path is None:
            self._cache_note = "ccache not found"
            return None
        try:
            return read_stats(path, runner=self.ws.runner, env=self._cache_env())
        except VllmDevError as exc:
            self._cache_note = f"statistics unreadable ({exc})"
            return None

    def _cache_env(self) -> dict[str, str] | None:
        """CCACHE_DIR/CCACHE_CONFIGPATH from the build preset's ``environment`` (with the
        configure preset's): cmake gives them to the build, so the statistics must be read from
        the same cache."""
        try:
            document = self.ws.document
            root = str(self.ws.checkout.root)
        except VllmDevError:
            return None
        env = build_environment(document, self.ws.template.name)
        wanted = {k: v.replace("${sourceDir}", root) for k, v in env.items()
                  if k in ("CCACHE_DIR", "CCACHE_CONFIGPATH") and "$" not in
                  v.replace("${sourceDir}", "")}
        return wanted or None

    def finish(self, *, exit_code: int) -> BuildReport | None:
        """Write the report (build dir, and ``--json FILE``) and print its summary."""
        global _active
        if _active is self:
            _active = None
        if self.ws.dry:
            return None
        if self.build_dir is None:  # failed before compiling: the report still has a home
            with suppress(VllmDevError):
                self.build_dir = self.ws.build_dir
        report = BuildReport(
            preset=self.ws.settings.preset,
            build_dir=str(self.build_dir or ""),
            started=self._started,
            exit_code=exit_code,
            configured=self.configured,
            configure=self.configure,
            peak_rss_kib=max_child_rss_kib(),
            cache_note=self._cache_note,
            failed=list(self.failed),
            selection=self.selection,
            split=(SplitNote(self.split.threads, self.split.cuda_units, self.split.why,
                             self.split.per_object, self.split.host_threads)
                   if self.split is not None else None),
        )
        if self.build_dir is not None and self._log_mark is not None:
            entries = entries_since(self.build_dir, self._log_mark)
            logged = {e.output for e in entries}
            failed = {f.output for f in self.failed if f.output not in logged}
            report.steps = len(entries) + len(failed)  # ninja logs only steps that succeeded
            report.compile_steps = (sum(1 for e in entries if e.is_object)
                                    + sum(1 for o in failed if o.endswith(OBJECT_SUFFIXES)))
            report.slowest = slowest_units(entries, SLOWEST_IN_REPORT)

            report.timeline = to_rows(build_timeline(self.build_dir, entries,
                                                     farm=self.dist is not None))
        if self._cache_before is not None:
            after = self._read_cache()
            if after is not None:
                delta = after - self._cache_before
                report.cache = CacheDelta("ccache", delta.hits, delta.misses)
        if self.dist is not None:
            report.dist = self.dist
            report.cache = CacheDelta("sccache", self.dist.hits, self.dist.misses)
        for hook in self.before_total:
            hook(report)
        # Last, so that the time spent reading the log and the cache is in the total too.
        total = self.elapsed()
        report.phases = timed_phases(self.phases, total)
        report.total_seconds = round(total, 3)
        self._save(report)
        for line in report.lines(selection=False):
            self.ws.say(line)
        if self.trace_path is not None:
            for path in write_report_trace(report, self.trace_path):
                self.ws.say(f"wrote {path}")
        return report

    def finish_quietly(self, *, exit_code: int) -> None:
        """:meth:`finish` while another error is on its way out: that error must win."""
        try:
            self.finish(exit_code=exit_code)
        except (VllmDevError, OSError) as exc:
            self.ws.say(f"no build report written: {exc}")

    def _save(self, report: BuildReport) -> None:
        if self.build_dir is not None and self.build_dir.is_dir():
            save_report(self.build_dir / REPORT_FILE, report)
        if self.json_path is not None:
            try:
                save_report(self.json_path, report, guard=False)  # the user's file, as asked
            except OSError as exc:
                raise VllmDevError(f"cannot write the report to {self.json_path}: "
                                   f"{exc.strerror}") from None


def max_child_rss_kib() -> int | None:
    """Largest resident set (KiB) of any child process waited for so far; None if unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    value = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        value //= 1024
    return int(value) or None


def write_report_trace(report: BuildReport, path: Path) -> list[Path]:
    """A stored report's timeline as Chrome trace JSON at ``path`` and SVG beside it (see
    reporting/trace.py); one line when it cannot be written."""
    steps = from_rows(report.timeline)
    if not steps:
        raise VllmDevError(f"the build of {report.started} has no timeline (it compiled nothing, "
                           "or vllm-dev was older): build first, then `vllm-dev report --trace`")
    title = f"vllm-dev build {report.preset}, {report.started}"
    details = {"total": f"{report.total_seconds:.1f} s",
               "split": report.split.line().removeprefix("split: ") if report.split else ""}
    try:
        return write_trace(path, steps, title=title, details=details)
    except OSError as exc:
        raise VllmDevError(f"cannot write the trace to {path}: {exc.strerror}") from None


def write_trace(path: Path, steps: list[Any], *, title: str, details: Mapping[str, Any],
                span_ms: int | None = None) -> list[Path]:
    """The Chrome trace JSON at ``path`` (``x.svg`` given: ``x.json``) and the same timeline as
    SVG beside it (``x.svg``); returns the two paths."""
    # lazy (only --trace draws): tests/test_lazy_imports.py
    from vllm_dev.reporting.timeline_svg import render_svg

    path = path.with_suffix(".json") if path.suffix == ".svg" else path
    svg = path.with_suffix(".svg")
    atomic_write_bytes(path, json.dumps(chrome_trace(steps, title=title, details=details))
                       .encode())
    atomic_write_bytes(svg, render_svg(steps, title=title, details=details, span_ms=span_ms)
                       .encode())
    return [path, svg]
