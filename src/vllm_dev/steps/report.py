"""What a build cost: time per phase, steps run, compiler-cache hits, slowest files, peak memory.

A :class:`Recorder` watches one ``vllm-dev build`` and writes a :class:`BuildReport` into the build
dir (``vllm-dev-report.json``), so ``vllm-dev report`` can show it again, and, with ``--json
FILE``, wherever CI wants it. A report is written for failed builds too: a failure is when people
most want to know what happened.

Sources, each chosen because it needs nothing the user does not already have:

* phases: wall time measured around each step (configure, compile, install, verify...), from
  the start of the command (the process's own start time, read from /proc, so interpreter
  start-up counts) to its end; what no phase measured (locking, probes, writing the
  report) is the explicit phase ``other``, so the phases always add up to the total;
* failed steps: ninja's ``FAILED:`` lines and the first error line each printed (see
  progress.py), mapped to their source file;
* steps and per-file times: the ``.ninja_log`` lines ninja appended during this build (the file's
  size is noted before the build; if ninja rewrote the log meanwhile, the latest run in it is
  taken instead);
* cache hits/misses: ``ccache --print-stats`` before and after, subtracted. The user's counters
  are never zeroed; a concurrent build using the same cache directory would be counted in too;
* peak memory: ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest resident set of any *single*
  process vllm-dev waited for (directly or through cmake/ninja), i.e. the biggest compiler
  process, not the sum of the parallel jobs (that would need sampling /proc during the build).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vllm_dev.caching.dist import DistStats
from vllm_dev.errors import VllmDevError

REPORT_FILE = "vllm-dev-report.json"
NINJA_LOG = ".ninja_log"
# Phases in the order a build usually runs them; others (``recorder.phase("x")``) follow.
PHASES = ("start-up", "checks", "waiting for lock", "configure", "select", "compile", "install",
          "verify")
OTHER = "other"
SLOWEST_IN_REPORT = 10
# A broken header fails every file that includes it: the summary names the first few.
FAILED_IN_SUMMARY = 5
ERROR_IN_SUMMARY = 300
_OBJECT_SUFFIXES = (".o", ".obj")
_TARGET_DIR_RE = re.compile(r"^(?:.*/)?CMakeFiles/([^/]+)\.dir/(.+)$")


# ----------------------------------------------------------------------------- .ninja_log


@dataclass(frozen=True)
class NinjaEntry:
    """One line of ``.ninja_log``: a step's start and end (ms since its ninja run began)."""

    start_ms: int
    end_ms: int
    output: str

    @property
    def seconds(self) -> float:
        return max(0, self.end_ms - self.start_ms) / 1000.0

    @property
    def is_object(self) -> bool:
        return self.output.endswith(_OBJECT_SUFFIXES)


def parse_ninja_log(text: str) -> list[NinjaEntry]:
    """Entries of a ``.ninja_log`` text (versions 5 to 7 share the first four columns)."""
    entries = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 4 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        entries.append(NinjaEntry(int(parts[0]), int(parts[1]), parts[3]))
    return entries


def latest_run(entries: list[NinjaEntry]) -> list[NinjaEntry]:
    """The entries of the last ninja run: start times restart from 0 with every run."""
    run: list[NinjaEntry] = []
    previous = None
    for entry in entries:
        if previous is not None and entry.start_ms < previous:
            run = []
        run.append(entry)
        previous = entry.start_ms
    return run


def log_size(build_dir: Path) -> int:
    try:
        return (build_dir / NINJA_LOG).stat().st_size
    except OSError:
        return 0


def entries_since(build_dir: Path, offset: int) -> list[NinjaEntry]:
    """What ninja appended to the log after it was ``offset`` bytes long."""
    path = build_dir / NINJA_LOG
    try:
        data = path.read_bytes()
    except OSError:
        return []
    if len(data) < offset:  # ninja recompacted the log: fall back to its last run
        return latest_run(parse_ninja_log(data.decode(errors="replace")))
    return parse_ninja_log(data[offset:].decode(errors="replace"))


@dataclass(frozen=True)
class UnitTime:
    """Compile time of one translation unit."""

    source: str
    target: str
    seconds: float
    output: str


def unit_of(entry: NinjaEntry) -> UnitTime:
    """``CMakeFiles/_C.dir/csrc/ops/add.cpp.o`` -> source ``csrc/ops/add.cpp``, target ``_C``."""
    match = _TARGET_DIR_RE.match(entry.output)
    target, rest = (match.group(1), match.group(2)) if match else ("", entry.output)
    for suffix in _OBJECT_SUFFIXES:
        if rest.endswith(suffix):
            rest = rest[: -len(suffix)]
            break
    return UnitTime(rest, target, entry.seconds, entry.output)


