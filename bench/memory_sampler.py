#!/usr/bin/env python3
"""Run a command and sample the memory of its whole process tree: the *sum* of every process's
resident set (what the machine must hold while parallel compilers and nvcc's split threads run),
and the largest single process, every ``--interval`` seconds.

Why by hand: the sum over a changing tree is what the parallelism model budgets (not ru_maxrss,
which is one process), psutil is not on every machine these benches run on, and /proc has it.
A sum of RSS counts pages shared between processes more than once, so it errs high, on the safe
side for a budget. Prints one JSON line at the end (and writes it to ``--json``):
``{"rc", "wall_s", "peak_sum_mib", "peak_single_mib", "samples"}``.

    python bench/memory_sampler.py --json mem.json -- vllm-dev build --target _moe_C_stable_libtorch
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, rss KiB) of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            with open(f"/proc/{entry}/statm") as f:
                rss_pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry)] = (ppid, rss_pages * os.sysconf("SC_PAGE_SIZE") // 1024)
    return table


def tree_rss(root: int) -> tuple[int, int]:
    """(sum, largest) RSS in KiB of ``root`` and all its descendants."""
    table = _table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total = largest = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        if pid in table:
            rss = table[pid][1]
            total += rss
            largest = max(largest, rss)
        pending += children.get(pid, [])
    return total, largest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    peaks = {"sum": 0, "single": 0, "samples": 0}
    start = time.monotonic()
    proc = subprocess.Popen(command)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total, largest = tree_rss(proc.pid)
            peaks["sum"] = max(peaks["sum"], total)
            peaks["single"] = max(peaks["single"], largest)
            peaks["samples"] += 1
            stop.wait(args.interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    rc = proc.wait()
    stop.set()
    thread.join()
    result = {"rc": rc, "wall_s": round(time.monotonic() - start, 3),
              "peak_sum_mib": round(peaks["sum"] / 1024, 1),
              "peak_single_mib": round(peaks["single"] / 1024, 1),
              "samples": peaks["samples"], "interval_s": args.interval,
              "command": command}
    line = json.dumps(result)
    print(f"memory_sampler: {line}", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(line + "\n")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
