"""Build progress: ninja status parsing (recorded output), live streaming (real ninja), and a real
failing build whose output must arrive whole, with cmake's exit code."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vllm_dev.process.progress import (
    NINJA_STATUS_FORMAT,
    BarDisplay,
    BuildProgress,
    PlainDisplay,
    parse_status,
    short_name,
    strip_ansi,
    wants_bar,
)
from vllm_dev.process.streaming import LineSplitter, run_streaming

from conftest import Project

# What ninja printed (through a pipe) for a clean build of the test project.
RECORDED_PLAIN = """\
[1/6] Building CXX object CMakeFiles/_C.dir/csrc/ops/add.cpp.o
[2/6] Building CXX object CMakeFiles/_C.dir/csrc/ops/scale.cpp.o
In file included from /src/csrc/fast/module_fast.cpp:1:
/src/csrc/fast/module_fast.cpp:3:2: warning: #warning "careful" [-Wcpp]
[3/6] Building CXX object CMakeFiles/_fast_C.dir/csrc/fast/module_fast.cpp.o
[4/6] Linking CXX shared module _fast_C.abi3.so
[5/6] Building CXX object CMakeFiles/_C.dir/csrc/module_C.cpp.o
[6/6] Linking CXX shared module _C.abi3.so
""".splitlines()

# The same build on a pseudo-terminal with NINJA_STATUS_FORMAT: a line when a step starts
# (started count grows) and when it finishes (finished count grows).
RECORDED_TTY = [
    "[0/6|1] Building CXX object CMakeFiles/_C.dir/csrc/ops/add.cpp.o",
    "[0/6|2] Building CXX object CMakeFiles/_C.dir/csrc/ops/scale.cpp.o",
    "[1/6|2] Building CXX object CMakeFiles/_C.dir/csrc/ops/add.cpp.o",
    "[1/6|3] Building CXX object CMakeFiles/_fast_C.dir/csrc/fast/module_fast.cpp.o",
]


@pytest.mark.unit
def test_parse_status_lines_and_other_output() -> None:
    status = parse_status("[12/345] Building CUDA object CMakeFiles/_C.dir/csrc/x.cu.o")
    assert status is not None
    assert (status.finished, status.total, status.started) == (12, 345, None)
    tty = parse_status("[3/9|5] Linking CXX shared module _C.abi3.so")
    assert tty is not None and (tty.finished, tty.total, tty.started) == (3, 9, 5)
    assert parse_status("/src/a.cpp:3:2: warning: [12/34] in a message") is None
    assert parse_status("FAILED: CMakeFiles/_C.dir/a.cpp.o") is None
    assert short_name("Building CUDA object CMakeFiles/_C.dir/csrc/attention/a.cu.o") == \
        "csrc/attention/a.cu"
    assert short_name("Linking CXX shared module _C.abi3.so") == "link _C.abi3.so"


@pytest.mark.unit
def test_progress_from_recorded_pipe_output() -> None:
    progress = BuildProgress(started_at=0.0)
    for i, line in enumerate(RECORDED_PLAIN):
        progress.update(line, now=float(i))
    assert (progress.finished, progress.total) == (6, 6)
    assert progress.running == {}
    assert progress.activity() == "link _C.abi3.so"
    assert progress.install_started_at is None


@pytest.mark.unit
def test_progress_tracks_running_steps_in_terminal_mode() -> None:
    progress = BuildProgress(started_at=0.0)
    for line in RECORDED_TTY[:2]:
        progress.update(line, now=1.0)
    assert progress.activity(now=3.5) == "add.cpp 0:02, scale.cpp 0:02"
    assert progress.eta(now=1.0) is None  # nothing finished yet: no pace to extrapolate
    for line in RECORDED_TTY[2:]:
        progress.update(line, now=2.0)
    assert list(progress.running) == [
        "Building CXX object CMakeFiles/_C.dir/csrc/ops/scale.cpp.o",
        "Building CXX object CMakeFiles/_fast_C.dir/csrc/fast/module_fast.cpp.o",
    ]
    assert progress.eta(now=2.0) == 10.0  # 1 of 6 in 2 s: 5 more at 2 s each
    assert [(e.kind, short_name(e.description), e.at) for e in progress.events] == [
        ("start", "csrc/ops/add.cpp", 1.0), ("start", "csrc/ops/scale.cpp", 1.0),
        ("finish", "csrc/ops/add.cpp", 2.0), ("start", "csrc/fast/module_fast.cpp", 2.0)]
    progress.update("[6/7|7] Install the project...", now=5.0)
    assert progress.install_started_at == 5.0


@pytest.mark.unit
def test_failed_steps_and_their_first_error_line() -> None:
    """Recorded from ninja 1.13 on a terminal (coloured label, exit code) and from nvcc; the
    command line after FAILED: is not mistaken for an error even when it says -Werror."""
    progress = BuildProgress(started_at=0.0)
    for line in [
        "[0/3|1] Building CXX object CMakeFiles/_C.dir/csrc/ops/add.cpp.o",
        "\x1b[31mFAILED: [code=1] \x1b[0mCMakeFiles/_C.dir/csrc/ops/add.cpp.o ",
        "/usr/bin/c++ -Werror -o CMakeFiles/_C.dir/csrc/ops/add.cpp.o -c csrc/ops/add.cpp",
        "csrc/ops/add.cpp: In function 'int f()':",
        "csrc/ops/add.cpp:8:32: error: 'missing_name_42' was not declared in this scope",
        "csrc/ops/add.cpp:9:1: error: a second error",
        "[1/3|2] Building CUDA object CMakeFiles/_C.dir/csrc/attention/a.cu.o",
        "FAILED: CMakeFiles/_C.dir/csrc/attention/a.cu.o",
        "/usr/local/cuda/bin/nvcc -c csrc/attention/a.cu",
        'csrc/attention/a.cu(12): error: identifier "nope" is undefined',
        "[2/3|3] Linking CXX shared module _C.abi3.so",
        "FAILED: _C.abi3.so",
        "/usr/bin/c++ -shared -o _C.abi3.so",
        "/usr/bin/ld: add.o: undefined reference to `g()'",
        "ninja: build stopped: subcommand failed.",
    ]:
        progress.update(line)
    assert [(f.outputs, f.error) for f in progress.failures] == [
        (["CMakeFiles/_C.dir/csrc/ops/add.cpp.o"],
         "csrc/ops/add.cpp:8:32: error: 'missing_name_42' was not declared in this scope"),
        (["CMakeFiles/_C.dir/csrc/attention/a.cu.o"],
         'csrc/attention/a.cu(12): error: identifier "nope" is undefined'),
        (["_C.abi3.so"], "/usr/bin/ld: add.o: undefined reference to `g()'"),
    ]


@pytest.mark.unit
def test_line_splitter_handles_redraws_and_split_chunks() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append)
    text = "\r[1/2|1] a\x1b[K\r[1/2|2] b\x1b[K\nwarning: caf\u00e9\r\n\n[2/2|2] b".encode()
    for i in range(len(text)):  # byte by byte: a UTF-8 character split across reads
        splitter.feed(text[i:i + 1])
    splitter.close()
    assert lines == ["[1/2|1] a", "[1/2|2] b", "warning: caf\u00e9", "[2/2|2] b"]


@pytest.mark.unit
def test_line_splitter_hands_on_a_status_line_before_ninja_writes_again() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append)
    splitter.feed(b"\r[0/9|1] Building CUDA object CMakeFiles/_C.dir/csrc/a.cu.o\x1b[K")
    assert lines == ["[0/9|1] Building CUDA object CMakeFiles/_C.dir/csrc/a.cu.o"]
    # gcc's colours put ESC[K mid-line: that line ends at its newline, not before.
    splitter.feed(b"\r\n\x1b[01m\x1b[Ka.cpp:3:1:\x1b[m\x1b[K \x1b[01;31m\x1b[Kerror: "
                  b"\x1b[m\x1b[Kboom\r\n")
    assert len(lines) == 2 and "a.cpp:3:1:" in lines[1] and lines[1].endswith("boom")


@pytest.mark.unit
def test_plain_display_passes_every_line() -> None:
    out = io.StringIO()
    display = PlainDisplay(out=out)
    for line in RECORDED_PLAIN:
        display.line(line)
    display.close()
    assert out.getvalue().splitlines() == RECORDED_PLAIN
    assert display.progress.finished == 6


@pytest.mark.unit
def test_bar_display_keeps_all_other_output() -> None:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200, color_system=None)
    display = BarDisplay(console=console)
    failure = ["FAILED: CMakeFiles/_C.dir/csrc/ops/add.cpp.o",
               "/usr/bin/c++ -O3 -c csrc/ops/add.cpp",
               "csrc/ops/add.cpp:7:1: error: expected ';' before '}' token",
               *[f"  context line {i}" for i in range(50)],
               "ninja: build stopped: subcommand failed."]
    for line in [*RECORDED_TTY, *failure]:
        display.line(line)
    display.close()
    shown = buffer.getvalue()
    for line in failure:  # unabridged, in order
        assert line in shown
    assert shown.index(failure[0]) < shown.index(failure[-1])
    assert "[0/6|1]" not in shown  # status lines become the bar, not text
    assert "1/6" in shown and "eta" in shown
    assert display.child_env() == {"NINJA_STATUS": NINJA_STATUS_FORMAT}


@pytest.mark.unit
def test_bar_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_bar(plain=False, stream=Tty(), environ={"TERM": "xterm"})
    assert not wants_bar(plain=True, stream=Tty(), environ={"TERM": "xterm"})
    assert not wants_bar(plain=False, stream=Tty(), environ={"TERM": "dumb"})
    assert not wants_bar(plain=False, stream=io.StringIO(), environ={"TERM": "xterm"})


def _ninja() -> str:
    found = shutil.which("ninja") or str(Path(sys.executable).parent / "ninja")
    assert Path(found).exists(), "ninja is a dependency of vllm-dev"
    return found


@pytest.mark.unit
def test_streaming_on_a_pty_reports_steps_as_they_start(tmp_path: Path) -> None:
    (tmp_path / "build.ninja").write_text(
        "rule slow\n  command = sleep 0.3 && touch $out\n  description = SLOW $out\n"
        "build a: slow\nbuild b: slow\n"
    )
    lines: list[str] = []
    env = {**os.environ, "NINJA_STATUS": NINJA_STATUS_FORMAT, "TERM": "xterm"}
    code = run_streaming([_ninja(), "-j2"], on_line=lines.append, cwd=tmp_path, env=env,
                         pseudo_terminal=True)
    assert code == 0
    progress = BuildProgress()
    peak = 0
    for line in lines:
        progress.update(line)
        peak = max(peak, len(progress.running))
    assert peak == 2, lines  # both steps were seen running at once
    assert progress.finished == 2 and not progress.running


@pytest.mark.unit
def test_streaming_through_a_pipe_keeps_order_and_exit_code(tmp_path: Path) -> None:
    lines: list[str] = []
    code = run_streaming(["sh", "-c", "echo out; echo err >&2; echo last; exit 3"],
                         on_line=lines.append, cwd=tmp_path)
    assert code == 3
    assert lines == ["out", "err", "last"]


def test_failing_build_shows_everything_and_keeps_cmakes_exit_code(project: Project) -> None:
    project.run("build", "--plain")
    add = project.root / "csrc" / "ops" / "add.cpp"
    add.write_text(add.read_text() + '\n#warning "minivllm-kept-warning"\n'
                   "int broken_function() { return missing_name_42; }\n")
    done = project.run("build", "--plain", check=False)
    raw = subprocess.run([str(project.python.parent / "cmake"), "--build", "--preset", "release"],
                         cwd=project.root, capture_output=True, text=True, check=False)
    assert raw.returncode != 0
    assert done.returncode == raw.returncode
    failed = [ln for ln in done.stdout.splitlines() if ln.startswith("FAILED:")]
    assert failed and failed[0].rstrip().endswith("CMakeFiles/_C.dir/csrc/ops/add.cpp.o")
    assert "ninja: build stopped" in done.stdout
    assert "missing_name_42" in done.stdout and "error" in done.stdout
    assert "minivllm-kept-warning" in done.stdout
    report = project.run("report").stdout
    assert f"FAILED (exit code {raw.returncode})" in report
    _assert_failure_summary(done.stderr, raw.returncode)
    assert "failed: csrc/ops/add.cpp: " in report and "1 compile(s) (1 failed)" in report


def _assert_failure_summary(shown: str, code: int) -> None:
    """The end of a failed build names the file, its first error, and the whole command."""
    summary = [ln for ln in shown.splitlines() if ln.startswith("vllm-dev: ")]
    failed = [ln for ln in summary if ln.startswith("vllm-dev: failed: ")]
    assert failed == [failed[0]] and failed[0].startswith("vllm-dev: failed: csrc/ops/add.cpp: "), \
        summary
    assert "error" in failed[0] and "missing_name_42" in failed[0], failed
    assert any("1 compile(s) (1 failed)" in ln for ln in summary), summary
    last = summary[-1]
    assert re.search(r"--build --preset release --target all( --parallel \d+)?` failed with exit "
                     r"code", last), last
    assert "..." not in last and f"exit code {code}" in last
    assert last.endswith(": csrc/ops/add.cpp failed"), last


def _on_a_terminal(project: Project, *args: str) -> tuple[int, str]:
    """The real console script with a pseudo-terminal on stdin/stdout/stderr: exit code and
    everything it showed."""
    import pty

    from conftest import VLLM_DEV, clean_env

    env = clean_env({**project.env, "TERM": "xterm", "COLUMNS": "160"})
    env.pop("NO_COLOR", None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: vllm-dev on the terminal
        os.chdir(project.root)
        os.execve(VLLM_DEV, [VLLM_DEV, *args], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    shown = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    return os.waitstatus_to_exitcode(status), shown


def test_failing_build_on_a_terminal_names_the_file(project: Project) -> None:
    """The same failure with the bar: the summary is as complete as in plain mode."""
    project.run("build", "--plain")
    add = project.root / "csrc" / "ops" / "add.cpp"
    add.write_text(add.read_text() + "int broken_function() { return missing_name_42; }\n")
    code, shown = _on_a_terminal(project, "build")
    assert code == 1, shown
    assert "FAILED: " in shown and "ninja: build stopped" in shown  # the compiler's own output
    _assert_failure_summary(strip_ansi(shown), code)


def test_progress_bar_on_a_terminal_end_to_end(project: Project) -> None:
    """The real console script on a pseudo-terminal: a bar, no raw status lines, exit code 0."""
    code, shown = _on_a_terminal(project, "build")
    assert code == 0, shown
    assert "compiling" in shown and "eta" in shown
    assert "6/6" in shown  # 4 compiles + 2 links of the CPU project, all counted
    assert "module_C.cpp 0:0" in shown  # a file shown while it compiled, with its time
    assert "|" not in "".join(ln for ln in shown.splitlines() if ln.startswith("[")), shown
    assert project.value("_C") == 42


class _TimedWrites(io.StringIO):
    """A console file that remembers when each piece of the bar was drawn."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((time.time(), text))
        return super().write(text)


