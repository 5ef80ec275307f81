"""The build's timeline (issue 21): job-slot lanes from .ninja_log, cache-hit marks from ccache's
stats log, Chrome trace JSON that trace viewers accept, and a self-contained SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vllm_dev.reporting.ninja_log import parse_ninja_log
from vllm_dev.reporting.recorder import write_trace
from vllm_dev.reporting.trace import (
    FARM,
    HIT,
    MISS,
    cache_marks,
    chrome_trace,
    from_rows,
    timeline,
    to_rows,
)

from conftest import Project

DATA = Path(__file__).parent / "data"
SVG = "{http://www.w3.org/2000/svg}"


def _lanes_never_overlap(steps: list) -> None:
    by_lane: dict[int, list] = {}
    for step in steps:
        by_lane.setdefault(step.lane, []).append(step)
    for lane_steps in by_lane.values():
        lane_steps.sort(key=lambda s: s.start_ms)
        for a, b in zip(lane_steps, lane_steps[1:], strict=False):
            assert a.end_ms <= b.start_ms, (a, b)


@pytest.mark.unit
def test_lanes_from_a_real_log_with_out_of_order_steps() -> None:
    entries = parse_ninja_log((DATA / "ninja_log_cuda_two_runs.txt").read_text())
    steps = timeline(entries)
    assert len(steps) == 12
    _lanes_never_overlap(steps)
    # The build ran with -j 2 here: two job slots are enough (never more than 2 overlap).
    assert {s.lane for s in steps} == {0, 1}
    # The second ninja run is laid after the first, never on top of it.
    by_start = sorted(steps, key=lambda s: s.start_ms)
    assert max(s.end_ms for s in by_start[:10]) == 359
    assert min(s.start_ms for s in by_start[10:]) >= 359
    assert [s.kind for s in steps if s.output.endswith("saxpy.cu.o")] == ["CUDA", "CUDA"]
    assert from_rows(to_rows(steps)) == steps


@pytest.mark.unit
def test_cache_marks_from_ccaches_stats_log() -> None:
    log = ("# /src/vllm/csrc/cuda/saxpy.cu\ndirect_cache_hit\nlocal_storage_hit\n"
           "# /src/vllm/csrc/ops/add.cpp\ncache_miss\ndirect_cache_miss\n"
           "# /src/vllm/csrc/x.cpp\ncalled_for_link\n")
    marks = cache_marks(log)
    assert marks == {"/src/vllm/csrc/cuda/saxpy.cu": HIT, "/src/vllm/csrc/ops/add.cpp": MISS,
                     "/src/vllm/csrc/x.cpp": "not cacheable"}
    entries = parse_ninja_log((DATA / "ninja_log_cuda_two_runs.txt").read_text())
    steps = timeline(entries, marks=marks)
    made = {s.output.rsplit("/", 1)[-1]: s.mark for s in steps}
    assert made["saxpy.cu.o"] == HIT and made["add.cpp.o"] == MISS
    assert made["_C.abi3.so"] == ""  # links are not compiles
    assert {s.mark for s in timeline(entries, farm=True) if s.kind != "link"} == {FARM}


@pytest.mark.unit
def test_trace_json_and_svg_are_valid(tmp_path: Path) -> None:
    entries = parse_ninja_log((DATA / "ninja_log_cuda_two_runs.txt").read_text())
    steps = timeline(entries)
    trace = chrome_trace(steps, title="t", details={"total": "1.7 s"})
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(slices) == 12
    for event in slices:  # what the trace viewers require of a complete event
        assert {"name", "ph", "ts", "dur", "pid", "tid"} <= set(event)
        assert isinstance(event["ts"], int) and event["dur"] > 0
    names = [e for e in trace["traceEvents"] if e.get("name") == "thread_name"]
    assert {e["args"]["name"] for e in names} == {"job slot 1", "job slot 2"}
    written = write_trace(tmp_path / "t.json", steps, title="a <build> & more",
                          details={"split": "-split-compile=2"})
    assert written == [tmp_path / "t.json", tmp_path / "t.svg"]
    assert json.loads(written[0].read_text())["traceEvents"]
    svg = ET.parse(written[1]).getroot()  # well-formed XML, names escaped
    assert svg.tag == f"{SVG}svg"
    bars = [g for g in svg.iter(f"{SVG}g") if g.find(f"{SVG}rect") is not None]
    assert len(bars) == 12
    assert "a <build> & more" in "".join(svg.itertext())
    assert write_trace(tmp_path / "u.svg", steps, title="t", details={})[0].suffix == ".json"


def test_build_and_report_write_the_trace(project: Project, tmp_path: Path) -> None:
    """A real build of the test project with --trace, then a clean rebuild whose compiles are
    all cache hits, its trace written by `report --trace` afterwards."""
    first = project.run("build", "--plain", "--trace", str(tmp_path / "cold.json"))
    assert f"wrote {tmp_path / 'cold.svg'}" in first.stderr, first.stderr
    cold = json.loads((tmp_path / "cold.json").read_text())
    compiles = [e for e in cold["traceEvents"] if e["ph"] == "X" and "C++" in e["cat"]]
    assert len(compiles) == 4 and all("compiled" in e["cat"] for e in compiles)
    project.run("clean")
    project.run("build", "--plain")
    done = project.run("report", "--trace", str(tmp_path / "warm.json"))
    assert str(tmp_path / "warm.svg") in done.stdout
    warm = json.loads((tmp_path / "warm.json").read_text())
    hits = [e for e in warm["traceEvents"] if e["ph"] == "X" and "cache hit" in e["cat"]]
    assert len(hits) == 4
    ET.parse(tmp_path / "warm.svg")
