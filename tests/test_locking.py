"""Two builds at once on one checkout and preset: the second waits (naming the holder) or, with
--no-wait, fails at once; never two ninjas in one build dir; a killed build's lock is taken over.

Real ``vllm-dev build`` processes on a real project; the first is kept busy by a slow build step
(see fault_tools.py), which is also what a second ninja would collide with.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

import fault_tools as ft
from vllm_dev.process.locking import HOLDER_NAME, build_lock, read_holder

from conftest import Project


@pytest.fixture
def hooked(project: Project) -> Project:
    ft.add_hooks(project)
    return project


def _holder_pid(project: Project) -> int | None:
    holder = read_holder(project.build_dir)
    return holder.pid if holder else None


def _intervals(log: Path) -> list[tuple[float, float]]:
    starts: dict[str, float] = {}
    spans = []
    for line in log.read_text().splitlines():
        kind, pid, stamp = line.split()
        if kind == "start":
            starts[pid] = float(stamp)
        else:
            spans.append((starts.pop(pid), float(stamp)))
    assert not starts, f"a slow step never ended: {starts}"
    return sorted(spans)


class NinjaWatch(threading.Thread):
    """Samples /proc while builds run: the most ninjas ever seen at once in the build dir."""

    def __init__(self, build_dir: Path) -> None:
        super().__init__(daemon=True)
        self.build_dir = build_dir
        self.most = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.build_dir.is_dir():
                self.most = max(self.most, len(ft.ninjas_in(self.build_dir)))
                self.samples += 1
            time.sleep(0.02)


def test_second_build_waits_for_the_first_naming_it(hooked: Project, tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    env = {"VD_COMPILE_SLEEP": "3", "VD_LOG": str(log)}
    watch = NinjaWatch(hooked.build_dir)
    watch.start()
    first = ft.spawn(hooked, "build", env=env)
    ft.wait_for(lambda: _holder_pid(hooked) == first.proc.pid, what="the first build's lock")
    ft.wait_for(lambda: log.is_file(), what="the first build's slow step")
    second = ft.spawn(hooked, "build", env=env, program=ft.INVOKE)  # the other front end
    rc1, _, err1 = first.finish()
    rc2, _, err2 = second.finish()
    watch.stop.set()
    watch.join()
    assert rc1 == 0, err1
    assert rc2 == 0, err2
    assert f"waiting for pid {first.proc.pid} (`vllm-dev build`, since " in err2
    assert "Traceback" not in err1 + err2
    summary = next(ln for ln in err2.splitlines() if "build release ok in" in ln)
    assert "waiting for lock" in summary, summary  # the wait is in the report, not hidden
    spans = _intervals(log)
    assert len(spans) == 2
    assert spans[0][1] <= spans[1][0], f"the two builds' steps overlapped: {spans}"
    assert watch.samples > 10 and watch.most == 1, (watch.samples, watch.most)
    print(f"\nninjas in the build dir: at most {watch.most} in {watch.samples} samples")
    assert not (hooked.build_dir / HOLDER_NAME).exists()  # released cleanly
    assert hooked.value("_C") == 42 and hooked.value("_fast_C") == 7


def test_no_wait_fails_fast_with_one_line(hooked: Project, tmp_path: Path) -> None:
    first = ft.spawn(hooked, "build", env={"VD_COMPILE_SLEEP": "4", "VD_LOG": str(tmp_path / "l")})
    ft.wait_for(lambda: (tmp_path / "l").is_file(), what="the first build's slow step")
    for how in (("build", "--no-wait"), ("install", "--no-wait")):
        started = time.monotonic()
        done = hooked.run(*how, check=False)
        took = time.monotonic() - started
        assert done.returncode == 1, done.stderr
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("vllm-dev: ")
                 and "$ " not in ln]
        assert lines[-1].startswith(f"vllm-dev: build dir {hooked.build_dir} is busy: pid "
                                    f"{first.proc.pid} (`vllm-dev build`"), done.stderr
        assert "Traceback" not in done.stderr
        assert first.proc.poll() is None and took < 3.5, took  # it did not wait for the first
    by_env = hooked.run("build", check=False, env={"VLLM_DEV_NO_WAIT": "1"})
    assert by_env.returncode == 1 and "is busy" in by_env.stderr
    rc, _, err = first.finish()
    assert rc == 0, err


def test_stale_lock_of_a_killed_build_is_taken_over(hooked: Project, tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    victim = ft.spawn(hooked, "build", env={"VD_COMPILE_SLEEP": "60", "VD_LOG": str(log)})
    ft.wait_for(lambda: log.is_file(), what="the slow step")
    os.kill(victim.proc.pid, signal.SIGKILL)  # no chance to clean up: its ninja keeps running
    victim.finish()
    # Its build keeps running (ninja until it next writes to the dead pipe; the slow job longer).
    assert ft.tagged_processes(victim.token), "the killed build's children should still run"
    assert (hooked.build_dir / HOLDER_NAME).is_file()
    started = time.monotonic()
    done = hooked.run("build", env={"VD_COMPILE_SLEEP": "0"})
    assert time.monotonic() - started < 30
    assert (f"stale lock in {hooked.build_dir}: pid {victim.proc.pid} (`vllm-dev build`"
            in done.stderr)
    assert "stopping" in done.stderr and "left running" in done.stderr
    assert not ft.tagged_processes(victim.token), "the killed build's children survived"
    assert hooked.value("_C") == 42 and hooked.value("_fast_C") == 7


@pytest.mark.unit
def test_lock_is_reentrant_and_a_free_lock_with_no_note_is_silent(tmp_path: Path) -> None:
    said: list[str] = []
    with build_lock(tmp_path / "b", wait=False, say=said.append, command="outer") as stale:
        assert stale is None
        with build_lock(tmp_path / "b", wait=False, say=said.append, command="inner"):
            assert read_holder(tmp_path / "b").command == "outer"  # type: ignore[union-attr]
        assert (tmp_path / "b" / HOLDER_NAME).is_file()
    assert said == [] and not (tmp_path / "b" / HOLDER_NAME).exists()


def test_clean_waits_for_a_running_build_and_a_waiter_can_be_interrupted(
        hooked: Project, tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    first = ft.spawn(hooked, "build", env={"VD_COMPILE_SLEEP": "4", "VD_LOG": str(log)})
    ft.wait_for(lambda: log.is_file(), what="the first build's slow step")
    waiter = ft.spawn(hooked, "build", stderr_to=tmp_path / "waiter.err")
    # Reached the lock: it said so and sleeps in the lock's poll loop.
    ft.wait_for(lambda: waiter.proc.poll() is not None
                or ("waiting for pid" in waiter.stderr_so_far()
                    and ft.sleeping(waiter.proc.pid)), what="the waiter to reach the lock")
    os.kill(waiter.proc.pid, signal.SIGINT)
    rc, _, err = waiter.finish(timeout=30)
    assert rc == 130 and "Traceback" not in err, err
    assert "waiting for pid" in err
    cleaner = ft.spawn(hooked, "clean")
    rc, _, err = cleaner.finish(timeout=60)
    assert rc == 0, err
    assert f"waiting for pid {first.proc.pid} (`vllm-dev build`" in err
    rc1, _, err1 = first.finish()
    assert rc1 == 0, err1  # the build was not pulled from under its feet
    assert not hooked.build_dir.exists()
    assert "end" in log.read_text()