def source_of(output: str) -> str:
    """The source file a ninja output was compiled from (the output itself if not an object)."""
    if not output.endswith(_OBJECT_SUFFIXES):
        return output
    return unit_of(NinjaEntry(0, 0, output)).source


def slowest_units(entries: list[NinjaEntry], limit: int | None = None) -> list[UnitTime]:
    """Translation units by compile time, slowest first; a unit built twice counts once (last)."""
    last: dict[str, NinjaEntry] = {}
    for entry in entries:
        if entry.is_object:
            last[entry.output] = entry
    units = sorted((unit_of(e) for e in last.values()), key=lambda u: (-u.seconds, u.source))
    return units if limit is None else units[:limit]


def rank_build_dir(build_dir: Path, limit: int) -> list[UnitTime]:
    """Every translation unit the build dir's ``.ninja_log`` knows, slowest first."""
    path = build_dir / NINJA_LOG
    if not path.is_file():
        raise VllmDevError(f"{path} does not exist: run `vllm-dev build` first (ninja writes it)")
    return slowest_units(parse_ninja_log(path.read_text(errors="replace")), limit)


# ----------------------------------------------------------------------------- peak memory


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


# ----------------------------------------------------------------------------- the report


@dataclass
class CacheDelta:
    """Compiler-cache counters of this build only (after minus before)."""

    tool: str
    hits: int
    misses: int
    note: str = ""

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclass
class FailedFile:
    """A step that failed: the file it compiled (or its output), and its first error line."""

    source: str
    output: str
    error: str = ""


# What the build did about configuring, for the summary.
CONFIGURE_RAN = "ran"
CONFIGURE_NOT_NEEDED = "not needed"
CONFIGURE_FAILED = "failed"


@dataclass
class BuildReport:
    preset: str
    build_dir: str
    started: str
    exit_code: int = 0
    configured: bool = False
    phases: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    steps: int = 0
    compile_steps: int = 0
    configure: str = ""  # CONFIGURE_*; "" when the build stopped before it
    failed: list[FailedFile] = field(default_factory=list)
    cache: CacheDelta | None = None
    cache_note: str = ""
    slowest: list[UnitTime] = field(default_factory=list)
    peak_rss_kib: int | None = None
    dist: DistStats | None = None  # --dist: where the compiles ran (dist.py)
    selection: list[str] = field(default_factory=list)  # which targets were built, and why
    peak_rss_measures: str = ("largest resident set of any single process of the build "
                              "(getrusage RUSAGE_CHILDREN ru_maxrss), not the sum of parallel jobs")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["kind"] = "vllm-dev build report"
        data["version"] = 1
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildReport:
        cache = data.get("cache")
        return cls(
            preset=str(data.get("preset", "")),
            build_dir=str(data.get("build_dir", "")),
            started=str(data.get("started", "")),
            exit_code=int(data.get("exit_code", 0)),
            configured=bool(data.get("configured", False)),
            configure=str(data.get("configure", CONFIGURE_RAN if data.get("configured")
                                   else CONFIGURE_NOT_NEEDED)),
            failed=[FailedFile(**f) for f in data.get("failed") or []],
            phases=ordered_phases({str(k): float(v)
                                   for k, v in (data.get("phases") or {}).items()}),
            total_seconds=float(data.get("total_seconds", 0.0)),
            steps=int(data.get("steps", 0)),
            compile_steps=int(data.get("compile_steps", 0)),
            cache=CacheDelta(**cache) if isinstance(cache, dict) else None,
            cache_note=str(data.get("cache_note", "")),
            slowest=[UnitTime(**u) for u in data.get("slowest") or []],
            peak_rss_kib=data.get("peak_rss_kib"),
            dist=DistStats(**dist) if isinstance(dist := data.get("dist"), dict) else None,
            selection=[str(line) for line in data.get("selection") or []],
        )

    def lines(self, *, selection: bool = True) -> list[str]:
        """The report as a few human lines (what a build prints at its end, without the target
        selection it said before compiling)."""
        state = "ok" if self.ok else f"FAILED (exit code {self.exit_code})"
        phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.phases.items())
        note = {CONFIGURE_NOT_NEEDED: " (no configure needed)",
                CONFIGURE_FAILED: " (configure failed)"}.get(self.configure, "")
        out = [f"build {self.preset} {state} in {self.total_seconds:.2f} s: {phases}{note}"]
        compiles = f"{self.compile_steps} compile(s)"
        failed_objects = sum(1 for f in self.failed if f.output.endswith(_OBJECT_SUFFIXES))
        if failed_objects:
            compiles += f" ({failed_objects} failed)"
        parts = [f"{self.steps} ninja step(s), {compiles}"]
        if self.cache is not None:
            rate = self.cache.hit_rate
            shown = f"{rate:.0%}" if rate is not None else "n/a"
            parts.append(f"{self.cache.tool}: {self.cache.hits} hit(s), {self.cache.misses} "
                         f"miss(es) ({shown} hit rate)")
        elif self.cache_note:
            parts.append(f"compiler cache: {self.cache_note}")
        if self.peak_rss_kib:
            parts.append(f"peak memory {self.peak_rss_kib / 1024:.0f} MiB (largest single "
                         "process)")
        out.append("; ".join(parts))
        if self.dist is not None:
            out.append(self.dist.line())
        if self.slowest:
            top = ", ".join(f"{u.source} {u.seconds:.1f} s" for u in self.slowest[:3])
            out.append(f"slowest: {top}")
        if self.selection and selection:
            out.append(f"targets: {self.selection[0]}")
        for failed in self.failed[:FAILED_IN_SUMMARY]:
            error = failed.error
            if len(error) > ERROR_IN_SUMMARY:  # a template error can run for pages
                error = error[:ERROR_IN_SUMMARY - 3] + "..."
            out.append(f"failed: {failed.source}" + (f": {error}" if error else ""))
        if len(self.failed) > FAILED_IN_SUMMARY:
            out.append(f"failed: {len(self.failed) - FAILED_IN_SUMMARY} more step(s) (see the "
                       "FAILED: blocks above, or `vllm-dev report --json`)")
        return out


