#!/usr/bin/env python3
"""Benchmark: vllm-dev against the raw cmake commands a user would type, side by side.

Five cases, each run ``--repeat`` times (at least 3; 5 by default), alternating the two tools
(and which of them goes first in each round, so a machine that speeds up or slows down hurts both
alike); medians are reported:

* ``noop``     a build with nothing to do;
* ``onefile``  one source file changed (new content every run, so the compiler cache misses);
* ``cold``     clean build (no build dir) with an empty compiler cache;
* ``warm``     clean build with a warm compiler cache;
* ``jobs``     a no-op build whose job count changes every run (vllm-dev ``--jobs N``, raw
  ``-j N``): it must never configure again (the report's ``configured`` is recorded per run).

vllm-dev: ``vllm-dev build --plain --json FILE`` (its report adds per-phase times).
Raw: ``cmake --build --preset P --target install``; clean builds first run ``cmake --preset P``.
With ``--target T`` (repeatable), what a kernel developer types for one extension instead:
vllm-dev ``build --target T``; raw ``cmake --build --preset P --target T`` then
``cmake --install <build dir> --component T`` (vLLM names each component after its target).

By default it makes its own copy of the test project (tests/minivllm) with a venv, on the CUDA
device when nvcc exists, else CPU; ``--source`` benchmarks any checkout whose target venv vllm-dev
finds (``--python``, else ``<checkout>/.venv``). The compiler cache lives in a private directory
(``CCACHE_DIR``), so the user's own cache is never emptied. Not a test: it prints a table and
writes JSON (``--json``).

    python bench/bench.py                      # test project, 5 rounds
    python bench/bench.py --repeat 7 --json bench.json
    python bench/bench.py --source ~/vllm --touch csrc/cache_kernels.cu --cases noop,onefile
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CASES = ("noop", "onefile", "cold", "warm", "jobs")
TOOLS = ("vllm-dev", "cmake")
_SCRUBBED_PREFIXES = ("INVOKE_", "VLLM_DEV_", "CCACHE_")
# PYTHONDONTWRITEBYTECODE would make every vllm-dev start compile its imports (invoke included)
# from source, which no installed tool does; bytecode goes to a private PYTHONPYCACHEPREFIX.
_SCRUBBED = ("VIRTUAL_ENV", "MAX_JOBS", "NVCC_THREADS", "CMAKE_BUILD_PARALLEL_LEVEL",
             "VLLM_USE_PRECOMPILED", "NINJA_STATUS", "PYTHONDONTWRITEBYTECODE")


@dataclass
class Sample:
    case: str
    tool: str
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # vllm-dev report / raw steps


@dataclass
class Bench:
    root: Path
    python: Path
    vllm_dev: str
    preset: str
    device: str
    touch: Path
    env: dict[str, str]
    cache_dir: Path
    work: Path
    targets: list[str] = field(default_factory=list)
    jobs: tuple[int, int] = (2, 1)  # the two job counts the ``jobs`` case alternates
    samples: list[Sample] = field(default_factory=list)

    @property
    def build_dir(self) -> Path:
        return self.root / f"cmake-build-{self.preset}"

    # -- commands ---------------------------------------------------------------------------

    def _run(self, argv: list[str]) -> float:
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"bench: `{' '.join(argv)}` failed with exit code {done.returncode}:\n"
                     f"{done.stdout[-4000:]}")
        return seconds

    def _jobs(self, case: str, index: int) -> list[str]:
        return [str(self.jobs[index % 2])] if case == "jobs" else []

    def vllm_dev_build(self, case: str, index: int = 0) -> Sample:
        report = self.work / "report.json"
        argv = [self.vllm_dev, "build", "--plain", "--preset", self.preset, "--json",
                str(report)]
        for target in self.targets:
            argv += ["--target", target]
        if jobs := self._jobs(case, index):
            argv += ["--jobs", *jobs]
        seconds = self._run(argv)
        data = json.loads(report.read_text())
        phases = data.get("phases", {})
        phases["configured"] = 1.0 if data.get("configured") else 0.0
        return Sample(case, "vllm-dev", seconds, phases)

    def raw_build(self, case: str, *, configure: bool, index: int = 0) -> Sample:
        phases = {}
        total = 0.0
        if configure:
            phases["configure"] = self._run(["cmake", "--preset", self.preset])
            total += phases["configure"]
        jobs = ["-j", *self._jobs(case, index)] if case == "jobs" else []
        if not self.targets:
            phases["build+install"] = self._run(
                ["cmake", "--build", "--preset", self.preset, "--target", "install", *jobs])
            total += phases["build+install"]
            return Sample(case, "cmake", total, phases)
        phases["build"] = self._run(["cmake", "--build", "--preset", self.preset, "--target",
                                     *self.targets, *jobs])
        phases["install"] = 0.0
        for target in self.targets:
            phases["install"] += self._run(["cmake", "--install", str(self.build_dir),
                                            "--component", target])
        total += phases["build"] + phases["install"]
        return Sample(case, "cmake", total, phases)

    # -- preparing each case ----------------------------------------------------------------

    def prepare(self, case: str, tool: str, index: int) -> None:
        if case == "onefile":
            original = self.touch.read_text()
            marker = f"\n// vllm-dev bench: {tool} run {index} {time.time_ns()}\n"
            self.touch.write_text(original.split("\n// vllm-dev bench:")[0] + marker)
        elif case in ("cold", "warm"):
            shutil.rmtree(self.build_dir, ignore_errors=True)
            if case == "cold":
                shutil.rmtree(self.cache_dir, ignore_errors=True)
                self.cache_dir.mkdir(parents=True)

    def settle(self, case: str, tool: str) -> None:
        """An untimed run of the same tool first: both tools install into the same vllm/, so
        without it each would time undoing the other's install instead of its own steady
        state (what a user who uses one of them sees)."""
        if case in ("noop", "onefile", "jobs"):
            if tool == "vllm-dev":
                self.vllm_dev_build("settle")
            else:
                self.raw_build("settle", configure=False)

    def measure(self, case: str, tool: str, index: int) -> Sample:
        self.settle(case, tool)
        self.prepare(case, tool, index)
        if tool == "vllm-dev":
            sample = self.vllm_dev_build(case, index)
        else:
            sample = self.raw_build(case, configure=case in ("cold", "warm"), index=index)
        self.samples.append(sample)
        return sample

    def run_case(self, case: str, repeat: int, first_round: int = 0) -> None:
        if case == "warm":  # fill the cache once for this tree
            self.prepare("cold", "fill", 0)
            self.vllm_dev_build("fill")
        elif case in ("noop", "onefile", "jobs"):
            self.vllm_dev_build("warmup")  # build dir configured and up to date
        for index in range(first_round, first_round + repeat):
            order = TOOLS if index % 2 == 0 else tuple(reversed(TOOLS))
            for tool in order:
                sample = self.measure(case, tool, index)
                print(f"  {case:8s} {tool:9s} run {index + 1}: {sample.seconds:7.3f} s",
                      file=sys.stderr, flush=True)
        if case == "onefile":  # leave the file as it was
            text = self.touch.read_text()
            self.touch.write_text(text.split("\n// vllm-dev bench:")[0])

    # -- results ----------------------------------------------------------------------------

    def median(self, case: str, tool: str, phase: str | None = None) -> float | None:
        values = [s.phases.get(phase) if phase else s.seconds for s in self.samples
                  if s.case == case and s.tool == tool]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def tool_version(argv: list[str], env: dict[str, str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30,
                              check=False)
    except OSError:
        return "absent"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[-1] if "nvcc" in argv[0] and text else (text[0] if text else "?")


def machine(env: dict[str, str]) -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "cpu": cpu, "usable_cpus": str(cpus), "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cmake": tool_version(["cmake", "--version"], env),
        "ccache": tool_version(["ccache", "--version"], env),
        "nvcc": tool_version(["nvcc", "--version"], env) if shutil.which(
            "nvcc", path=env.get("PATH")) else "absent",
        "load_average_at_start": f"{load:.2f}",
    }


def make_test_project(work: Path, device: str, vllm_dev: str, env: dict[str, str]) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    import minivllm_tools as mv  # noqa: PLC0415 - only the default mode needs it

    root = mv.copy_project(work / "vllm")
    mv.make_venv(root / ".venv")
    done = subprocess.run([vllm_dev, "setup"], cwd=root, env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench: vllm-dev setup failed:\n{done.stdout}{done.stderr}")
    return root


def real_vllm_checkout(work: Path, base: dict[str, str]) -> tuple[Path, Path]:
    """A fresh clone of the test tier's adapted real vLLM tree and a target venv (CPU torch), the
    way tests/real_vllm.py makes them; ``base`` gets the environment its configure needs."""
    sys.path.insert(0, str(REPO / "tests"))
    import real_vllm as rv  # noqa: PLC0415 - only this mode needs it

    source = rv.RealSource.from_env()
    if source is None:
        sys.exit("bench: --real-vllm needs VLLM_DEV_REAL_VLLM (a vLLM checkout or a "
                 "vllm-*-src.tar.xz; see tests/real_vllm.py)")
    root = rv.fresh_clone(rv.adapted_repo(source), work / "vllm")
    python = rv.make_target_venv(root / ".venv", root)
    onednn = rv.onednn_dir(source)
    if onednn is not None:
        base["FETCHCONTENT_SOURCE_DIR_ONEDNN"] = str(onednn)
    base["VLLM_TARGET_DEVICE"] = "cpu"
    return root, python


def heavy_presets(work: Path, count: int) -> Path:
    """The bundled preset templates, with ``release`` also building the heavy CUDA target."""
    directory = work / "presets"
    directory.mkdir()
    for template in (REPO / "presets").glob("*.json"):
        data = json.loads(template.read_text())
        if template.stem == "release":
            data.setdefault("cacheVariables", {}).update(
                {"MINIVLLM_HEAVY": "ON", "MINIVLLM_HEAVY_TUS": str(count)})
        (directory / template.name).write_text(json.dumps(data, indent=2))
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="a vLLM checkout (default: a fresh copy "
                        "of the test project)")
    parser.add_argument("--python", type=Path, help="target venv python for --source "
                        "(default: <checkout>/.venv/bin/python)")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="test project device "
                        "(default: cuda when nvcc is found, else cpu)")
    parser.add_argument("--preset", default="release")
    parser.add_argument("--repeat", type=int, default=5, help="runs per tool and case (>= 3; "
                        "5 where a run is cheap)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--touch", type=Path,
                        help="file changed by the one-file case, relative to the checkout "
                             "(test project: csrc/cuda/saxpy.cu on cuda, csrc/ops/add.cpp on cpu)")
    parser.add_argument("--heavy", type=int, default=0, metavar="N",
                        help="test project: also build _heavy_C with N generated heavy CUDA "
                             "files (about 8 s of nvcc each), so a clean build's compile is "
                             "not dwarfed by its configure")
    parser.add_argument("--target", action="append", default=[], metavar="T",
                        help="build and install only this target (repeatable): raw is then "
                             "`cmake --build --preset P --target T` + `cmake --install DIR "
                             "--component T`")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for both tools (repeatable), e.g. "
                             "FETCHCONTENT_SOURCE_DIR_ONEDNN=/src/oneDNN")
    parser.add_argument("--real-vllm", action="store_true",
                        help="benchmark a fresh clone of the real vLLM tree the test tier uses "
                             "(VLLM_DEV_REAL_VLLM, see tests/real_vllm.py), CPU device; default "
                             "--target fs_io_C --touch csrc/fs_io.cpp")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"),
                        help="where to write the results (default: bench-results.json)")
    parser.add_argument("--vllm-dev", default=str(Path(sys.executable).parent / "vllm-dev"),
                        help="the vllm-dev executable (default: beside this Python)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--first-round", type=int, default=0, metavar="K",
                        help="number the rounds from K (which tool goes first alternates with "
                             "the round's number): the rest of a series whose first K rounds "
                             "ran in an earlier call (the device machine's per-call limit); "
                             "then fewer than 3 rounds are allowed, the medians are the "
                             "series' merged JSONs'")
    args = parser.parse_args(argv)
    if args.repeat < 3 and not (args.first_round and args.repeat >= 1):
        parser.error("--repeat must be at least 3 (medians of fewer runs are noise)")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; known: {', '.join(CASES)}")
    if not Path(args.vllm_dev).exists():
        parser.error(f"no vllm-dev at {args.vllm_dev}: pass --vllm-dev")

    work = Path(tempfile.mkdtemp(prefix="vllm-dev-bench-"))
    cache_dir = work / "ccache"
    cache_dir.mkdir()
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                    if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    device = args.device or ("cuda" if nvcc else "cpu")
    base = {"CCACHE_DIR": str(cache_dir), "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env {item!r}: expected NAME=VALUE")
        base[name] = value
    try:
        if args.real_vllm:
            args.source, args.python = real_vllm_checkout(work, base)
            args.target = args.target or ["fs_io_C"]
            args.touch = args.touch or Path("csrc/fs_io.cpp")
        if args.source:
            root = args.source.expanduser().resolve()
            python = (args.python or root / ".venv" / "bin" / "python").absolute()
        else:
            env0 = clean_env({**base, "VLLM_TARGET_DEVICE": device,
                              "PATH": f"{Path(args.vllm_dev).parent}{os.pathsep}"
                                      f"{os.environ.get('PATH', '')}"})
            root = make_test_project(work, device, args.vllm_dev, env0)
            python = root / ".venv" / "bin" / "python"
            base["VLLM_TARGET_DEVICE"] = device
            if args.heavy and device == "cuda":
                base["VLLM_DEV_PRESETS_DIR"] = str(heavy_presets(work, args.heavy))
        venv = python.parent.parent
        path = os.pathsep.join([str(python.parent), str(Path(args.vllm_dev).parent),
                                os.environ.get("PATH", "")])
        env = clean_env({**base, "VIRTUAL_ENV": str(venv), "PATH": path})
        bench = Bench(root=root, python=python, vllm_dev=args.vllm_dev, preset=args.preset,
                      device=device if not args.source else "checkout",
                      touch=root / (args.touch or Path(
                          "csrc/cuda/saxpy.cu" if device == "cuda" else "csrc/ops/add.cpp")),
                      env=env, cache_dir=cache_dir, work=work, targets=args.target,
                      jobs=(max(2, usable_cpus()), max(1, usable_cpus() - 1)))
        if "onefile" in cases and not bench.touch.is_file():
            parser.error(f"--touch {args.touch} is not a file of {root}")
        info = machine(env)
        print(f"bench: {root} ({bench.device}), {args.repeat} rounds; {info['cpu']}, "
              f"{info['usable_cpus']} CPUs, {info['memory']}", file=sys.stderr)
        for case in cases:
            bench.run_case(case, args.repeat, args.first_round)
        results = summarize(bench, cases, args.repeat, info)
        results["heavy_tus"] = args.heavy if device == "cuda" and not args.source else 0
        results["touch"] = str(bench.touch.relative_to(root))
        results["build_targets"] = args.target
        results["first_round"] = args.first_round
        print(render_table(results))
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def summarize(bench: Bench, cases: list[str], repeat: int, info: dict[str, str]) -> dict:
    rows = []
    for case in cases:
        ours = bench.median(case, "vllm-dev")
        raw = bench.median(case, "cmake")
        rows.append({
            "case": case, "vllm_dev_s": ours, "cmake_s": raw,
            "difference_s": None if ours is None or raw is None else ours - raw,
            "ratio": None if not ours or not raw else ours / raw,
            "vllm_dev_phases_s": {p: bench.median(case, "vllm-dev", p)
                                  for p in ("configure", "compile", "install", "verify")},
            "cmake_steps_s": {p: bench.median(case, "cmake", p)
                              for p in ("configure", "build+install", "build", "install")},
            "vllm_dev_runs_that_configured": sum(
                1 for s in bench.samples if s.case == case and s.tool == "vllm-dev"
                and s.phases.get("configured")),
        })
    by_case = {r["case"]: r for r in rows}
    targets = {}
    if "noop" in by_case and by_case["noop"]["difference_s"] is not None:
        diff = by_case["noop"]["difference_s"]
        targets["noop_within_0.3s"] = {"value_s": diff, "met": diff <= 0.3}
    if "onefile" in by_case and by_case["onefile"]["ratio"] is not None:
        ratio = by_case["onefile"]["ratio"]
        targets["onefile_within_10pct"] = {"value": ratio, "met": ratio <= 1.10}
        diff = by_case["onefile"]["difference_s"]
        targets["onefile_within_1s"] = {"value_s": diff, "met": diff <= 1.0}
    if "jobs" in by_case:
        runs = by_case["jobs"]["vllm_dev_runs_that_configured"]
        targets["jobs_change_never_configures"] = {"value": float(runs), "met": runs == 0}
    if "cold" in by_case and "warm" in by_case:
        for tool, key in (("vllm-dev", "vllm_dev_s"), ("cmake", "cmake_s")):
            cold, warm = by_case["cold"][key], by_case["warm"][key]
            if cold and warm:
                targets[f"warm_vs_cold_{tool}"] = {"speedup": cold / warm,
                                                   "met": cold / warm >= 50}
        cold_c = by_case["cold"]["vllm_dev_phases_s"].get("compile")
        warm_c = by_case["warm"]["vllm_dev_phases_s"].get("compile")
        if cold_c and warm_c:
            targets["warm_vs_cold_compile_phase_vllm-dev"] = {"speedup": cold_c / warm_c,
                                                             "met": cold_c / warm_c >= 50}
    return {"machine": info, "project": str(bench.root), "device": bench.device,
            "preset": bench.preset, "repeat": repeat, "rows": rows, "targets": targets,
            "samples": [asdict(s) for s in bench.samples]}


def _fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    return f"{value:.3f} {unit}" if unit == "s" else f"{value:.2f}x"


def render_table(results: dict) -> str:
    lines = [f"{'case':10s} {'vllm-dev':>11s} {'raw cmake':>11s} {'difference':>11s} "
             f"{'ratio':>7s}   vllm-dev phases (configure/compile/install/verify)"]
    for row in results["rows"]:
        phases = "/".join(f"{v:.2f}" if v is not None else "-"
                          for v in row["vllm_dev_phases_s"].values())
        lines.append(f"{row['case']:10s} {_fmt(row['vllm_dev_s']):>11s} "
                     f"{_fmt(row['cmake_s']):>11s} {_fmt(row['difference_s']):>11s} "
                     f"{_fmt(row['ratio'], 'x'):>7s}   {phases}")
    for name, target in results["targets"].items():
        value = target.get("value_s", target.get("value", target.get("speedup")))
        lines.append(f"target {name}: {value:.3f} -> {'met' if target['met'] else 'MISSED'}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
