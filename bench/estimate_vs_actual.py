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
time the actual. For ``_C`` on 2 cores, where a cold build takes well over an hour. A target of
N objects or fewer (``fs_io_C``: one) is still timed whole, by ``vllm-dev build``.

The load (reporting/estimate.py scales history times by the load now against then): every
target's history step runs first, then every case, so that ``--busy-history K`` (K busy-loop
processes, ``python -c 'while 1: pass'``, started by the bench during the history steps) and
``--busy-cases K`` (during the cases) set the load of each side; after starting or stopping
them the bench waits ``--settle`` seconds (the 1-minute load average needs about two minutes to
show them). The busy loops run in a session of their own (``setsid``), as another user's
work would: where the kernel groups tasks by session (``sched_autogroup_enabled``), loops in
the bench's session would share one group's CPU time with the compiles. Each case gives the
estimate with the load correction (what the cost block prints) and without it, the load when
the steps were timed and now, and the busy loops of each side.

It prints a table (estimate low / point / high, actual, inside the range or not) and writes JSON.
Not a test: the figures depend on the machine and its load (recorded at each step).

    VLLM_DEV_REAL_VLLM=../shared/testbeds/vllm-0.33.0-src.tar.xz \\
        python bench/estimate_vs_actual.py --real-vllm --target fs_io_C --target spinloop
    python bench/estimate_vs_actual.py --source /tmp/c1/vllm --python /tmp/c1/venv/bin/python \\
        --target _C --import-log --cases cold      # _C from a build dir built before
    python bench/estimate_vs_actual.py --real-vllm --target fs_io_C --target spinloop \
        --target _C --objects 6 --history-objects --cases cold --busy-cases 3
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
    # the same estimate without the load correction, the load when the steps were timed (None:
    # not known, nothing corrected) and the factor applied; the busy loops on each side
    low_off: float = 0.0
    point_off: float = 0.0
    high_off: float = 0.0
    load_then: float | None = None
    factor: float = 1.0
    busy_then: int = 0
    busy_now: int = 0

    @property
    def inside(self) -> bool:
        return self.low <= self.actual <= self.high

    @property
    def inside_off(self) -> bool:
        return self.low_off <= self.actual <= self.high_off


class Busy:
    """``count`` busy-loop processes (an artificial load), started and stopped by the bench."""

    def __init__(self, *, own_session: bool = True) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.own_session = own_session

    def set(self, count: int, settle: float) -> None:
        """Run ``count`` of them (starting or stopping some), then wait ``settle`` seconds for
        the load average to show it (nothing to wait for when nothing changed)."""
        if count == len(self.procs):
            return
        while len(self.procs) > count:
            proc = self.procs.pop()
            proc.kill()
            proc.wait()
        while len(self.procs) < count:  # in a session of their own, as another user's work
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while 1: pass"],
                                               start_new_session=self.own_session))
        print(f"bench: {count} busy loop(s); waiting {settle:.0f} s for the load average "
              f"(now {os.getloadavg()[0]:.2f})", file=sys.stderr)
        time.sleep(settle)
        print(f"bench: load average {os.getloadavg()[0]:.2f}", file=sys.stderr)

    def stop(self) -> None:
        self.set(0, 0)


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


def estimate(root: Path, env: dict[str, str], targets: list[str], *, correct_load: bool = True
             ) -> tuple[object, object, float]:
    """The cost block's estimate for building ``targets`` (targets, or ninja outputs), from the
    plan a build would resolve (in this process, with the build's environment): (block, plan,
    seconds the estimate took). ``correct_load``: False for the estimate as timed."""
    from vllm_dev.planning.plan import resolve_plan
    from vllm_dev.steps.cost import estimate_cost

    started = time.monotonic()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # CCACHE_DIR and the rest, as the build sees them
    try:
        plan = resolve_plan(workspace(root, env))
        block = estimate_cost(plan, targets, correct_load=correct_load)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return block, plan, time.monotonic() - started


def target_objects(plan: object, target: str) -> list[str]:
    """Every object of ``target`` (``ninja -t inputs``)."""
    from vllm_dev.checkout.build_graph import ninja_of

    build_dir = plan.build_dir  # type: ignore[attr-defined]
    listed = subprocess.run([ninja_of(build_dir), "-C", str(build_dir), "-t", "inputs", target],
                            capture_output=True, text=True, check=True).stdout.split()
    return sorted(o for o in listed if o.endswith(".o"))


