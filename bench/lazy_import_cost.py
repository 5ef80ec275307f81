#!/usr/bin/env python3
"""What one import kept inside a function saves a command: the median milliseconds that importing
a module adds on top of everything the command loads anyway (the figures quoted in
tests/test_lazy_imports.py's LAZY table).

The command (``vllm-dev`` words, run by the given venv in ``--cwd``) is run once with a hook that
writes down every module it loaded; then, ``--repeat`` times for each candidate, a fresh
interpreter imports that list (the command's own modules after the third-party ones) and times
the candidate's import alone.

    python bench/lazy_import_cost.py --venv /tmp/lazy/venv-b --cwd /tmp/lazy/p/vllm \\
        --words=--help vllm_dev.presets.render vllm_dev.caching.dist
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import tempfile
from pathlib import Path

RECORD = """
import atexit, sys
out = sys.argv[1]
sys.argv = ["vllm-dev", *sys.argv[2:]]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from vllm_dev_frontends.program import main
main()
"""

TIME = """
import importlib, sys, time
names = open(sys.argv[1]).read().split()
for own in (False, True):  # third-party and stdlib first, then vllm-dev's own modules
    for name in names:
        if name.startswith("vllm_dev") == own and name != "__main__":
            try:
                importlib.import_module(name)
            except Exception:
                pass
start = time.perf_counter()
importlib.import_module(sys.argv[2])
print((time.perf_counter() - start) * 1000)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--cwd", type=Path, default=Path.cwd())
    parser.add_argument("--words", default="--help", help="the vllm-dev command line, quoted")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("candidates", nargs="+")
    args = parser.parse_args()
    python = str(args.venv / "bin" / "python")
    with tempfile.TemporaryDirectory() as tmp:
        loaded = Path(tmp, "modules")
        subprocess.run([python, "-c", RECORD, str(loaded), *shlex.split(args.words)],
                       cwd=args.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        already = set(loaded.read_text().split())
        print(f"# vllm-dev {args.words}: {len(already)} modules loaded; load "
              f"{os.getloadavg()[0]:.2f}; median of {args.repeat}")
        for name in args.candidates:
            if name in already:
                print(f"{name}: loaded by the command anyway")
                continue
            times = [float(subprocess.run([python, "-c", TIME, str(loaded), name],
                                          capture_output=True, text=True, check=True).stdout)
                     for _ in range(args.repeat)]
            print(f"{name}: {statistics.median(times):.2f} ms "
                  f"(min {min(times):.2f}, max {max(times):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
