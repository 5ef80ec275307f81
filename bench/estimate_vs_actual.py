#!/usr/bin/env python3
"""Benchmark: the cost estimate a build prints before it starts, against what the build took.

For each ``--target T``, in one checkout (a fresh clone of the real-vLLM tier's tree with
``--real-vllm``, or ``--source`` with ``--python``), with a private compiler cache:

1. ``history``: ``vllm-dev build --target T`` with an empty cache: vllm-dev records its steps in
   the checkout's timing history (``.vllm-dev/history/``), as every build does. Skipped with
   ``--reuse-history`` (the checkout has built T before). ``--import-log`` instead takes the steps
   of the build dir's ``.ninja_log`` into the history through the same ``History.record`` a
   build calls (for a build dir built before the history existed), with the hit count its cache
   counted (``--import-hits``, default 0: a cold cache).
2. ``cold``: ``vllm-dev clean``, a new empty cache, ``vllm-dev prime``; the estimate (the same
   call the cost block makes: ``steps.cost.estimate_cost``, on the plan a build resolves), then
   ``vllm-dev build --target T``; actual = the report's ``compile`` phase.
3. ``warm``: ``vllm-dev clean`` again, the cache of step 2 kept: the estimate now expects
   compiler-cache hits; then the build.

With ``--objects N`` a case times N of the target's objects (chosen at random among those the
history timed) instead of the whole target: the estimate of building those outputs, then
``cmake --build --preset P --target <outputs>`` (the compile command vllm-dev runs), its wall
time the actual. For ``_C`` on 2 cores, where a cold build takes well over an hour.

It prints a table (estimate low / point / high, actual, inside the range or not) and writes JSON.
Not a test: the figures depend on the machine and its load (recorded at each step).

    VLLM_DEV_REAL_VLLM=../shared/testbeds/vllm-0.33.0-src.tar.xz \\
        python bench/estimate_vs_actual.py --real-vllm --target fs_io_C --target spinloop
    python bench/estimate_vs_actual.py --source /tmp/c1/vllm --python /tmp/c1/venv/bin/python \\
        --target _C --import-log --cases cold      # _C from a build dir built before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from bench import clean_env, machine, real_vllm_checkout  # noqa: E402

if TYPE_CHECKING:
    from vllm_dev.planning.workspace import Workspace

CASES = ("cold", "warm")


@dataclass
class Row:
    target: str
    case: str
    objects: int
    hits: int
    timed: int
    low: float
    point: float
    high: float
    actual: float
    compiled: int
    load_before: float
    load_after: float
    estimate_seconds: float  # what computing the estimate took

    @property
    def inside(self) -> bool:
        return self.low <= self.actual <= self.high


def run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


def workspace(root: Path, env: dict[str, str]) -> Workspace:
    """The checkout's workspace as a build opens it, from ``env`` alone (no configuration file,
    no remembered settings: the benchmark's runs must not depend on the machine's)."""
    from vllm_dev.planning.workspace import open_workspace
    from vllm_dev.process.runner import SubprocessRunner

    return open_workspace(command="bench", flags={"source": str(root)}, environ=env, cwd=root,
                          remember=False,
                          runner=lambda setup: SubprocessRunner(secrets=setup.secrets,
                                                                environment=setup.environment))


def estimate(root: Path, env: dict[str, str], targets: list[str]
             ) -> tuple[object, object, float]:
    """The cost block's estimate for building ``targets`` (targets, or ninja outputs), from the
    plan a build would resolve (in this process, with the build's environment): (block, plan,
    seconds the estimate took)."""
    from vllm_dev.planning.plan import resolve_plan
    from vllm_dev.steps.cost import estimate_cost

    started = time.monotonic()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # CCACHE_DIR and the rest, as the build sees them
    try:
        plan = resolve_plan(workspace(root, env))
        block = estimate_cost(plan, targets)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return block, plan, time.monotonic() - started


def sample_objects(plan: object, target: str, count: int, seed: int) -> list[str]:
    """``count`` of ``target``'s objects that the history timed, chosen at random (``seed``)."""
    import random

    from vllm_dev.checkout.build_graph import ninja_of
    from vllm_dev.steps.cost import history_for

    build_dir = plan.build_dir  # type: ignore[attr-defined]
    listed = subprocess.run([ninja_of(build_dir), "-C", str(build_dir), "-t", "inputs", target],
                            capture_output=True, text=True, check=True).stdout.split()
    timed = history_for(plan).steps  # type: ignore[arg-type]
    objects = sorted(o for o in listed if o.endswith(".o") and o in timed
                     and timed[o].miss is not None)
    return sorted(random.Random(seed).sample(objects, min(count, len(objects))))