def sample_objects(plan: object, target: str, count: int, seed: int, *, timed_only: bool = True
                   ) -> list[str]:
    """``count`` of ``target``'s objects that the history timed (``timed_only=False``: any),
    chosen at random (``seed``)."""
    import random

    from vllm_dev.steps.cost import history_for

    timed = history_for(plan).steps  # type: ignore[arg-type]
    objects = [o for o in target_objects(plan, target)
               if not timed_only or (o in timed and timed[o].miss is not None)]
    return sorted(random.Random(seed).sample(objects, min(count, len(objects))))


def build_objects(plan: object, env: dict[str, str], objects: list[str], root: Path) -> float:
    """Wall seconds of ``cmake --build --preset P --target <objects>`` (vllm-dev's compile
    command, for outputs instead of targets)."""
    argv = [str(plan.cmake.path), "--build", "--preset", plan.preset,  # type: ignore[attr-defined]
            "--target", *objects, "--parallel", str(plan.parallelism.jobs)]  # type: ignore
    started = time.monotonic()
    run(argv, cwd=root, env=env)
    return time.monotonic() - started


def import_log(root: Path, env: dict[str, str], hits: int, load: object = None) -> int:
    """The build dir's ``.ninja_log`` into the history, as a build records its own steps
    (``load``: the load its build met at its start, from ``history.machine_load``)."""
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
                   build_dir=plan.build_dir, wall=None, jobs=plan.parallelism.jobs,
                   load=load)  # type: ignore[arg-type]
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
    parser.add_argument("--busy-history", type=int, default=0, metavar="K",
                        help="K busy-loop processes while the history steps run")
    parser.add_argument("--busy-cases", type=int, default=0, metavar="K",
                        help="K busy-loop processes while the cases run")
    parser.add_argument("--busy-same-session", action="store_true",
                        help="the busy loops in the bench's own session (where the kernel's "
                             "autogroup puts them in one group with the compiles: see "
                             "docs/benchmarks.md) rather than in a session of their own")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="seconds to wait after starting or stopping busy loops")
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
    busy = Busy(own_session=not args.busy_same_session)
    steps: list[dict[str, object]] = []  # what each history step did, and its load
    try:
        busy.set(args.busy_history, args.settle)
        samples = {t: history_step(args, t, root, base, work, vllm_dev, steps) for t in args.target}
        busy.set(args.busy_cases, args.settle)
        for target in args.target:
            rows += cases_of(args, target, samples[target], cases, root, base, work)
    finally:
        busy.stop()
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M"), "machine": info, "source": str(root),
            "argv": sys.argv[1:], "history_steps": steps,
            "rows": [{**asdict(r), "inside": r.inside, "inside_off": r.inside_off}
                     for r in rows]}, indent=2) + "\n")
    return 0


def history_step(args: argparse.Namespace, target: str, root: Path, base: dict[str, str],
                 work: Path, vllm_dev: str, steps: list[dict[str, object]]) -> list[str]:
    """The history of ``target`` (see the module docstring); the sample of its objects the
    cases time ([]: the whole target)."""
    from vllm_dev.reporting.history import machine_load

    cache = work / f"ccache-{target}-history"
    env = clean_env({**base, "CCACHE_DIR": str(cache)})
    sample: list[str] = []
    if args.objects and args.history_objects:  # the sample's own history, made now
        run([vllm_dev, "clean"], cwd=root, env=env)
        run([vllm_dev, "prime"], cwd=root, env=env)
        _, plan, _ = estimate(root, env, [target])
        if len(target_objects(plan, target)) > args.objects:
            sample = sample_objects(plan, target, args.objects, args.seed, timed_only=False)
            load = machine_load()
            seconds = build_objects(plan, env, sample, root)
            imported = import_log(root, env, 0, load)
            print(f"bench: {target}: history build of {len(sample)} objects {seconds:.1f} s at "
                  f"load {load.load if load else '?'}; {imported} steps into the history",
                  file=sys.stderr)
            steps.append({"target": target, "objects": len(sample), "seconds": round(seconds, 2),
                          "load": load.load if load else None, "busy": args.busy_history})
            return sample
    if args.import_log:
        logged = clean_env({**base, "CCACHE_DIR": str(args.import_cache or cache)})
        print(f"bench: {target}: {import_log(root, logged, args.import_hits)} steps of the "
              ".ninja_log into the history", file=sys.stderr)
    elif not args.reuse_history:
        run([vllm_dev, "clean"], cwd=root, env=env)
        load = os.getloadavg()[0]
        seconds, _ = build(root, env, target, work)
        print(f"bench: {target}: history build {seconds:.1f} s", file=sys.stderr)
        steps.append({"target": target, "seconds": round(seconds, 2), "load": round(load, 2),
                      "busy": args.busy_history})
    if args.objects:  # sampled from the objects the history timed before
        env = clean_env({**base, "CCACHE_DIR": str(cache)})
        _, plan, _ = estimate(root, env, [target])
        if len(target_objects(plan, target)) > args.objects:
            return sample_objects(plan, target, args.objects, args.seed)
    return sample


