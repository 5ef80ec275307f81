#!/usr/bin/env python3
"""Benchmark: a Nox build session (``nox -R -s release``) of two vllm-dev trees, side by side.

For a change to the session's flow (``src/vllm_dev_frontends/nox_flow.py`` and what it calls):
each ``--noxfile`` (the first is "a", the second "b"; e.g. a checkout of main and a branch) gets
its own copy of the test project and its own nox envdir, runs the session once from scratch, and
then both are timed alternately (and alternating which goes first, so a machine that speeds up or
slows down hurts both alike) on two cases, ``--repeat`` times each; medians are reported:

* ``noop``     ``nox -R -s release`` with nothing to do (no setup, no configure, no compile);
* ``onefile``  the same after one source changed (new content every run: a compiler cache miss).

The wall time is the whole ``nox`` process, as a user waits for it; the session's own phase
times come from its ``vllm-dev: elapsed: ...`` line. Not a test: it prints a table and writes JSON.

    python bench/nox_session.py --noxfile /tmp/main/noxfile.py --noxfile noxfile.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import minivllm_tools as mv  # noqa: E402

ELAPSED_RE = re.compile(r"vllm-dev: elapsed: (.*?); total")
PHASE_RE = re.compile(r"([a-z ]+) (\d+\.\d) s")
SOURCE = "csrc/module_C.cpp"


def env_for(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INVOKE_", "VLLM_DEV_", "CCACHE_")) and k not in
           ("VIRTUAL_ENV", "MAX_JOBS", "NVCC_THREADS", "CMAKE_BUILD_PARALLEL_LEVEL")}
    env.update({"CCACHE_DIR": str(work / "ccache"), "VLLM_TARGET_DEVICE": "cpu",
                "NO_COLOR": "1"})
    return env


def session(noxfile: Path, root: Path, envdir: Path, env: dict[str, str], *,
            reuse: bool) -> tuple[float, dict[str, float]]:
    argv = [sys.executable, "-m", "nox", "-f", str(noxfile), "--envdir", str(envdir),
            *(["-R"] if reuse else []), "-s", "release", "--", "--source", str(root)]
    start = time.monotonic()
    done = subprocess.run(argv, cwd=root, env=env, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=1800, check=False)
    wall = time.monotonic() - start
    out = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}\n{out[-3000:]}")
    found = ELAPSED_RE.findall(out)
    phases = {name.strip(): float(sec) for name, sec in PHASE_RE.findall(found[-1])} \
        if found else {}
    return wall, phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noxfile", action="append", type=Path, required=True,
                        help="noxfile.py of a vllm-dev tree (give two)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("nox-session-bench.json"))
    args = parser.parse_args(argv)
    if len(args.noxfile) != 2:
        parser.error("give --noxfile twice")
    work = Path(tempfile.mkdtemp(prefix="vllm-dev-nox-bench-"))
    env = env_for(work)
    trees = {}
    for label, noxfile in zip("ab", args.noxfile, strict=True):
        root = mv.copy_project(work / label / "vllm")
        envdir = work / label / "nox-envs"
        wall, _ = session(noxfile.resolve(), root, envdir, env, reuse=False)
        print(f"{label}: first session {wall:.1f} s ({noxfile})", file=sys.stderr)
        trees[label] = (noxfile.resolve(), root, envdir)
    samples: dict[str, dict[str, list[tuple[float, dict[str, float]]]]] = {
        case: {"a": [], "b": []} for case in ("noop", "onefile")}
    for round_ in range(args.repeat):
        order = "ab" if round_ % 2 == 0 else "ba"
        for case in samples:
            for label in order:
                noxfile, root, envdir = trees[label]
                if case == "onefile":
                    path = root / SOURCE
                    path.write_text(path.read_text() + f"\n// bench {time.time_ns()}\n")
                samples[case][label].append(session(noxfile, root, envdir, env, reuse=True))
    result: dict[str, object] = {"noxfiles": {k: str(v[0]) for k, v in trees.items()},
                                 "repeat": args.repeat, "cases": {}}
    print(f"{'case':8} {'a median s':>11} {'b median s':>11} {'b/a':>6}  phases (b, median)")
    for case, by in samples.items():
        med = {label: statistics.median(w for w, _ in runs) for label, runs in by.items()}
        names = sorted({n for _, ph in by["b"] for n in ph})
        phases = {n: statistics.median(ph.get(n, 0.0) for _, ph in by["b"]) for n in names}
        print(f"{case:8} {med['a']:11.2f} {med['b']:11.2f} {med['b'] / med['a']:6.2f}  "
              + ", ".join(f"{n} {s:.1f}" for n, s in phases.items()))
        result["cases"][case] = {  # type: ignore[index]
            "median_s": med, "ratio_b_over_a": med["b"] / med["a"],
            "runs_s": {label: [w for w, _ in runs] for label, runs in by.items()},
            "phases": {label: [ph for _, ph in runs] for label, runs in by.items()}}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}; work dir {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
