"""Idle cores to the units being compiled (issue 21): nvcc's ``-split-compile`` through the
build's environment, the thread budget, and the compiler cache's key.

The unit tests check the plumbing (the budget, ``ninja -n`` parsing, the environment the presets
compose); the cuda-tier tests build the test project's CUDA kernels with the real nvcc and ccache:
a split edit whose clean rebuild hits 100 %, and a user's ``NVCC_APPEND_FLAGS=-G`` that must not
be served the non-debug object.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from vllm_dev.caching import compiler_cache as cc
from vllm_dev.checkout.pending import parse_dry_run
from vllm_dev.config.settings import Settings
from vllm_dev.host.machine import GIB, Cpus, Machine, Memory
from vllm_dev.host.parallelism import Parallelism, choose, split_threads
from vllm_dev.presets.render import PresetInputs, PresetTemplate, render

from conftest import NVCC, Project, requires_nvcc

# ----------------------------------------------------------------------------- the budget


def par(cpus: int, gib: float, **flags: object) -> Parallelism:
    settings = Settings.resolve(flags=flags, environ={})
    return choose(settings, device="cuda", arch_count=1,
                  machine=Machine(Cpus(cpus, "test"), Memory(int(gib * GIB), "test")))


@pytest.mark.unit
def test_one_unit_gets_every_cpu_of_the_h200_host() -> None:
    split = split_threads(par(16, 125), cuda_units=1)
    # one arch at nvcc_threads 1: -t 2 beside the split for nvcc's host front end
    assert split.threads == 16 and split.host_threads == 2
    assert split.flag == "-split-compile=16 -t 2"
    assert split.line() == ("split: -split-compile=16 -t 2 for 1 CUDA unit(s) (16 threads for 1 "
                            "CUDA unit(s))")


@pytest.mark.unit
def test_the_host_thread_needs_one_arch_one_nvcc_thread_and_no_users_threads() -> None:
    assert split_threads(par(2, 125), cuda_units=1).flag == "-split-compile=2 -t 2"
    assert split_threads(par(16, 125), cuda_units=1, host_thread=False).flag \
        == "-split-compile=16"
    machine = Machine(Cpus(16, "test"), Memory(125 * GIB, "test"))
    two_arches = choose(Settings.resolve(flags={}, environ={}), device="cuda", arch_count=2,
                        machine=machine)
    assert two_arches.nvcc_threads == 2  # auto: 16 CPUs, 2 arches: --threads=2 already
    assert split_threads(two_arches, cuda_units=1).flag == "-split-compile=8"
    one_thread = choose(Settings.resolve(flags={"nvcc_threads": 1}, environ={}), device="cuda",
                        arch_count=2, machine=machine)
    # -t 2 would run two arches at once, each with the split's threads: not given
    assert split_threads(one_thread, cuda_units=1).flag == "-split-compile=16"
    assert split_threads(par(16, 125), cuda_units=9).flag is None  # no split, no -t either


@pytest.mark.unit
@pytest.mark.parametrize(("cuda", "other", "threads"), [
    (2, 0, 8),     # two units share the 16 CPUs
    (3, 0, 5),
    (1, 3, 13),    # three C++ compiles keep a CPU each
    (8, 0, 2),
    (9, 0, 1),     # 9 units: 16 // 9 = 1, nothing to spare
    (17, 0, 1),    # more units than jobs: every slot busy
    (0, 5, 1),     # nothing for nvcc
])
def test_the_budget_is_shared(cuda: int, other: int, threads: int) -> None:
    split = split_threads(par(16, 125), cuda_units=cuda, other_units=other)
    assert split.threads == threads, split.why
    assert cuda * max(1, split.threads) + min(other, 16 - cuda) <= 16 or split.threads == 1


@pytest.mark.unit
def test_a_users_job_cap_caps_the_threads_too() -> None:
    assert split_threads(par(16, 125, jobs=1), cuda_units=1).threads == 1
    assert split_threads(par(16, 125, jobs=4), cuda_units=1).threads == 4
    assert split_threads(par(16, 125, max_jobs=6), cuda_units=1).threads == 6
    assert split_threads(par(16, 125, jobs=64), cuda_units=1).threads == 16  # never over CPUs
    with_threads = par(16, 125, nvcc_threads=4)  # 16 CPUs / 4 nvcc threads: 4 each
    assert split_threads(with_threads, cuda_units=1).threads == 4


@pytest.mark.unit
def test_memory_limits_the_split_and_never_goes_below_one_thread() -> None:
    # 14 GiB: 1 job of 4.5 + 7.5 reserve leaves 2 GiB: 3 extra threads at 0.6 GiB, one of
    # them the host front end's (-t 2)
    tight = split_threads(par(16, 14), cuda_units=1)
    assert tight.threads == 3 and tight.host_threads == 2 and "limited by memory" in tight.why
    none = split_threads(par(16, 12.1), cuda_units=1)
    assert none.threads == 1 and "no memory to spare" in none.why
    farm = Parallelism(32, 1, "farm")  # no budget given: a farm's jobs
    assert split_threads(farm, cuda_units=1).threads == 1


# ----------------------------------------------------------------------------- ninja -n


@pytest.mark.unit
def test_dry_run_output_counts_units_by_language() -> None:
    text = ("Building CUDA object CMakeFiles/_cuda_C.dir/csrc/cuda/saxpy.cu.o\n"
            "Building CXX object CMakeFiles/_C.dir/csrc/module_C.cpp.o\n"
            "Building C object CMakeFiles/x.dir/a.c.o\n"
            "Linking CXX shared module _cuda_C.cpython-312-x86_64-linux-gnu.so\n")
    pending = parse_dry_run(text)
    assert pending.cuda == ["CMakeFiles/_cuda_C.dir/csrc/cuda/saxpy.cu.o"]
    assert len(pending.other) == 2 and pending.steps == 4 and not pending.regenerates
    assert parse_dry_run("ninja: no work to do.\n").steps == 0
    assert parse_dry_run("Re-running CMake...\n").regenerates


# ----------------------------------------------------------------------------- environment


@pytest.mark.unit
def test_presets_append_to_the_users_flags_and_hash_them() -> None:
    env = cc.nvcc_environment(cc.CacheConfig())
    assert env["NVCC_APPEND_FLAGS"] == "$penv{NVCC_APPEND_FLAGS} $penv{VLLM_DEV_NVCC_APPEND_FLAGS}"
    # the key: the user's two variables, never vllm-dev's own addition
    assert "NVCC_APPEND_FLAGS" in env["CCACHE_NAMESPACE"]
    assert "NVCC_PREPEND_FLAGS" in env["CCACHE_NAMESPACE"]
    assert cc.NVCC_EXTRA_ENV not in env["CCACHE_NAMESPACE"]
    assert env["CCACHE_NAMESPACE"].startswith("$penv{CCACHE_NAMESPACE}")  # yours kept
    assert "CCACHE_NAMESPACE" not in cc.nvcc_environment(cc.CacheConfig(kind="sccache"))
    doc = render({"release": PresetTemplate("release", "", "Release")},
                 PresetInputs(python="/p", device="cuda", jobs=2, nvcc_threads=1,
                              build_environment={**cc.base_environment(cc.CacheConfig()),
                                                 **env}))
    build = {p["name"]: p for p in doc["buildPresets"]}["release"]  # builds only: no configure
    assert build["environment"]["NVCC_APPEND_FLAGS"] == env["NVCC_APPEND_FLAGS"]
    assert build["environment"]["CCACHE_NAMESPACE"] == env["CCACHE_NAMESPACE"]


# ----------------------------------------------------------------------------- real builds


def _nvcc_logger(tmp_path: Path) -> tuple[Path, Path]:
    """An nvcc wrapper that notes the NVCC_APPEND_FLAGS each compile saw (words joined by one
    space), then runs nvcc."""
    assert NVCC is not None
    log = tmp_path / "nvcc-flags.log"
    wrapper = tmp_path / "nvcc-bin" / "nvcc"
    wrapper.parent.mkdir()
    note = f'echo "[$(echo $NVCC_APPEND_FLAGS)]" >> {log}'
    wrapper.write_text(f"#!/bin/sh\ncase \" $* \" in *' -c '*) {note} ;; esac\n"
                       f"exec {NVCC} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, log


def _report(project: Project) -> dict:
    return json.loads((project.build_dir / "vllm-dev-report.json").read_text())


def _add_kernel(project: Project, name: str) -> None:
    saxpy = project.root / "csrc" / "cuda" / "saxpy.cu"
    saxpy.write_text(saxpy.read_text()
                     + f"\n__global__ void {name}(float* x) {{ x[threadIdx.x] += 1.0f; }}\n")


@requires_nvcc
def test_split_edit_then_clean_rebuild_hits_every_object(cuda_project: Project,
                                                        tmp_path: Path) -> None:
    project = cuda_project
    wrapper, log = _nvcc_logger(tmp_path)
    project.env.update(CUDACXX=str(wrapper), VLLM_DEV_JOBS="2")
    project.run("build", "--plain")
    _add_kernel(project, "vllm_dev_split_probe")
    dry = project.run("--dry", "build", "--plain")  # --dry says it too (and compiles nothing)
    assert "split: -split-compile=2 for 1 CUDA unit(s)" in dry.stderr, dry.stderr
    assert "VLLM_DEV_NVCC_APPEND_FLAGS=-split-compile=2" in dry.stderr
    log.write_text("")
    done = project.run("build", "--plain")
    assert "split: -split-compile=2 for 1 CUDA unit(s)" in done.stderr, done.stderr
    assert log.read_text().split() == ["[-split-compile=2]"]  # the one compile got it
    report = _report(project)
    assert report["split"]["threads"] == 2 and "split" in report["phases"]
    assert project.value("_cuda_C") == 1234

    # A clean rebuild (no split: every unit pending) hits every object, the split one too.
    project.run("clean")
    log.write_text("")
    rebuilt = project.run("build", "--plain")
    assert "-split-compile" not in log.read_text()
    cache = _report(project)["cache"]
    assert cache["misses"] == 0 and cache["hits"] >= 4, rebuilt.stderr

    # Nothing to do: the `ninja -n` the split asks already said so; no `cmake --build` runs.
    noop = project.run("build", "--plain")
    assert "--build" not in noop.stderr and "0 ninja step(s)" in noop.stderr, noop.stderr

    # --no-split: the same one-unit edit, no split
    _add_kernel(project, "vllm_dev_split_probe_2")
    log.write_text("")
    off = project.run("build", "--plain", "--no-split")
    assert "-split-compile" not in log.read_text() and "split: -split" not in off.stderr
    assert _report(project)["split"]["why"] == "off: --no-split"


@requires_nvcc
def test_one_arch_gets_the_host_thread_and_no_warning_of_it(cuda_project: Project,
                                                           tmp_path: Path) -> None:
    """One arch at nvcc_threads 1: ``-t 2`` beside the split (after the command's own
    ``--threads=1``, which makes nvcc warn on every such compile: the build drops that line),
    outside the cache key like the split."""
    project = cuda_project
    wrapper, log = _nvcc_logger(tmp_path)
    project.env.update(CUDACXX=str(wrapper), VLLM_DEV_JOBS="2")
    project.run("build", "--plain", "--arch", "7.5")
    _add_kernel(project, "vllm_dev_host_thread_probe")
    log.write_text("")
    done = project.run("build", "--plain")  # the arch is remembered
    assert "split: -split-compile=2 -t 2 for 1 CUDA unit(s)" in done.stderr, done.stderr
    assert log.read_text().split("\n")[0] == "[-split-compile=2 -t 2]"
    commands = json.loads((project.build_dir / "compile_commands.json").read_text())
    assert any("--threads=1" in c.get("command", "") for c in commands)  # so nvcc did warn
    assert "incompatible redefinition for option 'threads'" not in done.stderr, done.stderr
    assert _report(project)["split"]["host_threads"] == 2
    assert project.value("_cuda_C") == 1234
    project.run("clean")
    project.run("build", "--plain")
    cache = _report(project)["cache"]
    assert cache["misses"] == 0 and cache["hits"] >= 4, cache


@requires_nvcc
def test_users_nvcc_flags_are_kept_and_part_of_the_cache_key(cuda_project: Project,
                                                            tmp_path: Path) -> None:
    """``NVCC_APPEND_FLAGS=-G`` (device debug info) must never be served the object built
    without it: ccache does not see nvcc's environment, vllm-dev's presets hash it."""
    project = cuda_project
    wrapper, log = _nvcc_logger(tmp_path)
    project.env.update(CUDACXX=str(wrapper), VLLM_DEV_JOBS="2")
    project.run("build", "--plain")
    obj = project.build_dir / "CMakeFiles" / "_cuda_C.dir" / "csrc" / "cuda" / "saxpy.cu.o"
    plain_size = obj.stat().st_size
    project.run("clean")
    log.write_text("")
    debug = project.run("build", "--plain", env={"NVCC_APPEND_FLAGS": "-G"})
    cache = _report(project)["cache"]
    assert cache["hits"] == 0 and cache["misses"] >= 2, debug.stderr
    assert obj.stat().st_size != plain_size  # device debug info made it
    flags = log.read_text().split("\n")
    assert flags[0].startswith("[-G") and all(f.startswith("[-G") for f in flags if f), flags
    # The one-unit edit with -G: split appended after the user's flag, never replacing it.
    _add_kernel(project, "vllm_dev_debug_probe")
    log.write_text("")
    project.run("build", "--plain", env={"NVCC_APPEND_FLAGS": "-G"})
    assert log.read_text().split("\n")[0] == "[-G -split-compile=2]"
    # Without the flag again: the earlier non-debug objects are hits, not the debug ones.
    project.run("clean")
    project.run("build", "--plain")
    again = _report(project)["cache"]
    assert again["misses"] == 1, again  # only the edited saxpy.cu: its -G object is not served


# ----------------------------------------------------------------------------- per object


@pytest.mark.unit
def test_per_object_plan_gives_the_long_objects_the_threads() -> None:
    from vllm_dev.host.parallelism import plan_unit_threads

    h200 = par(16, 125)
    assert plan_unit_threads({"a.cu.o": 75.0}, h200) == {"a.cu.o": 16}  # the edit loop
    two = plan_unit_threads({"long.cu.o": 90.0, "short.cu.o": 10.0}, h200)
    assert two["long.cu.o"] > two["short.cu.o"] >= 1 and sum(two.values()) <= 16
    # The cold build measured on the H200: 23 CUDA objects on 16 jobs (times from its log).
    cold = {f"m{i}.cu.o": t for i, t in enumerate(
        [193.7, 171.2, 163.2, 159.3, 154.2, 152.5, 148.0, 146.2, 121.9, 108.3, 105.6, 103.9,
         98.1, 85.1, 81.7, 79.4, 42.8, 39.2, 30.5, 24.2, 20.6, 13.2, 13.1])}
    threads = plan_unit_threads(cold, h200)
    ideal = sum(cold.values()) / 16
    assert all((threads[o] > 1) == (w > ideal) for o, w in cold.items()), (threads, ideal)
    assert threads["m0.cu.o"] == 2 and threads["m22.cu.o"] == 1
    assert plan_unit_threads(dict.fromkeys(cold), h200) == dict.fromkeys(cold, 1)  # no history
    assert plan_unit_threads({"a.cu.o": 75.0}, par(16, 125, jobs=1)) == {"a.cu.o": 1}
    # Memory: 16 jobs at 4.5 GiB and the 7.5 GiB reserve leave 3.5 GiB of 83 for extra
    # threads (0.6 GiB each): 5 of the 8 wanted, the longest objects first.
    tight = plan_unit_threads(cold, par(16, 83))
    assert sum(t - 1 for t in tight.values()) == 5
    assert [tight[f"m{i}.cu.o"] for i in range(8)] == [2, 2, 2, 2, 2, 1, 1, 1]


@pytest.mark.unit
def test_the_launcher_appends_the_planned_split_and_runs_the_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    from vllm_dev.host import split_launcher as sl

    plan = {"kind": sl.KIND, "objects": {"CMakeFiles/x.dir/a.cu.o": 6}}
    (tmp_path / sl.PLAN_FILE).write_text(json.dumps(plan))
    show = tmp_path / "show"
    show.write_text('#!/bin/sh\necho "[$NVCC_APPEND_FLAGS] $*"\nexit 7\n')
    show.chmod(0o755)

    def launch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vllm_dev.host.split_launcher", str(show),
                               *args], cwd=tmp_path, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", **env}, check=False)

    planned = launch("-c", "a.cu", "-o", "CMakeFiles/x.dir/a.cu.o", NVCC_APPEND_FLAGS="-G")
    assert planned.returncode == 7  # the command's own exit code
    assert planned.stdout.startswith("[-G -split-compile=6] -c a.cu -o CMakeFiles/x.dir/a.cu.o")
    other = launch("-c", "b.cu", "-o", "CMakeFiles/x.dir/b.cu.o")
    assert other.stdout.startswith("[] -c b.cu")
    theirs = launch("-o", "CMakeFiles/x.dir/a.cu.o", NVCC_APPEND_FLAGS="-split-compile=3")
    assert theirs.stdout.startswith("[-split-compile=3] ")  # the user's split wins
    (tmp_path / sl.PLAN_FILE).unlink()
    assert launch("-o", "CMakeFiles/x.dir/a.cu.o").stdout.startswith("[] ")
    assert sl.threads_for(["nvcc", "-oCMakeFiles/x.dir/a.cu.o"], plan, {}) == 6


@requires_nvcc
def test_per_object_launcher_in_a_real_build(cuda_project: Project, tmp_path: Path) -> None:
    """The launcher configured in front of ccache (as a --define): vllm-dev writes the plan,
    and the one-unit edit's compile gets its threads through the launcher, not the env."""
    import sys

    from vllm_dev.host.split_launcher import PLAN_FILE

    project = cuda_project
    wrapper, log = _nvcc_logger(tmp_path)
    ccache = Path(sys.executable).parent / "ccache"
    launcher = f"{sys.executable};-m;vllm_dev.host.split_launcher;{ccache}"
    project.env.update(CUDACXX=str(wrapper), VLLM_DEV_JOBS="2")
    project.run("build", "--plain", "--define", f"CMAKE_CUDA_COMPILER_LAUNCHER={launcher}")
    _add_kernel(project, "vllm_dev_launcher_probe")
    log.write_text("")
    done = project.run("build", "--plain", "--define",
                       f"CMAKE_CUDA_COMPILER_LAUNCHER={launcher}")
    assert "split: up to -split-compile=2 (per object" in done.stderr, done.stderr
    assert log.read_text().split("\n")[0] == "[-split-compile=2]"
    assert "VLLM_DEV_NVCC_APPEND_FLAGS" not in done.stderr  # not through the environment
    plan = json.loads((project.build_dir / PLAN_FILE).read_text())
    assert plan["objects"] == {"CMakeFiles/_cuda_C.dir/csrc/cuda/saxpy.cu.o": 2}
    # the times the next plan reads: the timing history (the estimate's), which outlives clean
    history = list((project.root / ".vllm-dev" / "history").glob("release-cuda-*.json"))
    assert len(history) == 1
    assert "CMakeFiles/_cuda_C.dir/csrc/cuda/saxpy.cu.o" in json.loads(history[0].read_text())[
        "steps"]
    assert project.value("_cuda_C") == 1234
