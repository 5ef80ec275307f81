"""``vllm-dev report``: the last build's report again, or every translation unit ranked by
compile time. The report itself is :mod:`vllm_dev.reporting`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vllm_dev.config.settings import positive_int
from vllm_dev.reporting.build_report import dumps, load_last
from vllm_dev.reporting.ninja_log import rank_build_dir, render_ranking
from vllm_dev.reporting.recorder import write_report_trace


def run_report(ws: Any, *, slowest: int | str | None = None, as_json: bool = False,
               trace: Path | None = None) -> None:
    """``vllm-dev report``: the last report again, or ``--slowest N`` over the whole log;
    ``--trace FILE`` writes the last build's timeline (Chrome trace JSON, and SVG beside it)."""
    build_dir = ws.build_dir
    if trace is not None:
        for path in write_report_trace(load_last(build_dir), trace):
            print(f"wrote {path}")
        return
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
