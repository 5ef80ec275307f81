#!/usr/bin/env python3
"""The timeline picture (Chrome trace JSON + SVG, as ``vllm-dev report --trace`` writes it) of a
build kept as files: a copy of its ``.ninja_log`` (the last ninja run in it, or ``--runs all``)
and, optionally, ccache's per-compile log of it (``vllm-dev-ccache.log``) for the cache-hit
marks. For builds measured elsewhere (the GPU machine's runs under bench/results/).

    python bench/trace_from_logs.py --ninja-log ninja_log_edit_split.txt \\
        --ccache-log ccache_log_edit_split.txt --title "after" docs/edit-after.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vllm_dev.reporting.ninja_log import parse_ninja_log, split_runs  # noqa: E402
from vllm_dev.reporting.recorder import write_trace  # noqa: E402
from vllm_dev.reporting.trace import cache_marks, summary, timeline  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ninja-log", type=Path, required=True)
    parser.add_argument("--ccache-log", type=Path)
    parser.add_argument("--runs", choices=("last", "all"), default="last")
    parser.add_argument("--title", default="build timeline")
    parser.add_argument("--span", type=float, metavar="SECONDS",
                        help="the SVG's time axis (to draw two builds on one scale)")
    parser.add_argument("--detail", action="append", default=[], metavar="NAME=TEXT")
    parser.add_argument("output", type=Path, help="the .json file (the .svg goes beside it)")
    args = parser.parse_args()
    runs = split_runs(parse_ninja_log(args.ninja_log.read_text()))
    entries = runs[-1] if args.runs == "last" and runs else [e for r in runs for e in r]
    marks = cache_marks(args.ccache_log.read_text()) if args.ccache_log else {}
    steps = timeline(entries, marks=marks)
    details = dict(d.split("=", 1) for d in args.detail)
    span = int(args.span * 1000) if args.span else None
    for path in write_trace(args.output, steps, title=args.title, details=details, span_ms=span):
        print(f"wrote {path}")
    print(summary(steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
