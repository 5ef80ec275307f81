"""The cost of a big build before it starts (steps/cost.py, reporting/estimate.py, history.py).

Unit cases: when to ask, the estimate from history and from the model, what the history takes
as a hit or a miss, expected cache hits. Flow cases on the test project (its whole build is
seconds, so ``--confirm-minutes`` is set tiny): the block in a script (printed, no question, the
build goes on), the question in a terminal (a pseudo-terminal: "n" builds nothing, "y" builds),
``--yes``, and the history kept across ``vllm-dev clean``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from test_affected import commit_all, git
from vllm_dev.reporting.estimate import Step, estimate, model_seconds
from vllm_dev.reporting.history import History, Load, StepTime, inputs_digest
from vllm_dev.reporting.ninja_log import NinjaEntry
from vllm_dev.steps.cost import DEFAULT_MINUTES, CostBlock, should_ask, threshold_minutes

from conftest import VLLM_DEV, Project, clean_env


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def ask(**kw: object) -> bool:
    given = {"confirm_minutes": None, "yes": False, "allowed": True, "environ": {},
             "stdin": Tty(), "stdout": Tty(), **kw}
    return should_ask(**given)  # type: ignore[arg-type]


@pytest.mark.unit
def test_asks_only_in_a_terminal_and_never_when_told_not_to() -> None:
    assert ask()
    assert not ask(stdin=io.StringIO())  # piped input: a script
    assert not ask(stdout=io.StringIO())  # output to a file or a pipe
    assert not ask(environ={"CI": "true"})
    assert not ask(yes=True)
    assert not ask(allowed=False)  # a Nox session, `test`, --watch
    assert not ask(confirm_minutes=0.0)
    assert ask(confirm_minutes=30.0)


@pytest.mark.unit
def test_threshold() -> None:
    class S:
        confirm_minutes: float | None = None

    assert threshold_minutes(S()) == DEFAULT_MINUTES
    S.confirm_minutes = 0.0  # never ask; the block still shows above the default
    assert threshold_minutes(S()) == DEFAULT_MINUTES
    S.confirm_minutes = 12.5
    assert threshold_minutes(S()) == 12.5


def _entry(output: str, seconds: float) -> NinjaEntry:
    return NinjaEntry(0, int(seconds * 1000), output)


@pytest.mark.unit
def test_history_takes_the_shortest_steps_as_the_hits(tmp_path: Path) -> None:
    header = tmp_path / "a.h"
    header.write_text("x")
    history = History(tmp_path / ".vllm-dev" / "history" / "h.json")  # the checkout: tmp_path
    entries = [_entry("a.o", 30.0), _entry("b.o", 0.05), _entry("lib.so", 2.0)]
    deps = {str(tmp_path / "build" / "a.o"): [str(header)]}
    history.record(entries, hits=1, cache="ccache:/c", deps=deps, build_dir=tmp_path / "build",
                   wall=31.0, jobs=2)
    assert history.steps["a.o"].miss == 30.0 and history.steps["a.o"].hit is None
    assert history.steps["b.o"].hit == 0.05 and history.steps["b.o"].miss is None
    assert history.steps["lib.so"].miss == 2.0  # a link is never a cache hit
    history.save()
    again = History.load(tmp_path / ".vllm-dev" / "history" / "h.json")
    assert again.inputs_of("a.o") == [str(header)] and again.builds[0].jobs == 2
    # a hit is expected while the files it read are as they were, through the same cache
    assert again.expected_hit("a.o", "ccache:/c")
    assert not again.expected_hit("a.o", "ccache:/elsewhere")
    os.utime(header, ns=(1, 1))  # the checkout's files count by content: touched, still a hit
    assert History.load(again.path).expected_hit("a.o", "ccache:/c")
    header.write_text("y")
    assert not History.load(again.path).expected_hit("a.o", "ccache:/c")
    assert inputs_digest([str(header)], by_content=str(tmp_path)) != again.steps["a.o"].digest


@pytest.mark.unit
def test_unknown_hit_count_keeps_only_surely_missed_times(tmp_path: Path) -> None:
    history = History(tmp_path / "h.json")
    history.record([_entry("a.o", 5.0), _entry("b.o", 0.2)], hits=None, cache="ccache:/c",
                   deps={}, build_dir=tmp_path, wall=None, jobs=2)
    assert history.steps["a.o"].miss == 5.0
    assert history.steps["b.o"].miss is None and not history.builds


@pytest.mark.unit
def test_estimate_from_history_model_and_hits(tmp_path: Path) -> None:
    history = History(tmp_path / "h.json")
    for i in range(10):
        history.steps[f"o{i}.o"] = StepTime(miss=60.0)
    steps = [Step(f"o{i}.o", True) for i in range(10)]
    timed = estimate(steps, history, device="cpu", arch_count=1, jobs=2, cpus=2, farm=False,
                     cache="")
    assert timed.timed == 10 and timed.hits == 0
    assert timed.seconds == pytest.approx(10 * 60 / 2 + 0.3)
    assert timed.low == pytest.approx(timed.seconds * 0.8 - 0.5)
    assert timed.high == pytest.approx(timed.seconds * 1.3 + 0.5)
    # more jobs than CPUs compile no faster here; a farm's jobs do
    assert estimate(steps, history, device="cpu", arch_count=1, jobs=8, cpus=2, farm=False,
                    cache="").seconds == timed.seconds
    assert estimate(steps, history, device="cpu", arch_count=1, jobs=10, cpus=2, farm=True,
                    cache="").seconds == pytest.approx(60 + 0.3)
    # nothing known: the model, with a wider range
    unknown = [Step(f"_deps/x/{i}.cpp.o", True) for i in range(10)]
    model = estimate(unknown, history, device="cpu", arch_count=1, jobs=2, cpus=2, farm=False,
                     cache="")
    assert model.timed == 0 and model.high == pytest.approx(model.seconds * 1.6 + 0.5)
    assert model_seconds(Step("k.cu.o", True), device="cuda", arch_count=3) == \
        pytest.approx(model_seconds(Step("k.cu.o", True), device="cuda", arch_count=1) * 2.2)


@pytest.mark.unit
def test_block_lines() -> None:
    from vllm_dev.reporting.estimate import Estimate

    block = CostBlock(objects=504, steps=510, targets=["_C", "fs_io_C"], every=True,
                      estimate=Estimate(510, 504, 0, 504, 2, 2820.0, 2256.0, 3666.0),
                      reasons=["W is unknown: no wheel recorded"], narrow="`vllm-dev setup`")
    assert block.over(5) and not block.over(60)
    assert block.lines() == [
        "this build compiles 504 object(s) (510 ninja step(s)) for every target (2: _C, "
        "fs_io_C): about 38 to 61 min at 2 job(s) (504 of 504 objects timed by this "
        "checkout's history; 0 compiler-cache hit(s) expected)",
        "  why: W is unknown: no wheel recorded",
        "  to narrow it: `vllm-dev setup`"]


# ----------------------------------------------------------------------------- flow


@pytest.fixture
def unknown_w(project: Project) -> Project:
    """A git checkout of the test project with no W: a build selects every target."""
    (project.root / ".gitignore").write_text(".venv/\ncmake-build-*/\n*.so\n*.egg-info/\n")
    git(project.root, "init", "-q", "-b", "main")
    commit_all(project.root, "W")
    project.run("prime")
    return project


def _objects(project: Project, mark: int) -> list[str]:
    log = project.build_dir / ".ninja_log"
    return [o for o in project.ninja_log_entries(since=mark) if o.endswith(".o")] \
        if log.is_file() else []


def test_block_in_a_script_goes_on_and_history_outlives_clean(unknown_w: Project) -> None:
    p = unknown_w
    done = p.run("build", "--confirm-minutes", "0.0001")  # stdin is not a terminal: no question
    block = [ln for ln in done.stderr.splitlines() if "this build compiles" in ln]
    assert len(block) == 1 and "compiles 4 object(s)" in block[0], done.stderr
    assert "no history of these objects here" in block[0]
    assert "[y/N]" not in done.stderr and p.value("_C") == 42
    history = list((p.root / ".vllm-dev" / "history").glob("release-cpu-*.json"))
    assert len(history) == 1
    recorded = json.loads(history[0].read_text())
    steps = recorded["steps"]
    assert "CMakeFiles/_C.dir/csrc/ops/add.cpp.o" in steps
    # the load the build met at its start, with the build and with each compile time it took
    load, online, cpus, jobs = recorded["load"]["CMakeFiles/_C.dir/csrc/ops/add.cpp.o"]
    assert load >= 0 and online >= cpus >= 1 and 1 <= jobs <= 4
    assert recorded["builds"][-1]["load"] == load and recorded["builds"][-1]["cpus"] == cpus
    # after clean (the build dir and its .ninja_log gone), the history still times the objects,
    # and a warm compiler cache is expected to hit
    p.run("clean")
    again = p.run("build", "--confirm-minutes", "0.0001")
    block = [ln for ln in again.stderr.splitlines() if "this build compiles" in ln]
    assert "4 of 4 objects timed by this checkout's history; 4 compiler-cache hit(s) " \
           "expected" in block[0], again.stderr
    # below the threshold: nothing said
    p.run("clean")
    quiet = p.run("build")
    assert "this build compiles" not in quiet.stderr


def _in_a_terminal(project: Project, *args: str, answer: bytes) -> tuple[int, str]:
    """vllm-dev with stdin and stdout on a pseudo-terminal, answering the question (the
    environment's ``CI``, which .ci/run sets and under which vllm-dev never asks, is left out
    unless the project's own environment sets it)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([VLLM_DEV, *args], cwd=project.root, stdin=follower,
                            stdout=follower, stderr=subprocess.PIPE,
                            env={**{k: v for k, v in clean_env().items() if k != "CI"},
                                 **project.env})
    os.close(follower)
    err = b""
    deadline = time.monotonic() + 300
    os.set_blocking(proc.stderr.fileno(), False)  # type: ignore[union-attr]
    answered = False
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr, leader], [], [], 0.1)
        if proc.stderr in ready:
            err += proc.stderr.read() or b""  # type: ignore[union-attr]
        if leader in ready:
            with contextlib.suppress(OSError):
                os.read(leader, 65536)
        if not answered and b"[y/N]" in err:
            os.write(leader, answer)
            answered = True
    proc.wait(timeout=60)
    err += proc.stderr.read() or b""  # type: ignore[union-attr]
    os.close(leader)
    return proc.returncode, err.decode(errors="replace")


