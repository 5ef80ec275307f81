"""A compiler launcher that gives each CUDA object its own ``-split-compile`` threads.

Why a launcher: ``NVCC_APPEND_FLAGS`` (how the split reaches nvcc without a configure, see
steps/build.py) holds one value for a whole ninja run, so every CUDA object of a build gets the
same split. In a cold or large build the objects differ by minutes, and the longest ones set
the wall time: they should get the threads, the short ones not. Only something in each compile
command can tell objects apart, so this module runs in front of the compiler cache, as CMake's
``CMAKE_CUDA_COMPILER_LAUNCHER`` (a list: ``<python>;-m;vllm_dev.host.split_launcher;<ccache>``;
to chain it behind another launcher, put this module's three words before the next launcher).

What it does, per compile: finds the object (``-o``), looks it up in the build's thread plan
(``vllm-dev-threads.json`` in the build dir, ninja's working directory; written by vllm-dev before
each build from past compile times, host/parallelism.plan_unit_threads, as a record of
state/records.py: the launcher reads its kind and ignores its version), appends
``-split-compile=N`` to ``NVCC_APPEND_FLAGS`` in the compiler's environment (never to its command
line: the compiler cache's key stays the same, see caching/compiler_cache.nvcc_environment) and
replaces itself with the rest of the command (``exec``: no process stays between ninja and the
compiler, signals and exit codes pass unchanged). With no plan, an object not in it, or a user
``-split-compile`` already in ``NVCC_APPEND_FLAGS``/``NVCC_PREPEND_FLAGS``, it changes nothing:
a plain ``cmake --build`` behaves as without it.

Its cost is one Python start per CUDA compile (measured: bench/launcher_cost.py). The plan is
static (decided once, before ninja starts), so there is no shared state, lock or daemon.
"""

from __future__ import annotations

import json
import os
import sys

from vllm_dev.state.layout import THREAD_PLAN as PLAN_FILE

KIND = "vllm-dev thread plan"
SPLIT_OPTION = "-split-compile"  # the same as host.parallelism.SPLIT_OPTION (kept import-free)


def _object(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "-o" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("-o") and len(arg) > 2 and not arg.startswith("-odir"):
            return arg[2:]
    return None


def threads_for(argv: list[str], plan: dict[str, object], environ: dict[str, str]) -> int:
    """The planned threads of this command's object (1: leave the command alone)."""
    own = environ.get("NVCC_APPEND_FLAGS", "") + " " + environ.get("NVCC_PREPEND_FLAGS", "")
    if SPLIT_OPTION in own or "--split-compile" in own:
        return 1
    obj = _object(argv)
    objects = plan.get("objects")
    if obj is None or not isinstance(objects, dict):
        return 1
    value = objects.get(obj, objects.get(os.path.normpath(obj)))
    return value if isinstance(value, int) and value > 1 else 1


def main(argv: list[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        sys.stderr.write("usage: python -m vllm_dev.host.split_launcher <compiler or cache> "
                         "<arguments>\n")
        return 2
    env = dict(os.environ)
    try:
        with open(os.environ.get("VLLM_DEV_THREADS_PLAN", PLAN_FILE)) as f:
            plan = json.load(f)
    except (OSError, ValueError):
        plan = {}
    threads = threads_for(command, plan if isinstance(plan, dict) and
                          plan.get("kind") == KIND else {}, env)
    if threads > 1:
        env["NVCC_APPEND_FLAGS"] = (env.get("NVCC_APPEND_FLAGS", "").strip()
                                    + f" {SPLIT_OPTION}={threads}").strip()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        sys.stderr.write(f"vllm-dev split launcher: cannot run {command[0]}: {exc.strerror}\n")
        return 127


if __name__ == "__main__":
    raise SystemExit(main())
