#!/usr/bin/env python3
"""Benchmark: one vllm-dev command from two vllm-dev installs, run alternately (A/B).

For a change to vllm-dev itself: ``--a`` and ``--b`` are two ``vllm-dev`` executables (say main's
venv and a branch's), each run in a checkout of its own (``--a-project``/``--b-project``, set up
and built once beforehand: two installs must not share a build dir, since each renders its own
ccache path into the presets). Every round runs both, alternating which goes first; the medians
are printed. A run that configured (``cmake --preset`` in its output) fails the benchmark: the
command is meant to be timed in its steady state. Not a test.

    python bench/ab_commands.py --a /main/.venv-dev/bin/vllm-dev --a-project /tmp/a/vllm \\
        --b .venv-dev/bin/vllm-dev --b-project /tmp/b/vllm -- build --plain
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for side in ("a", "b"):
        parser.add_argument(f"--{side}", required=True, help=f"vllm-dev executable {side}")
        parser.add_argument(f"--{side}-project", required=True, help=f"checkout for {side}")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("command", nargs="+", help="the vllm-dev command, after --")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    sides = {"a": (args.a, args.a_project), "b": (args.b, args.b_project)}
    times: dict[str, list[float]] = {"a": [], "b": []}
    for round_ in range(args.repeat):
        for side in ("ab" if round_ % 2 == 0 else "ba"):
            exe, cwd = sides[side]
            start = time.monotonic()
            done = subprocess.run([exe, *args.command], cwd=cwd, env=env, capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL, check=False)
            times[side].append(time.monotonic() - start)
            if done.returncode != 0 or "cmake --preset" in done.stderr:
                print(f"{side}: {exe} {' '.join(args.command)} exited {done.returncode} or "
                      f"configured:\n{done.stderr[-2000:]}", file=sys.stderr)
                return 1
    for side, runs in times.items():
        print(f"{side}: median {statistics.median(runs):.3f} s, min {min(runs):.3f} s, "
              f"n={len(runs)} ({sides[side][0]})")
    print(f"b/a (medians): {statistics.median(times['b']) / statistics.median(times['a']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