def test_a_terminal_is_asked(unknown_w: Project) -> None:
    p = unknown_w
    mark = p.ninja_log_mark()
    code, err = _in_a_terminal(p, "build", "--confirm-minutes", "0.0001", answer=b"n\n")
    assert code == 1 and "Traceback" not in err, err
    assert "vllm-dev: build it? [y/N]" in err
    assert re.search(r"vllm-dev: nothing built \(answered no\); to narrow it: `vllm-dev setup`",
                     err), err
    assert _objects(p, mark) == []
    code, err = _in_a_terminal(p, "build", "--confirm-minutes", "0.0001", answer=b"y\n")
    assert code == 0, err
    assert len(_objects(p, mark)) == 4
    # --yes answers for one run: the block, no question, the build
    p.run("clean")
    code, err = _in_a_terminal(p, "build", "--yes", "--confirm-minutes", "0.0001",
                               answer=b"n\n")
    assert code == 0 and "this build compiles" in err and "[y/N]" not in err, err
    # with CI set nobody is asked either
    p.run("clean")
    p.env["CI"] = "1"
    code, err = _in_a_terminal(p, "build", "--confirm-minutes", "0.0001", answer=b"n\n")
    assert code == 0 and "this build compiles" in err and "[y/N]" not in err, err


@pytest.mark.unit
def test_overhead_of_a_long_build_grows_with_the_build_not_a_short_one(tmp_path: Path) -> None:
    """A 25-minute build's 30-second tail is a fraction of it, not a fixed cost: a one-object
    build after it is not estimated 30 seconds longer."""
    from vllm_dev.reporting.history import BuildTime

    history = History(tmp_path / "h.json")
    history.steps["a.o"] = StepTime(miss=2.0)
    history.steps["a.so"] = StepTime(miss=1.0)
    history.builds = [BuildTime(wall=1537.7, work=3012.5, jobs=2, steps=38, critical=808.8),
                      BuildTime(wall=3.2, work=3.0, jobs=2, steps=2, critical=3.0)]
    small = estimate([Step("a.o", True), Step("a.so", False)], history, device="cpu",
                     arch_count=1, jobs=2, cpus=2, farm=False, cache="")
    assert small.seconds == pytest.approx(3.0 * (1 + 31.45 / 1506.25) + 0.2, rel=1e-3)