def build_objects(plan: object, env: dict[str, str], objects: list[str], root: Path) -> float:
    """Wall seconds of ``cmake --build --preset P --target <objects>`` (vllm-dev's compile
    command, for outputs instead of targets)."""
    argv = [str(plan.cmake.path), "--build", "--preset", plan.preset,  # type: ignore[attr-defined]
            "--target", *objects, "--parallel", str(plan.parallelism.jobs)]  # type: ignore
    started = time.monotonic()
    run(argv, cwd=root, env=env)
    return time.monotonic() - started


def import_log(root: Path, env: dict[str, str], hits: int) -> int:
    """The build dir's ``.ninja_log`` into the history, as a build records its own steps."""
    from vllm_dev.checkout.build_graph import ninja_deps
    from vllm_dev.planning.plan import resolve_plan
    from vllm_dev.reporting.ninja_log import NINJA_LOG, parse_ninja_log
    from vllm_dev.steps.cost import cache_identity, history_for

    plan = resolve_plan(workspace(root, env))
    last = {e.output: e for e in parse_ninja_log((plan.build_dir / NINJA_LOG).read_text())}
    entries = list(last.values())  # every step's last run (a build may have taken several)
    history = history_for(plan)
    # no build record (wall=None): the runs of a log are not one build's compile phase
    history.record(entries, hits=hits, cache=cache_identity(plan), deps=ninja_deps(plan.build_dir),
                   build_dir=plan.build_dir, wall=None, jobs=plan.parallelism.jobs)
    history.save()
    return len(entries)


