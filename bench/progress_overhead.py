#!/usr/bin/env python3
"""Benchmark: what the live progress display costs, against ninja on a terminal by itself.

Not a test: it prints a table and writes JSON (``--json``). Three figures, medians of
``--repeat`` rounds, the variants alternating within each round:

* ``steps``: a real ninja build of ``--steps`` trivial edges (``touch``), ``-j2``, on a
  pseudo-terminal, read by (a) a loop that discards the bytes (ninja alone, the baseline),
  (b) vllm-dev's line splitter and :class:`PlainDisplay`, (c) the splitter and the rich bar.
  The difference is the per-line cost of the display (many short steps: its worst case);
* ``idle``: CPU seconds the bar's refresh thread uses per second while ninja prints nothing
  (a vLLM object compiles for minutes: the bar must stay cheap while it waits);
* ``bar start``: importing rich and opening the bar, in a fresh interpreter (paid once per
  build on a terminal; plain output never imports rich). It depends on rich's ``.pyc`` files
  being on disk: with ``PYTHONDONTWRITEBYTECODE=1`` and none written, rich is compiled anew
  every time (0.39 s against 0.06 s measured on the 2-core machine).

    python bench/progress_overhead.py
    python bench/progress_overhead.py --steps 500 --repeat 7 --json bench/results/x.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vllm_dev.process.progress import NINJA_STATUS_FORMAT, BarDisplay, PlainDisplay  # noqa: E402
from vllm_dev.process.streaming import run_streaming  # noqa: E402


def ninja() -> str:
    found = shutil.which("ninja") or str(Path(sys.executable).parent / "ninja")
    if not Path(found).exists():
        sys.exit("progress_overhead: ninja not found: install the ninja wheel")
    return found


def write_build(directory: Path, steps: int) -> None:
    lines = ["rule touch", "  command = touch $out",
             "  description = Building CXX object CMakeFiles/_C.dir/csrc/f$out.cpp.o"]
    lines += [f"build {i}: touch" for i in range(steps)]
    (directory / "build.ninja").write_text("\n".join(lines) + "\n")


def clean(directory: Path, steps: int) -> None:
    for i in range(steps):
        (directory / str(i)).unlink(missing_ok=True)
    (directory / ".ninja_log").unlink(missing_ok=True)


def run_raw(directory: Path, env: dict[str, str]) -> None:
    """ninja on a pty whose output is read and dropped: the terminal cost without vllm-dev."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([ninja(), "-j2"], cwd=directory, env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    while True:
        try:
            if not os.read(master, 65536):
                break
        except OSError:
            break
    os.close(master)
    proc.wait()


def run_display(directory: Path, env: dict[str, str], kind: str) -> None:
    sink = io.StringIO()
    if kind == "bar":
        from rich.console import Console

        display: Any = BarDisplay(console=Console(file=sink, force_terminal=True, width=160))
    else:
        display = PlainDisplay(out=sink)
    try:
        code = run_streaming([ninja(), "-j2"], on_line=display.line, cwd=directory, env=env,
                             pseudo_terminal=True)
    finally:
        display.close()
    assert code == 0


def idle_cpu(seconds: float) -> float:
    """CPU seconds per wall second of this process while the bar is up and nothing arrives."""
    from rich.console import Console

    display = BarDisplay(console=Console(file=io.StringIO(), force_terminal=True, width=160))
    display.line("[0/9|1] Building CUDA object CMakeFiles/_C.dir/csrc/slow.cu.o")
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    display.close()
    return cpu / wall


def bar_start() -> float:
    code = ("import time; t = time.monotonic(); import io; from rich.console import Console; "
            "from vllm_dev.process.progress import BarDisplay; "
            "d = BarDisplay(console=Console(file=io.StringIO(), force_terminal=True)); "
            "took = time.monotonic() - t; d.close(); print(took)")  # the bar redirects stdout
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of the idle figure")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    env = {**os.environ, "NINJA_STATUS": NINJA_STATUS_FORMAT, "TERM": "xterm"}
    times: dict[str, list[float]] = {"ninja alone": [], "plain display": [], "bar display": []}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_build(directory, args.steps)
        for round_no in range(args.repeat):
            order = list(times)
            if round_no % 2:
                order.reverse()
            for name in order:
                clean(directory, args.steps)
                start = time.monotonic()
                if name == "ninja alone":
                    run_raw(directory, env)
                else:
                    run_display(directory, env, "bar" if name.startswith("bar") else "plain")
                times[name].append(time.monotonic() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    idle = statistics.median(idle_cpu(args.idle) for _ in range(3))
    start = statistics.median(bar_start() for _ in range(args.repeat))
    base = medians["ninja alone"]
    print(f"{args.steps} trivial ninja steps on a pty, -j2, median of {args.repeat}:")
    for name, value in medians.items():
        extra = value - base
        print(f"  {name:<14} {value:7.3f} s   +{extra:6.3f} s   "
              f"({extra / args.steps * 1000:.2f} ms per step, 2 lines each)")
    print(f"bar idle: {idle * 100:.2f} % of one CPU while ninja is silent")
    print(f"bar start (import rich, open the bar): {start:.3f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "load_average": os.getloadavg(),
                        # Set, and no .pyc files on disk, rich is compiled on every start.
                        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE")},
            "steps": args.steps, "repeat": args.repeat, "runs": times, "medians": medians,
            "bar_idle_cpu_fraction": idle, "bar_start_seconds": start,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