def load_last(build_dir: Path) -> BuildReport:
    from vllm_dev.checkout.state import read_json

    path = build_dir / REPORT_FILE
    data = read_json(path)
    if data is None:
        raise VllmDevError(f"no build report in {build_dir}: run `vllm-dev build` first")
    try:
        return BuildReport.from_json(data)
    except (TypeError, ValueError) as exc:
        raise VllmDevError(f"{path} is not a build report ({exc}): run `vllm-dev build` "
                           "to write a new one") from None


# ----------------------------------------------------------------------------- recording


def process_started_at() -> float | None:
    """When this process started, on the :func:`time.monotonic` clock; None where unknown.

    Read from ``/proc/self/stat`` (field 22, clock ticks since boot, on the boot-time clock),
    so the report's total covers the interpreter's start-up and imports as the user's wall
    clock does. Linux only; elsewhere the total starts when the recorder is made."""
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

    ``ws`` is a :class:`vllm_dev.flow.workspace.Workspace` (typed loosely: the recorder only reads
    ``runner``, ``settings``, ``interpreter``, ``template``, ``say``).
    """

    def __init__(self, ws: Any, *, json_path: Path | None = None,
                 started_at: float | None = None) -> None:
        self.ws = ws
        self.json_path = json_path
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
        self._log_offset: int | None = None
        self._cache_before: Any = None
        self._cache_note = ""
        self._ccache: str | None = None
        self.selection: list[str] = []
        self.dist: DistStats | None = None  # set by dist.farm_session
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
        self._log_offset = log_size(build_dir)
        self._cache_before = self._read_cache()

    def steps_run(self) -> int:
        """Ninja steps this build has run so far (1 when unknown: assume something changed)."""
        if self.build_dir is None or self._log_offset is None:
            return 1
        return len(entries_since(self.build_dir, self._log_offset))

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
            from vllm_dev.toolchain.tools import find_launcher

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
            from vllm_dev.caching.cache_stats import read_stats

            return read_stats(path, runner=self.ws.runner, env=self._cache_env())
        except VllmDevError as exc:
            self._cache_note = f"statistics unreadable ({exc})"
            return None

    def _cache_env(self) -> dict[str, str] | None:
        """CCACHE_DIR/CCACHE_CONFIGPATH from the preset's ``environment``: cmake gives them to the
        build, so the statistics must be read from the same cache."""
        try:
            document = self.ws.document
            root = str(self.ws.checkout.root)
        except VllmDevError:
            return None
        env = preset_environment(document, self.ws.template.name)
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
        )
        if self.build_dir is not None and self._log_offset is not None:
            entries = entries_since(self.build_dir, self._log_offset)
            logged = {e.output for e in entries}
            failed = {f.output for f in self.failed if f.output not in logged}
            report.steps = len(entries) + len(failed)  # ninja logs only steps that succeeded
            report.compile_steps = (sum(1 for e in entries if e.is_object)
                                    + sum(1 for o in failed if o.endswith(_OBJECT_SUFFIXES)))
            report.slowest = slowest_units(entries, SLOWEST_IN_REPORT)
        if self._cache_before is not None:
            after = self._read_cache()
            if after is not None:
                delta = after - self._cache_before
                report.cache = CacheDelta("ccache", delta.hits, delta.misses)
        if self.dist is not None:
            report.dist = self.dist
            report.cache = CacheDelta("sccache", self.dist.hits, self.dist.misses)
        # Last, so that the time spent reading the log and the cache is in the total too.
        total = self.elapsed()
        report.phases = timed_phases(self.phases, total)
        report.total_seconds = round(total, 3)
        self._save(report)
        for line in report.lines(selection=False):
            self.ws.say(line)
        return report

    def finish_quietly(self, *, exit_code: int) -> None:
        """:meth:`finish` while another error is on its way out: that error must win."""
        try:
            self.finish(exit_code=exit_code)
        except (VllmDevError, OSError) as exc:
            self.ws.say(f"no build report written: {exc}")

    def _save(self, report: BuildReport) -> None:
        from vllm_dev.checkout.state import write_json

        data = report.to_json()
        if self.build_dir is not None and self.build_dir.is_dir():
            write_json(self.build_dir / REPORT_FILE, data)
        if self.json_path is not None:
            try:
                write_json(self.json_path, data)
            except OSError as exc:
                raise VllmDevError(f"cannot write the report to {self.json_path}: "
                                   f"{exc.strerror}") from None


def ordered_phases(phases: dict[str, float]) -> dict[str, float]:
    """The phases in running order (known ones first, then others, ``other`` last): the JSON
    file stores them sorted by name."""
    order = [name for name in PHASES if name in phases]
    order += [name for name in phases if name not in PHASES and name != OTHER]
    order += [OTHER] if OTHER in phases else []
    return {name: phases[name] for name in order}


def timed_phases(phases: dict[str, float], total: float) -> dict[str, float]:
    """The phases in running order, rounded, with ``other`` making them add up to ``total``."""
    shown = {name: round(seconds, 3) for name, seconds in ordered_phases(phases).items()
             if name != OTHER}
    shown[OTHER] = round(max(0.0, total - sum(phases[name] for name in shown)), 3)
    return shown


def preset_environment(document: dict[str, Any], name: str) -> dict[str, str]:
    """The ``environment`` a configure preset ends up with, following ``inherits`` (own wins)."""
    presets = {p.get("name"): p for p in document.get("configurePresets", [])
               if isinstance(p, dict)}
    merged: dict[str, str] = {}
    seen: set[str] = set()

    def visit(preset_name: str) -> None:
        preset = presets.get(preset_name)
        if preset is None or preset_name in seen:
            return
        seen.add(preset_name)
        parents = preset.get("inherits", [])
        for parent in reversed([parents] if isinstance(parents, str) else list(parents)):
            visit(parent)
        for key, value in (preset.get("environment") or {}).items():
            if value is not None:
                merged[str(key)] = str(value)

    visit(name)
    return merged


def render_ranking(units: list[UnitTime]) -> list[str]:
    """``vllm-dev report --slowest N`` as aligned text lines."""
    if not units:
        return ["no compiled translation units in the ninja log"]
    width = max(len(u.source) for u in units)
    return [f"{i:>3}. {u.seconds:8.2f} s  {u.source:<{width}}  {u.target}"
            for i, u in enumerate(units, 1)]


def dumps(report: BuildReport) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=True)


def run_report(ws: Any, *, slowest: int | str | None = None, as_json: bool = False) -> None:
    """``vllm-dev report``: the last report again, or ``--slowest N`` over the whole log."""
    from vllm_dev.config.settings import positive_int

    build_dir = ws.build_dir
    if slowest not in (None, ""):
        count = positive_int(slowest, "--slowest")
        for line in render_ranking(rank_build_dir(build_dir, count)):
            print(line)
        return
    report = load_last(build_dir)
    if as_json:
        print(dumps(report))
        return
    print(f"last build of {report.build_dir} (started {report.started}):")
    for line in report.lines():
        print(f"  {line}")
    if report.slowest:
        print("slowest translation units of that build:")
        for line in render_ranking(report.slowest):
            print(f"  {line}")
