#!/usr/bin/env python3
"""Benchmark and proof: the post-build load check, torch's libraries only ("light") vs a full
``import torch`` ("1"), on given extension files in a given interpreter.

Not a test. For the GPU machine (CUDA torch, where ``import torch`` also preloads CUDA libraries
itself): does the light load answer on its own (no error, so no confirming full import), and
what does each mode cost? Alternates the modes, prints medians and each mode's answer.

    python bench/check_light_vs_full.py --python /path/venv/bin/python \\
        vllm/_moe_C_stable_libtorch.abi3.so vllm/cumem_allocator.abi3.so --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vllm_dev.steps.verify import _CHECKER  # noqa: E402


def run(python: str, items: str, mode: str) -> tuple[float, dict[str, object]]:
    start = time.monotonic()
    done = subprocess.run([python, "-c", _CHECKER, items, mode], capture_output=True, text=True)
    took = time.monotonic() - start
    for line in done.stdout.splitlines():
        if line.startswith("VLLM_DEV_VERIFY "):
            answer: dict[str, object] = json.loads(line.split(" ", 1)[1])
            return took, answer
    return took, {"crashed": done.returncode, "stderr": done.stderr[-2000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    items = json.dumps([["vllm." + Path(f).name.split(".")[0], str(Path(f).resolve())]
                        for f in args.files])
    times: dict[str, list[float]] = {"light": [], "1": []}
    answers: dict[str, dict[str, object]] = {}
    for round_ in range(args.repeat):
        for mode in (("light", "1") if round_ % 2 == 0 else ("1", "light")):
            took, answer = run(args.python, items, mode)
            times[mode].append(took)
            answers[mode] = answer
    for mode, label in (("light", "torch libraries only"), ("1", "full import torch")):
        print(f"{label}: median {statistics.median(times[mode]):.2f} s over {args.repeat} "
              f"(raw {', '.join(f'{t:.2f}' for t in times[mode])})")
        print(f"  answer: {json.dumps(answers[mode])}")
    light = answers["light"]
    files = light.get("files") if isinstance(light, dict) else None
    ok = light.get("mode") == "light" and isinstance(files, dict) and all(
        isinstance(v, dict) and v.get("error") is None for v in files.values())
    print("light mode answered on its own (no confirming import needed)" if ok else
          "light mode did NOT answer on its own: builds pay for a confirming full import")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