# Slow steps of known durations: a and b start together (-j2); c needs a, so it starts when a
# ends and is the tail of the build together with b. Each command writes its true start/end.
SLOW_STEPS = {"a": 1.5, "b": 3.2, "c": 1.0}


def _slow_ninja_file(tmp_path: Path) -> None:
    lines = ["rule slow",
             "  command = date +%s.%N > $out.start && sleep $secs && date +%s.%N > $out.end"
             " && touch $out",
             "  description = Building CXX object CMakeFiles/t.dir/$out.cpp.o"]
    for name, secs in SLOW_STEPS.items():
        lines += [f"build {name}: slow" + (" a" if name == "c" else ""), f"  secs = {secs}"]
    (tmp_path / "build.ninja").write_text("\n".join(lines) + "\n")


@pytest.mark.unit
def test_bar_on_a_pty_sees_steps_start_and_finish_on_time(tmp_path: Path) -> None:
    """Real ninja on a pseudo-terminal: each step's start and finish reach the display within
    0.5 s of when its command really started and ended, and the clock moves on its own."""
    from rich.console import Console

    _slow_ninja_file(tmp_path)
    screen = _TimedWrites()
    console = Console(file=screen, force_terminal=True, width=200, color_system=None)
    display = BarDisplay(console=console, progress=BuildProgress(clock=time.time),
                         refresh_per_second=10)
    env = {**os.environ, **display.child_env(), "TERM": "xterm"}
    try:
        code = run_streaming([_ninja(), "-j2"], on_line=display.line, cwd=tmp_path, env=env,
                             pseudo_terminal=True)
    finally:
        display.close()
    assert code == 0
    seen = {(e.kind, short_name(e.description)): e.at for e in display.progress.events}
    for name in SLOW_STEPS:
        true_start = float((tmp_path / f"{name}.start").read_text())
        true_end = float((tmp_path / f"{name}.end").read_text())
        print(f"{name}: start seen {seen['start', f'{name}.cpp'] - true_start:+.3f} s, "
              f"finish seen {seen['finish', f'{name}.cpp'] - true_end:+.3f} s")
        assert abs(seen["start", f"{name}.cpp"] - true_start) < 0.5, (name, seen)
        assert abs(seen["finish", f"{name}.cpp"] - true_end) < 0.5, (name, seen)
    # While a and b run (after both started, before a ends) ninja writes nothing, yet the bar
    # is redrawn with the elapsed time and each file's running time moving on.
    quiet_from = seen["start", "b.cpp"] + 1.05
    quiet_to = seen["finish", "a.cpp"] - 0.05
    drawn = "".join(text for at, text in screen.writes if quiet_from <= at <= quiet_to)
    assert "elapsed 0:01" in drawn, drawn[-2000:]
    assert "a.cpp 0:01" in drawn and "b.cpp 0:01" in drawn
    # The tail: every step has started, and the bar says which files it waits for.
    tail = "".join(text for at, text in screen.writes
                   if seen["start", "c.cpp"] + 0.2 <= at <= seen["finish", "c.cpp"] - 0.05)
    assert "waiting for b.cpp" in tail and "c.cpp 0:0" in tail, tail[-2000:]
    assert "a.cpp" not in tail  # finished: no longer shown as compiling
    assert "3/3" in screen.getvalue()


def test_failing_nvcc_compile_is_named_with_its_first_error(cuda_project: Project) -> None:
    """Real nvcc: its ``file.cu(N): error:`` line is the one the summary quotes."""
    saxpy = cuda_project.root / "csrc" / "cuda" / "saxpy.cu"
    saxpy.write_text(saxpy.read_text()
                     + "\n__global__ void broken_kernel(int* out) { *out = missing_name_42; }\n")
    done = cuda_project.run("build", "--plain", "--arch", "8.0", "--cache", "none", check=False)
    assert done.returncode != 0, done.stderr
    failed = [ln for ln in done.stderr.splitlines() if ln.startswith("vllm-dev: failed: ")]
    assert failed and failed[0].startswith("vllm-dev: failed: csrc/cuda/saxpy.cu: "), done.stderr
    assert 'error: identifier "missing_name_42" is undefined' in failed[0], failed
    assert done.stderr.splitlines()[-1].endswith("csrc/cuda/saxpy.cu failed"), done.stderr
