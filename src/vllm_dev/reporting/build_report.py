"""What a build cost, as data: :class:`BuildReport`, stored as ``vllm-dev-report.json`` in the
build dir (and, with ``--json FILE``, wherever CI wants it). A report is written for failed
builds too: a failure is when people most want to know what happened. The figures are gathered by
:mod:`vllm_dev.reporting.recorder`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vllm_dev.caching.dist import DistStats
from vllm_dev.errors import VllmDevError
from vllm_dev.host.parallelism import Split
from vllm_dev.reporting.ninja_log import OBJECT_SUFFIXES, UnitTime
from vllm_dev.state import layout, records

REPORT_FILE = layout.REPORT
FORMAT = records.Format("build report", "vllm-dev build report", 1)
# Phases in the order a build usually runs them; others (``recorder.phase("x")``) follow.
PHASES = ("start-up", "checks", "waiting for lock", "configure", "select", "split", "compile",
          "install", "verify")
OTHER = "other"
# A broken header fails every file that includes it: the summary names the first few.
FAILED_IN_SUMMARY = 5
ERROR_IN_SUMMARY = 300


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


@dataclass
class SplitNote:
    """The split of this build's CUDA units over idle cores (host/parallelism.Split)."""

    threads: int
    cuda_units: int
    why: str
    per_object: bool = False  # threads chosen per object (host/split_launcher.py)
    host_threads: int = 0  # ``-t`` beside the split for nvcc's host front end (0: none)

    def line(self) -> str:
        """The line the build said (host/parallelism.Split's, from the stored fields)."""
        return Split(self.threads, self.cuda_units, self.why, self.per_object,
                     self.host_threads).line()


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
    # CUDA builds: the -split-compile threads each unit got (1: none), for how many units, why
    split: SplitNote | None = None
    # The steps on job-slot lanes: [start_ms, end_ms, output, mark] (reporting/trace.py)
    timeline: list[list[Any]] = field(default_factory=list)
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
            split=SplitNote(**split) if isinstance(split := data.get("split"), dict) else None,
            timeline=[list(row) for row in data.get("timeline") or [] if isinstance(row, list)],
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
        failed_objects = sum(1 for f in self.failed if f.output.endswith(OBJECT_SUFFIXES))
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
        if self.split is not None and (self.split.threads > 1 or selection):
            out.append(self.split.line())
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


def read_report(path: Path) -> BuildReport | None:
    """The report at ``path``; None when there is none, it was damaged (set aside), or a newer
    vllm-dev wrote it (said in one line, kept)."""
    return records.load(FORMAT, path, BuildReport.from_json).value


def save_report(path: Path, report: BuildReport, *, guard: bool = True) -> None:
    """Write ``report`` (``guard``: not over a newer vllm-dev's, which is kept, in one line)."""
    data = report.to_json()
    for key in ("kind", "version"):
        data.pop(key)
    records.save(FORMAT, path, data, guard=guard)


def load_last(build_dir: Path) -> BuildReport:
    report = read_report(build_dir / REPORT_FILE)
    if report is None:
        raise VllmDevError(f"no build report in {build_dir}: run `vllm-dev build` first")
    return report


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


def dumps(report: BuildReport) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=True)