def build(root: Path, env: dict[str, str], target: str, work: Path) -> tuple[float, int]:
    report = work / f"report-{target}-{time.monotonic_ns()}.json"
    run([env["VLLM_DEV"], "build", "--plain", "--target", target, "--json", str(report)],
        cwd=root, env=env)
    data = json.loads(report.read_text())
    return float(data["phases"].get("compile", 0.0)), int(data.get("compile_steps", 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--real-vllm", action="store_true",
                        help="a fresh clone of the real-vLLM tier's tree (VLLM_DEV_REAL_VLLM)")
    parser.add_argument("--source", type=Path, help="an existing checkout")
    parser.add_argument("--python", type=Path, help="its target interpreter")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--reuse-history", action="store_true")
    parser.add_argument("--import-log", action="store_true")
    parser.add_argument("--import-hits", type=int, default=0)
    parser.add_argument("--import-cache", type=Path, help="the compiler cache the imported "
                        "log's build went through (its objects are expected hits there)")
    parser.add_argument("--objects", type=int, default=0, metavar="N",
                        help="time N of the target's objects (the history timed them), chosen "
                             "at random, instead of the whole target (`cmake --build --target "
                             "<objects>`): a cold _C takes an hour and more on 2 cores")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--history-objects", action="store_true",
                        help="with --objects: the history step builds the sample (cold, "
                             "`cmake --build`) and takes its steps into the history")
    parser.add_argument("--cache", type=Path, help="the compiler cache of the cases (default: a "
                        "new empty one per target; e.g. a full one for a warm case alone)")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]

    work = args.work or Path(tempfile.mkdtemp(prefix="vllm-dev-estimate-"))
    work.mkdir(parents=True, exist_ok=True)
    vllm_dev = str(Path(sys.executable).parent / "vllm-dev")
    base: dict[str, str] = {"VLLM_DEV": vllm_dev}
    if args.real_vllm:
        root, python = real_vllm_checkout(work, base)
    elif args.source and args.python:
        root, python = args.source.resolve(), args.python
        if os.environ.get("FETCHCONTENT_SOURCE_DIR_ONEDNN"):
            base["FETCHCONTENT_SOURCE_DIR_ONEDNN"] = os.environ["FETCHCONTENT_SOURCE_DIR_ONEDNN"]
        base["VLLM_TARGET_DEVICE"] = os.environ.get("VLLM_TARGET_DEVICE", "cpu")
    else:
        parser.error("--real-vllm, or --source with --python")
    base["VLLM_DEV_PYTHON"] = str(python)
    info = machine(clean_env(base))
    rows: list[Row] = []
    for target in args.target:
        cache = work / f"ccache-{target}-history"
        env = clean_env({**base, "CCACHE_DIR": str(cache)})
        if args.objects and args.history_objects:  # the sample's own history, made now
            env = clean_env({**base, "CCACHE_DIR": str(cache)})
            run([vllm_dev, "clean"], cwd=root, env=env)
            run([vllm_dev, "prime"], cwd=root, env=env)
            _, plan, _ = estimate(root, env, [target])
            sample = sample_objects(plan, target, args.objects, args.seed)
            seconds = build_objects(plan, env, sample, root)
            print(f"bench: {target}: history build of {len(sample)} objects {seconds:.1f} s; "
                  f"{import_log(root, env, 0)} steps into the history", file=sys.stderr)
        elif args.import_log:
            logged = clean_env({**base, "CCACHE_DIR": str(args.import_cache or cache)})
            print(f"bench: {target}: {import_log(root, logged, args.import_hits)} steps of the "
                  ".ninja_log into the history", file=sys.stderr)
        elif not args.reuse_history:
            run([vllm_dev, "clean"], cwd=root, env=env)
            seconds, _ = build(root, env, target, work)
            print(f"bench: {target}: history build {seconds:.1f} s", file=sys.stderr)
        cold = args.cache or work / f"ccache-{target}-cold"
        for case in cases:
            # warm after --history-objects: the history's cache (the cold case's builds are not
            # vllm-dev builds, so the history does not know they filled theirs)
            warm_cache = cache if (case == "warm" and args.history_objects) else cold
            env = clean_env({**base, "CCACHE_DIR": str(warm_cache)})
            run([vllm_dev, "clean"], cwd=root, env=env)
            run([vllm_dev, "prime"], cwd=root, env=env)
            objects: list[str] = []
            if args.objects:  # a sample of the target's objects instead of the whole target
                _, plan, _ = estimate(root, env, [target])
                objects = sample_objects(plan, target, args.objects, args.seed)
            block, plan, took = estimate(root, env, objects or [target])
            est = block.estimate  # type: ignore[attr-defined]
            load = os.getloadavg()[0]
            if objects:
                actual, compiled = build_objects(plan, env, objects, root), len(objects)
            else:
                actual, compiled = build(root, env, target, work)
            row = Row(target + (f" ({len(objects)} objects)" if objects else ""), case,
                      est.objects, est.hits, est.timed, round(est.low, 2),
                      round(est.seconds, 2), round(est.high, 2), round(actual, 2), compiled,
                      round(load, 2), round(os.getloadavg()[0], 2), round(took, 3))
            rows.append(row)
            print(f"bench: {target} {case}: estimate {row.low:.1f} / {row.point:.1f} / "
                  f"{row.high:.1f} s, actual {row.actual:.1f} s, "
                  f"{'inside' if row.inside else 'OUTSIDE'} the range", file=sys.stderr)
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M"), "machine": info, "source": str(root),
            "rows": [{**asdict(r), "inside": r.inside} for r in rows]}, indent=2) + "\n")
    return 0


def render(rows: list[Row]) -> str:
    lines = ["| target | case | objects | hits expected | timed by history | estimate low / "
             "point / high (s) | actual compile (s) | inside | load before / after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.target} | {r.case} | {r.objects} | {r.hits} | {r.timed} | "
                     f"{r.low:.1f} / {r.point:.1f} / {r.high:.1f} | {r.actual:.1f} | "
                     f"{'yes' if r.inside else 'no'} | {r.load_before:.1f} / "
                     f"{r.load_after:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
