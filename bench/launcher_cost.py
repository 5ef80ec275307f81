#!/usr/bin/env python3
"""What host/split_launcher.py adds to each compile: one compile command through the launcher
(a thread plan present, the object in it) against the same command run directly, alternating,
``--repeat`` times each; medians in milliseconds. The command is ``/bin/true`` so that only the
launcher's own cost is measured (Python's start, reading the plan, the exec).

    python bench/launcher_cost.py --repeat 200 --json bench/results/launcher-cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vllm_dev.host.split_launcher import KIND, PLAN_FILE  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    src = str(Path(__file__).resolve().parent.parent / "src")
    with tempfile.TemporaryDirectory() as tmp:
        objects = {f"CMakeFiles/t.dir/csrc/k{i}.cu.o": 4 for i in range(120)}  # a big plan
        Path(tmp, PLAN_FILE).write_text(json.dumps({"kind": KIND, "objects": objects}))
        env = {**os.environ, "PYTHONPATH": src}
        target = ["/bin/true", "-c", "k7.cu", "-o", "CMakeFiles/t.dir/csrc/k7.cu.o"]
        launched = [sys.executable, "-m", "vllm_dev.host.split_launcher", *target]
        times: dict[str, list[float]] = {"direct": [], "launcher": []}
        for _ in range(args.repeat):
            for name, argv in (("direct", target), ("launcher", launched)):
                start = time.perf_counter()
                subprocess.run(argv, cwd=tmp, env=env, check=True)
                times[name].append((time.perf_counter() - start) * 1000)
    result = {name: round(statistics.median(v), 2) for name, v in times.items()}
    result["added_ms"] = round(result["launcher"] - result["direct"], 2)
    result.update(repeat=args.repeat, python=platform.python_version(),
                  cpus=os.cpu_count(), load=round(os.getloadavg()[0], 2))
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