# ----------------------------------------------------------------------------- the load


@pytest.mark.unit
def test_contention_is_the_cpu_share_a_compile_gets() -> None:
    """max(1, others' load per CPU + own compiles per usable CPU)."""
    assert Load(0.0, 2, 2).contention(2) == 1.0  # 2 compiles on 2 idle CPUs: one each
    assert Load(3.0, 2, 2).contention(2) == 2.5  # 5 runnable tasks on 2 CPUs
    assert Load(0.5, 2, 2).contention(1) == 1.0  # one compile beside half a task: a CPU free
    assert Load(1.0, 2, 2, jobs=2).contention() == 1.5  # the jobs it recorded
    assert Load(4.0, 2, 2).contention(4) == 4.0  # more jobs than CPUs share them too
    # a container given 2 of a 16-CPU host's CPUs: the load average counts the whole host
    assert Load(16.0, 16, 2).contention(2) == 2.0


@pytest.mark.unit
def test_history_keeps_the_load_each_compile_time_met(tmp_path: Path) -> None:
    history = History(tmp_path / ".vllm-dev" / "history" / "h.json")
    entries = [_entry("a.o", 30.0), _entry("b.o", 0.05), _entry("lib.so", 2.0)]
    history.record(entries, hits=1, cache="ccache:/c", deps={}, build_dir=tmp_path / "build",
                   wall=31.0, jobs=8, load=Load(3.2, 2, 2))
    # its compiles at once: 8 jobs, but 2 objects
    assert history.loads["a.o"] == Load(3.2, 2, 2, jobs=2) == history.loads["lib.so"]
    assert "b.o" not in history.loads  # a cache hit's time is not corrected: no load kept
    build = history.builds[-1]
    assert (build.load, build.online, build.cpus) == (3.2, 2, 2)
    history.save()
    saved = json.loads(history.path.read_text())
    assert saved["load"]["a.o"] == [3.2, 2, 2, 2] and saved["version"] == 1
    assert all(len(entry) == 5 for entry in saved["steps"].values())  # as the older vllm-dev
    again = History.load(history.path)
    assert again.loads == history.loads and again.builds == history.builds
    # a new time with no known load (a farm's build, an interrupted one...) drops the old load
    again.record([_entry("a.o", 12.0)], hits=0, cache="ccache:/c", deps={},
                 build_dir=tmp_path / "build", wall=None, jobs=2)
    assert again.steps["a.o"].miss == 12.0 and "a.o" not in again.loads
    assert again.loads["lib.so"].load == 3.2  # not rebuilt: kept


