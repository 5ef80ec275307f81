#!/usr/bin/env python3
"""Benchmark: what the post-build check and the install cost in a one-file edit loop.

Not a test. On a copy of the test project whose target venv has the CPU torch wheel (so that
``import torch`` costs what it costs users), it alternates one-file edits of ``_fast_C`` built by
each given ``vllm-dev`` executable (e.g. the current one and an older checkout's), and reports per
tool the median wall time of ``vllm-dev build --plain --json F`` and the phases its report shows.
It also times the checks alone, in the target interpreter, cold:

* ``old-style``: ``import torch`` then ``importlib.import_module`` of every installed extension
  (runs ``vllm/__init__.py``);
* ``new-style``: ``import torch`` then ``spec_from_file_location`` of the one changed extension.

    python bench/check_cost.py --torch-wheel /opt/wheels/torch-2.13.0+cpu-...whl \\
        --tool new=.venv/bin/vllm-dev --tool old=/tmp/vd-old/.venv/bin/vllm-dev --repeat 5

``--cmake X`` installs that PyPI cmake into the target venv first; ``--without-local-only`` drops
vLLM's ``CMAKE_INSTALL_LOCAL_ONLY`` line from the copy (vllm-dev before its install record cannot
install with it, whatever the CMake). Results go to ``--json``.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import minivllm_tools as mv  # noqa: E402

OLD_STYLE = ("import importlib, sys\nimport torch\n"
             "for n in sys.argv[1:]:\n    importlib.import_module(n)\n")
NEW_STYLE = ("import importlib.util, sys\nimport torch\n"
             "s = importlib.util.spec_from_file_location(sys.argv[1], sys.argv[2])\n"
             "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n")


def env_for(ccache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VLLM_DEV_", "INVOKE_", "CCACHE_")) and k != "VIRTUAL_ENV"}
    env.update({"VLLM_TARGET_DEVICE": "cpu", "CCACHE_DIR": str(ccache), "NO_COLOR": "1"})
    return env


def timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.monotonic() - start


def _with_value(source: Path, value: int) -> None:
    import re

    source.write_text(re.sub(r"FromLong\(\d+\)", f"FromLong({value})", source.read_text(),
                             count=1))


def prepare(base: Path, exe: str, *, args: argparse.Namespace, uv: str,
            env: dict[str, str]) -> Path:
    root = mv.copy_project(base / "vllm")
    if args.without_local_only:
        cmakelists = root / "CMakeLists.txt"
        line = 'install(CODE "set(CMAKE_INSTALL_LOCAL_ONLY TRUE)" ALL_COMPONENTS)\n'
        assert line in cmakelists.read_text()
        cmakelists.write_text(cmakelists.read_text().replace(line, ""))
    python = mv.make_venv(root / ".venv")
    subprocess.run([exe, "setup"], cwd=root, env=env, check=True, capture_output=True)
    subprocess.run([uv, "pip", "install", "-q", "-p", str(python), "--find-links",
                    str(Path(args.torch_wheel).parent), args.torch_wheel], check=True)
    if args.cmake:
        subprocess.run([uv, "pip", "install", "-q", "-p", str(python),
                        f"cmake=={args.cmake}"], check=True)
    timed([exe, "build", "--plain"], cwd=root, env=env)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", action="append", required=True, metavar="NAME=VLLM_DEV")
    parser.add_argument("--torch-wheel", required=True)
    parser.add_argument("--cmake", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--without-local-only", action="store_true",
                        help="drop vLLM's install(CODE CMAKE_INSTALL_LOCAL_ONLY) line from the "
                             "copy: vllm-dev before the install record cannot install with it")
    args = parser.parse_args()
    tools = dict(t.split("=", 1) for t in args.tool)
    uv = mv.find_uv()
    with tempfile.TemporaryDirectory(prefix="vd-check-bench-") as tmp:
        base = Path(tmp)
        env = env_for(base / "ccache")
        # One copy per tool (each tool's state in its own build dir), alike in every other way.
        roots = {name: prepare(base / name, exe, args=args, uv=uv, env=env)
                 for name, exe in tools.items()}
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in tools}
        value = 100
        for round_ in range(args.repeat):
            order = list(tools.items())
            if round_ % 2:
                order.reverse()
            for name, exe in order:
                root = roots[name]
                value += 1  # new content every run: a real compile (ccache misses)
                source = root / "csrc" / "fast" / "module_fast.cpp"
                _with_value(source, value)
                report = base / f"{name}-{round_}.json"
                wall = timed([exe, "build", "--plain", "--json", str(report)], cwd=root, env=env)
                data = json.loads(report.read_text())
                samples[name].append({"wall": wall, "reported_total": data["total_seconds"],
                                      **data["phases"]})
        root = next(iter(roots.values()))
        python = root / ".venv" / "bin" / "python"
        ext = [str(p) for p in sorted((root / "vllm").glob("*.abi3.so"))]
        modules = ["vllm." + Path(p).name.split(".")[0] for p in ext]
        checks: dict[str, list[float]] = {"old-style": [], "new-style": [], "python+torch": [],
                                          "light": []}
        from vllm_dev.steps.verify import _CHECKER

        items = json.dumps([["vllm._fast_C", str(root / "vllm" / "_fast_C.abi3.so")]])
        for _ in range(args.repeat):
            checks["old-style"].append(timed([str(python), "-c", OLD_STYLE, *modules],
                                             cwd=root, env=env))
            checks["new-style"].append(timed([str(python), "-c", NEW_STYLE, "vllm._fast_C",
                                              str(root / "vllm" / "_fast_C.abi3.so")],
                                             cwd=root, env=env))
            checks["light"].append(timed([str(python), "-c", _CHECKER, items, "light"],
                                         cwd=root, env=env))
            checks["python+torch"].append(timed([str(python), "-c", "import torch"],
                                                cwd=root, env=env))
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0]},
        "repeat": args.repeat, "cmake": args.cmake,
        "builds": {name: {key: statistics.median(s[key] for s in runs)
                          for key in sorted({k for s in runs for k in s})}
                   for name, runs in samples.items()},
        "checks_alone": {name: statistics.median(v) for name, v in checks.items()},
        "raw": {"builds": samples, "checks_alone": checks},
    }
    for name, med in result["builds"].items():
        phases = ", ".join(f"{k} {v:.2f}" for k, v in med.items() if k not in ("wall",))
        print(f"{name}: one-file edit of _fast_C, median wall {med['wall']:.2f} s ({phases})")
    for name, sec in result["checks_alone"].items():
        print(f"check alone, {name}: median {sec:.2f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
