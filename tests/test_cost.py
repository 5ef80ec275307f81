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
from vllm_dev.reporting.history import History, StepTime, inputs_digest
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
    steps = json.loads(history[0].read_text())["steps"]
    assert "CMakeFiles/_C.dir/csrc/ops/add.cpp.o" in steps
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