@pytest.mark.unit
def test_history_with_loads_reads_in_the_vllm_dev_before_and_back(tmp_path: Path) -> None:
    """The loads are optional fields (no version bump): the vllm-dev before unpacked each step
    as five items and read builds by their keys; its files (no loads) read here with none."""
    import dataclasses

    from vllm_dev.state import records

    @dataclasses.dataclass
    class BuildBefore:  # history.BuildTime as the vllm-dev before declared it
        wall: float
        work: float
        jobs: int
        steps: int
        critical: float = 0.0

    history = History(tmp_path / "h.json")
    history.record([_entry("a.o", 30.0)], hits=0, cache="", deps={}, build_dir=tmp_path,
                   wall=30.5, jobs=2, load=Load(1.0, 2, 2))
    history.save()
    body = json.loads(history.path.read_text())
    for miss, _hit, _digest, _cache, _inputs in body["steps"].values():  # the decoder before
        assert miss == 30.0
    assert records.from_json(BuildBefore, body["builds"][0]).wall == 30.5
    # what the vllm-dev before writes back: no "load", no build loads
    body.pop("load")
    body["builds"] = [records.to_json(records.from_json(BuildBefore, b)) for b in body["builds"]]
    history.path.write_text(json.dumps(body))
    older = History.load(history.path)
    assert older.steps["a.o"].miss == 30.0 and not older.loads
    assert older.builds[0].load is None
    now = estimate([Step("a.o", True)], older, device="cpu", arch_count=1, jobs=2, cpus=2,
                   farm=False, cache="", now=Load(5.0, 2, 2))
    assert now.factor == 1.0 and now.load_then is None and "load" not in now.basis()


def _timed(tmp_path: Path, load: Load | None, count: int = 10) -> History:
    history = History(tmp_path / "h.json")
    for i in range(count):
        history.steps[f"o{i}.o"] = StepTime(miss=60.0)
        if load is not None:
            history.loads[f"o{i}.o"] = load
    return history


