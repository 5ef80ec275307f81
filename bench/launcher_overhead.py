#!/usr/bin/env python3
"""Benchmark: what vllm-dev's compiler launcher (.vllm-dev/compiler-launcher) costs per compile.

Every compile goes ``launcher -> ccache -> compiler`` instead of ``ccache -> compiler`` since the
presets name one stable launcher (caching/launcher.py). This times, alternating in one run, the
same compile both ways: a trivial C file (``-c``, so the compile itself is short and the launcher's
share is as large as it gets), with ccache hits (a warm private cache: the case where the launcher
matters most, a hit takes milliseconds) and with the cache off (``CCACHE_DISABLE=1``: a real
compile each time). It prints the medians and the difference per compile. Not a test.

    python bench/launcher_overhead.py --repeat 200 --json bench/results/launcher.json
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vllm_dev.caching import launcher  # noqa: E402


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    ccache = shutil.which("ccache", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                         f"{os.environ.get('PATH', '')}")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not ccache or not cc:
        print("needs ccache and a C compiler", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="vllm-dev-launcher-bench-"))
    try:
        script = launcher.write_launcher(work / ".vllm-dev")
        (work / "t.c").write_text("int f(int x) { return x * 3 + 1; }\n")
        compile_ = [cc, "-O2", "-c", "t.c", "-o", "t.o"]
        results: dict[str, dict[str, float]] = {}
        for case, extra in (("ccache hit", {}), ("cache off", {"CCACHE_DISABLE": "1"})):
            env = {**os.environ, "CCACHE_DIR": str(work / "ccache"), **extra,
                   launcher.CACHE_ENV: ccache}
            timed([ccache, *compile_], env, work)  # warm the cache and the page cache
            direct: list[float] = []
            through: list[float] = []
            for i in range(args.repeat):
                order = [(direct, [ccache, *compile_]), (through, [str(script), *compile_])]
                for samples, cmd in order if i % 2 == 0 else order[::-1]:
                    samples.append(timed(cmd, env, work))
            d, t = statistics.median(direct), statistics.median(through)
            results[case] = {"direct_ms": d * 1e3, "launcher_ms": t * 1e3,
                             "difference_ms": (t - d) * 1e3}
            print(f"{case:>10}: ccache {d * 1e3:.2f} ms, launcher -> ccache {t * 1e3:.2f} ms, "
                  f"difference {(t - d) * 1e3:+.2f} ms per compile (medians of {args.repeat})")
        if args.json:
            args.json.write_text(json.dumps({
                "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(),
                "cpus": os.cpu_count(), "repeat": args.repeat, "sh": os.path.realpath(
                    "/bin/sh"), "results": results}, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
