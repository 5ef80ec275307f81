#!/usr/bin/env python3
"""What the console script pays before it does anything: the import of the program module
(``vllm_dev_frontends.program``; ``-X importtime``, the cumulative microseconds of that one
top-level import) and the wall and CPU time of ``vllm-dev --help``, ``vllm-dev build --help``,
``vllm-dev --dry build`` and a no-op ``vllm-dev build --plain`` in a set-up, built project; two
installs (A and B, e.g. a branch and its base) run in turn, A B A B ..., so a drift of the shared
machine's speed hits both; medians in milliseconds (CPU: user + system, steadier than wall time
when other work shares the cores).

Each side is a venv with vllm-dev installed non-editable and byte-compiled
(``uv pip install --compile-bytecode``): the import cost measured is loading modules, not
compiling them on every start (this machine sets PYTHONDONTWRITEBYTECODE=1).

    python bench/startup_imports.py --a /tmp/lazy/venv-a --b /tmp/lazy/venv-b \\
        --project /tmp/lazy/p/vllm --runs 15 --json bench/results/startup-imports.json

The project is the bundled example (tests/minivllm) copied, ``vllm-dev setup`` and one
``vllm-dev build`` run in it (CPU: VLLM_TARGET_DEVICE=cpu).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import time
from pathlib import Path

PROBE = "import vllm_dev_frontends.program"
#: Modules whose presence after ``import vllm_dev_frontends.program`` is worth a line.
WATCHED = ("rich", "jsonschema", "filelock", "packaging", "watchfiles", "urllib.request",
           "difflib", "shlex", "invoke", "nox", "uv")


def import_us(python: Path) -> int:
    """Cumulative microseconds of the probe's import, from ``-X importtime``."""
    done = subprocess.run([str(python), "-X", "importtime", "-c", PROBE], capture_output=True,
                          text=True, check=True)
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*vllm_dev_frontends\.program$", line)
        if match:
            return int(match.group(1))
    raise SystemExit(f"no import time line for the probe from {python}")


def loaded(python: Path) -> dict[str, object]:
    """How many modules the probe loads, and which of the watched ones."""
    code = (f"{PROBE}; import sys, json; print(json.dumps([len(sys.modules), "
            f"[m for m in {WATCHED!r} if m in sys.modules]]))")
    count, present = json.loads(subprocess.run([str(python), "-c", code], capture_output=True,
                                               text=True, check=True).stdout)
    return {"modules": count, "watched_loaded": present}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_ms(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one run. CPU time moves less than wall
    time when other work shares the machine's two cores: both are kept."""
    cpu = _children_cpu_s()
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return (time.perf_counter() - start) * 1000, (_children_cpu_s() - cpu) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="venv A (e.g. the branch)")
    parser.add_argument("--b", type=Path, required=True, help="venv B (e.g. the base)")
    parser.add_argument("--project", type=Path, required=True, help="a set-up, built project")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    commands = {"--help": ["--help"], "build --help": ["build", "--help"],
                "--dry build": ["--dry", "build"], "build (no-op)": ["build", "--plain"]}
    sides = {"A": args.a, "B": args.b}
    load_before = round(os.getloadavg()[0], 2)
    names = ["import", *commands, *(f"{c} cpu" for c in commands)]
    raw: dict[str, dict[str, list[float]]] = {s: {n: [] for n in names} for s in sides}
    for _ in range(args.runs):
        for side, venv in sides.items():
            raw[side]["import"].append(import_us(venv / "bin" / "python") / 1000)
            for name, words in commands.items():
                wall, cpu = timed_ms([str(venv / "bin" / "vllm-dev"), *words], args.project)
                raw[side][name].append(wall)
                raw[side][f"{name} cpu"].append(cpu)
    result: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "runs": args.runs,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "load_before": load_before, "load_after": round(os.getloadavg()[0], 2),
        "sides": {s: str(v) for s, v in sides.items()},
        "median_ms": {s: {k: round(statistics.median(v), 1) for k, v in raw[s].items()}
                      for s in sides},
        "loaded": {s: loaded(v / "bin" / "python") for s, v in sides.items()},
        "raw_ms": {s: {k: [round(x, 1) for x in v] for k, v in raw[s].items()} for s in sides},
    }
    print(json.dumps({k: result[k] for k in ("median_ms", "load_before", "load_after")}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