@pytest.mark.unit
def test_estimate_scales_history_times_by_the_load_now_against_then(tmp_path: Path) -> None:
    steps = [Step(f"o{i}.o", True) for i in range(10)]
    kw: dict[str, object] = {"device": "cpu", "arch_count": 1, "jobs": 2, "cpus": 2,
                             "farm": False, "cache": ""}
    quiet = _timed(tmp_path, Load(0.0, 2, 2, jobs=2))  # timed on an idle machine
    as_timed = estimate(steps, quiet, **kw)  # type: ignore[arg-type]
    assert as_timed.seconds == pytest.approx(10 * 60 / 2 + 0.3) and as_timed.factor == 1.0
    # 3 other tasks now: each compile gets 2/5 of a CPU, 2.5 times as long
    busy = estimate(steps, quiet, now=Load(3.0, 2, 2), **kw)  # type: ignore[arg-type]
    assert busy.factor == pytest.approx(2.5)
    assert busy.seconds == pytest.approx(10 * 60 * 2.5 / 2 + 0.3)
    assert busy.low == pytest.approx(busy.seconds * 0.8 - 0.5)
    assert busy.high == pytest.approx(busy.seconds * 1.3 + 0.5)
    assert busy.basis().endswith("; load 3.0 now, 0.0 when timed: x2.5")
    # the reverse: timed at load 4 (contention 3), idle now: a third
    loaded = _timed(tmp_path, Load(4.0, 2, 2, jobs=2))
    idle = estimate(steps, loaded, now=Load(0.0, 2, 2), **kw)  # type: ignore[arg-type]
    assert idle.factor == pytest.approx(1 / 3)
    assert idle.seconds == pytest.approx(10 * 60 / 3 / 2 + 0.3)
    assert "load 0.0 now, 4.0 when timed: x0.3" in idle.basis()
    # the same load then and now: no factor, nothing said
    same = estimate(steps, loaded, now=Load(4.0, 2, 2), **kw)  # type: ignore[arg-type]
    assert same.seconds == pytest.approx(as_timed.seconds) and "load" not in same.basis()
    # no load recorded, no load now, or a farm (its compiles run elsewhere): as timed
    unknown = _timed(tmp_path, None)
    for history, now, farm in ((unknown, Load(3.0, 2, 2), False), (quiet, None, False),
                               (quiet, Load(3.0, 2, 2), True)):
        found = estimate(steps, history, now=now, **{**kw, "farm": farm})  # type: ignore[arg-type]
        assert found.factor == 1.0 and found.load_then is None and "load" not in found.basis()
    # one object: one compile at once, so one other task still leaves it a CPU
    one = estimate(steps[:1], quiet, now=Load(1.0, 2, 2), **kw)  # type: ignore[arg-type]
    assert one.factor == 1.0
    # a mix: only the steps whose load is known are scaled, the basis weighs their loads
    mixed = _timed(tmp_path, Load(0.0, 2, 2, jobs=2))
    mixed.loads["o0.o"] = Load(2.0, 2, 2, jobs=2)  # contention 2
    del mixed.loads["o1.o"]
    found = estimate(steps, mixed, now=Load(2.0, 2, 2), **kw)  # type: ignore[arg-type]
    assert found.seconds == pytest.approx((60 + 60 + 8 * 60 * 2) / 2 + 0.3)
    assert found.factor == pytest.approx((60 + 8 * 120) / 540)
    assert found.load_then == pytest.approx(2.0 / 9)


@pytest.mark.unit
def test_cpu_model_times_are_scaled_from_the_load_they_were_measured_at(tmp_path: Path) -> None:
    """The CPU model was measured at others' load 2.5 on 2 CPUs at 2 jobs (contention 2.25);
    the CUDA model's load is not known: never scaled."""
    history = History(tmp_path / "h.json")
    kw: dict[str, object] = {"arch_count": 1, "jobs": 2, "cpus": 2, "farm": False, "cache": ""}
    deps = [Step(f"_deps/x/{i}.cpp.o", True) for i in range(10)]
    measured = estimate(deps, history, device="cpu", **kw)  # type: ignore[arg-type]
    idle = estimate(deps, history, device="cpu", now=Load(0.0, 2, 2), **kw)  # type: ignore[arg-type]
    assert idle.factor == pytest.approx(1 / 2.25)
    assert idle.seconds - 0.3 == pytest.approx((measured.seconds - 0.3) / 2.25)
    assert "load 0.0 now, 2.5 when the model was measured: x0.4" in idle.basis()
    assert idle.high == pytest.approx(idle.seconds * 1.6 + 0.5)
    cuda = [Step(f"k{i}.cu.o", True) for i in range(4)]
    loaded = estimate(cuda, history, device="cuda", now=Load(6.0, 2, 2), **kw)  # type: ignore[arg-type]
    assert loaded.factor == 1.0 and "load" not in loaded.basis()