def cases_of(args: argparse.Namespace, target: str, objects: list[str], cases: list[str],
             root: Path, base: dict[str, str], work: Path) -> list[Row]:
    vllm_dev = base["VLLM_DEV"]
    cache = work / f"ccache-{target}-history"
    cold = args.cache or work / f"ccache-{target}-cold"
    rows = []
    for case in cases:
        # warm after --history-objects: the history's cache (the cold case's builds are not
        # vllm-dev builds, so the history does not know they filled theirs)
        warm_cache = cache if (case == "warm" and args.history_objects) else cold
        env = clean_env({**base, "CCACHE_DIR": str(warm_cache)})
        run([vllm_dev, "clean"], cwd=root, env=env)
        run([vllm_dev, "prime"], cwd=root, env=env)
        off, _, _ = estimate(root, env, objects or [target], correct_load=False)
        block, plan, took = estimate(root, env, objects or [target])
        est = block.estimate  # type: ignore[attr-defined]
        was = off.estimate  # type: ignore[attr-defined]
        load = os.getloadavg()[0]
        if objects:
            actual, compiled = build_objects(plan, env, objects, root), len(objects)
        else:
            actual, compiled = build(root, env, target, work)
        row = Row(target + (f" ({len(objects)} objects)" if objects else ""), case,
                  est.objects, est.hits, est.timed, round(est.low, 2),
                  round(est.seconds, 2), round(est.high, 2), round(actual, 2), compiled,
                  round(load, 2), round(os.getloadavg()[0], 2), round(took, 3),
                  round(was.low, 2), round(was.seconds, 2), round(was.high, 2),
                  None if est.load_then is None else round(est.load_then, 2),
                  round(est.factor, 3), args.busy_history, args.busy_cases)
        rows.append(row)
        print(f"bench: {target} {case}: estimate {row.low:.1f} / {row.point:.1f} / "
              f"{row.high:.1f} s (as timed {row.low_off:.1f} / {row.point_off:.1f} / "
              f"{row.high_off:.1f}; load {row.load_then} then, {row.load_before} now), actual "
              f"{row.actual:.1f} s, {'inside' if row.inside else 'OUTSIDE'} the range",
              file=sys.stderr)
    return rows


def render(rows: list[Row]) -> str:
    lines = ["| target | case | busy loops then / now | load then / now | as timed low / point "
             "/ high (s) | inside | load-corrected low / point / high (s) | inside | actual "
             "compile (s) | load after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        then = "?" if r.load_then is None else f"{r.load_then:.1f}"
        lines.append(f"| {r.target} | {r.case} | {r.busy_then} / {r.busy_now} | {then} / "
                     f"{r.load_before:.1f} | {r.low_off:.1f} / {r.point_off:.1f} / "
                     f"{r.high_off:.1f} | {'yes' if r.inside_off else 'no'} | {r.low:.1f} / "
                     f"{r.point:.1f} / {r.high:.1f} (x{r.factor:.2f}) | "
                     f"{'yes' if r.inside else 'no'} | {r.actual:.1f} | {r.load_after:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
