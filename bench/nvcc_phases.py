#!/usr/bin/env python3
"""nvcc's own phase times (``-time``) for one translation unit's compile command, run alone, in
several variants of the environment's ``NVCC_APPEND_FLAGS`` (how vllm-dev passes the split; the
command line, and so the compiler-cache key, stays the one in compile_commands.json).

For each variant: the wall time, nvcc's per-phase times (summed per phase; with
``-split-compile`` the parts of cicc/ptxas run in parallel, so their sum is CPU time, not wall),
the object's size (``size``) and a hash of its SASS (``cuobjdump -sass``: the object's bytes
differ from run to run anyway, nvcc embeds temporary file names). Once, ``--dryrun`` of the
plain command (the list of nvcc's steps). Not a test: prints a table, writes JSON.

    python bench/nvcc_phases.py --db BUILD/compile_commands.json --source csrc/moe/x.cu \\
        --out DIR --variant none= --variant split16=-split-compile=16
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

PARALLEL = ("cicc", "ptxas", "nvlink")  # the steps -split-compile spreads over threads


def command_for(db: Path, source: str) -> tuple[list[str], Path]:
    for entry in json.loads(db.read_text()):
        if entry["file"].endswith(source):
            argv = entry.get("arguments") or shlex.split(entry["command"])
            while argv and ("ccache" in Path(argv[0]).name or "sccache" in Path(argv[0]).name):
                argv = argv[1:]  # a launcher, if CMake wrote one
            return argv, Path(entry["directory"])
    raise SystemExit(f"{source} is not in {db}")


def retarget(argv: list[str], out: Path) -> list[str]:
    """The command writing its object and depfile under ``out`` (the build's own stay)."""
    result, skip = [], None
    for i, arg in enumerate(argv):
        if skip == i:
            continue
        if arg in ("-o", "-MF") and i + 1 < len(argv):
            result += [arg, str(out / ("unit.o" if arg == "-o" else "unit.d"))]
            skip = i + 1
        else:
            result.append(arg)
    return result


def phases(path: Path) -> dict[str, dict[str, float]]:
    sums: dict[str, dict[str, float]] = defaultdict(lambda: {"ms": 0.0, "count": 0})
    with path.open() as handle:
        rows = list(csv.reader(handle))
    for row in rows[1:]:
        if len(row) < 8:
            continue
        name = row[1].strip() or "(unnamed)"
        try:
            ms = float(row[6])
        except ValueError:
            continue
        sums[name]["ms"] += ms
        sums[name]["count"] += 1
    return dict(sums)


def sass_hash(obj: Path) -> str:
    if not shutil.which("cuobjdump"):
        return "no cuobjdump"
    done = subprocess.run(["cuobjdump", "-sass", str(obj)], capture_output=True, check=False)
    return hashlib.sha256(done.stdout).hexdigest()[:16] if done.returncode == 0 else \
        f"cuobjdump exit {done.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=FLAGS")
    args = parser.parse_args()
    argv, cwd = command_for(args.db, args.source)
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"nvcc-phases-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k != "NVCC_APPEND_FLAGS"}
    (args.out / "nvcc_command.txt").write_text(shlex.join(argv) + "\n")
    dry = subprocess.run([*retarget(argv, scratch), "--dryrun"], cwd=cwd, env=base,
                         capture_output=True, text=True, check=False)
    (args.out / "nvcc_dryrun.txt").write_text(dry.stdout + dry.stderr)
    results = []
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        csv_path = args.out / f"nvcc_time_{name}.csv"
        csv_path.unlink(missing_ok=True)
        env = dict(base)
        if flags:
            env["NVCC_APPEND_FLAGS"] = flags
        cmd = [*retarget(argv, scratch), "-time", str(csv_path)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              check=False)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            print(f"{name}: nvcc exit {done.returncode}\n{done.stderr[-3000:]}", file=sys.stderr)
        obj = scratch / "unit.o"
        size = subprocess.run(["size", str(obj)], capture_output=True, text=True,
                              check=False).stdout.splitlines()[-1:] if obj.exists() else []
        found = phases(csv_path) if csv_path.exists() else {}
        serial = sum(v["ms"] for k, v in found.items()
                     if not k.startswith(PARALLEL) and not k.startswith("nvcc (driver)"))
        result = {"variant": name, "NVCC_APPEND_FLAGS": flags, "exit": done.returncode,
                  "wall_s": round(wall, 2), "phases_ms": found,
                  "serial_phases_s": round(serial / 1000, 2),
                  "object_size": size[0].split()[:3] if size else None,
                  "sass_sha256_16": sass_hash(obj) if obj.exists() else None}
        results.append(result)
        line = ", ".join(f"{k} {v['ms'] / 1000:.2f} s" + (f" (x{v['count']})" if v["count"] > 1
                                                          else "") for k, v in found.items())
        print(f"{name} [{flags or 'no flags'}]: wall {wall:.2f} s; serial phases "
              f"{serial / 1000:.2f} s; {line}; size {result['object_size']}; sass "
              f"{result['sass_sha256_16']}", flush=True)
        obj.unlink(missing_ok=True)
    (args.out / "nvcc_phases.json").write_text(json.dumps(
        {"source": args.source, "directory": str(cwd), "nproc": os.cpu_count(),
         "results": results}, indent=2) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
