"""The Nox build sessions: real nox, uv, cmake, ninja and ccache (nvcc when present) on copies of
the test project, plus unit checks of the pieces the sessions are made of.

Nox is run as the user would (``python -m nox -f <repo>/noxfile.py``) from outside the repository,
with its venvs under ``tmp_path`` so the repository stays clean.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vllm_dev.errors import VllmDevError
from vllm_dev.presets.render import (
    PresetInputs,
    PresetTemplate,
    preset_fingerprint,
    render,
    render_standalone,
)
from vllm_dev.presets.user_presets import beside_owned
from vllm_dev.process.locking import build_lock
from vllm_dev_frontends import nox_flow

import minivllm_tools as mv
from conftest import NVCC, Project, clean_env, make_project

REPO = Path(__file__).resolve().parents[1]
NOXFILE = REPO / "noxfile.py"
PHASE_RE = re.compile(r"vllm-dev: (setup|configure|compile|install|import check): \d+\.\d s$",
                      re.MULTILINE)


def nox_argv(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "nox", "-f", str(NOXFILE), "--envdir",
            str(tmp_path / "nox-envs"), *args]


def run_nox(tmp_path: Path, *args: str, cwd: Path | None = None, device: str = "cpu",
            env: dict[str, str] | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        nox_argv(tmp_path, *args), cwd=cwd or tmp_path, text=True, capture_output=True,
        env=clean_env({"CCACHE_DIR": str(tmp_path / "ccache"), "VLLM_TARGET_DEVICE": device,
                       **(env or {})}),
        stdin=subprocess.DEVNULL, timeout=1200, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"nox {shlex.join(args)} exited {done.returncode}\n"
                             f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    return done


def cache_value(build_dir: Path, name: str) -> str:
    for line in (build_dir / "CMakeCache.txt").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not in {build_dir}/CMakeCache.txt")


def compile_flags(build_dir: Path) -> dict[str, list[str]]:
    """Compiler arguments of each C++/CUDA source, from compile_commands.json."""
    entries = json.loads((build_dir / "compile_commands.json").read_text())
    flags: dict[str, list[str]] = {}
    for entry in entries:
        argv = entry.get("arguments") or shlex.split(entry["command"])
        flags[Path(entry["file"]).name] = argv
    assert flags, f"no compile commands in {build_dir}"
    return flags


def latest_compiles(project: Project, build_dir: Path, *, since: int) -> list[str]:
    return sorted(e for e in project.ninja_log_entries(build_dir, since=since)
                  if e.endswith(".o"))


def venv_value(python: Path, module: str, cwd: Path) -> int:
    return mv.import_value(str(python), module, "known_value", cwd=cwd)


# --- unit checks: the pieces -------------------------------------------------------------------

INPUTS = PresetInputs(python="/dev/venv/bin/python", device="cpu", jobs=2, nvcc_threads=1,
                      environment={"CCACHE_BASEDIR": "${sourceDir}"})
NOX_INPUTS = PresetInputs(python="/nox/release/bin/python", device="cpu", jobs=2,
                          nvcc_threads=1)
TEMPLATES = {n: PresetTemplate(name=n, description=n, build_type=t)
             for n, t in (("release", "Release"), ("debug", "Debug"))}


@pytest.mark.unit
def test_nox_preset_sits_beside_the_developers_without_changing_them(tmp_path: Path) -> None:
    developer = render(TEMPLATES, INPUTS)
    path = tmp_path / "CMakeUserPresets.json"
    path.write_text(json.dumps(developer))
    nox_preset = render_standalone(
        PresetTemplate(name="nox-release", description="", build_type="Release"), NOX_INPUTS)
    assert "inherits" not in nox_preset["configurePresets"][0]
    combined = beside_owned(path, nox_preset)
    names = [p["name"] for p in combined["configurePresets"]]
    assert names == ["vllm-dev-base", "release", "debug", "nox-release"]
    for name in ("release", "debug"):  # the developer's fingerprints are untouched
        assert preset_fingerprint(combined, name) == preset_fingerprint(developer, name)
    assert preset_fingerprint(combined, "nox-release") == preset_fingerprint(nox_preset,
                                                                             "nox-release")
    cache = combined["configurePresets"][-1]["cacheVariables"]
    assert cache["VLLM_PYTHON_EXECUTABLE"] == "/nox/release/bin/python"
    assert set(combined["vendor"]["vllm-dev"]["owned"]) == {"vllm-dev-base", "release", "debug",
                                                            "nox-release"}
    # a second session's preset joins; re-rendering the first replaces it, never duplicates it
    path.write_text(json.dumps(combined))
    again = beside_owned(path, nox_preset)
    assert [p["name"] for p in again["configurePresets"]].count("nox-release") == 1


@pytest.mark.unit
def test_beside_owned_leaves_a_file_it_does_not_own_to_the_ownership_rules(tmp_path: Path
                                                                         ) -> None:
    path = tmp_path / "CMakeUserPresets.json"
    path.write_text('{"version": 6, "configurePresets": [{"name": "mine"}]}')
    ours = render_standalone(TEMPLATES["release"], NOX_INPUTS)
    assert beside_owned(path, ours) is ours  # write_user_presets then asks for --merge/--force


@pytest.mark.unit
def test_posargs(tmp_path: Path) -> None:
    args = nox_flow.parse_posargs(["--source", "here", "--merge"])
    assert (args.source, args.merge, args.force, args.target, args.python) == (
        "here", True, False, [], None)
    args = nox_flow.parse_posargs(["--target", "a", "--target", "b", "--python", "/v/bin/python"])
    assert (args.target, args.python) == (["a", "b"], "/v/bin/python")
    with pytest.raises(VllmDevError, match="unrecognized arguments: --frobnicate"):
        nox_flow.parse_posargs(["--frobnicate"])


class FakeSession:
    """Records what the runner asks of nox (argument plumbing only)."""

    def __init__(self) -> None:
        self.runs: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.dirs: list[str] = []

    def run(self, *args: str, **kwargs: Any) -> None:
        self.runs.append((args, kwargs))

    def chdir(self, dir: Any) -> Any:
        self.dirs.append(str(dir))
        from contextlib import nullcontext
        return nullcontext()


@pytest.mark.unit
def test_session_runner_routes_changes_through_nox_and_queries_around_it(tmp_path: Path
                                                                        ) -> None:
    session = FakeSession()
    runner = nox_flow.SessionRunner(session)  # type: ignore[arg-type]
    runner.run(["cmake", "--build", "--preset", "nox-release"], cwd=tmp_path, env={"A": "1"})
    assert session.runs == [(("cmake", "--build", "--preset", "nox-release"),
                             {"env": {"A": "1"}, "external": True})]
    assert session.dirs == [str(tmp_path)]
    done = runner.run([sys.executable, "-c", "print('hi'); raise SystemExit(3)"],
                      capture=True, check=False, mutates=False)
    assert (done.returncode, done.stdout.strip()) == (3, "hi")
    assert len(session.runs) == 1  # the query did not go through nox


@pytest.mark.unit
def test_session_runner_gives_commands_the_cache_environment(tmp_path: Path) -> None:
    """``-- --cache-remote redis://user:pw@host`` reaches ccache through the environment (the
    presets name the variable, never the URL), in the session's commands as in the tasks'."""
    from vllm_dev.caching import compiler_cache as cc
    from vllm_dev.config.settings import Settings

    settings = Settings.resolve(flags={"cache_remote": "redis://u:pw@cache.example:6379"},
                                environ={})
    environment = cc.command_environment(cc.config_from(settings))
    assert environment  # a credentialed URL goes through the environment
    session = FakeSession()
    runner = nox_flow.SessionRunner(session, environment=environment)  # type: ignore[arg-type]
    runner.run(["cmake", "--build", "--preset", "nox-release"], env={"A": "1"})
    assert session.runs[0][1]["env"] == {**environment, "A": "1"}


@pytest.mark.unit
def test_phase_clock_reports_each_phase_and_a_summary() -> None:
    said: list[str] = []
    clock = nox_flow.PhaseClock(say=said.append)
    with clock.phase("setup"):
        pass
    with pytest.raises(RuntimeError), clock.phase("configure"):
        raise RuntimeError("boom")
    assert [s.split(":")[0] for s in said] == ["setup", "configure"]
    assert re.fullmatch(r"elapsed: setup \d\.\d s, configure \d\.\d s; total \d\.\d s",
                        clock.summary())


class RecordingSession(FakeSession):
    """A session object for :func:`nox_flow.build_session` with an interpreter of one's own."""

    def __init__(self, posargs: list[str], invoked_from: Path) -> None:
        super().__init__()
        self.posargs = posargs
        self.invoked_from = str(invoked_from)
        self.venv_backend = "uv"
        self.logged: list[str] = []

    def log(self, *args: Any) -> None:
        self.logged.append(" ".join(map(str, args)))

    def error(self, *args: Any) -> None:
        raise AssertionError(" ".join(map(str, args)))


@pytest.mark.unit
def test_a_session_runs_the_one_pipeline_once(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Prime once, compile, install and check through the pipeline the tasks use, each stage a
    session phase (the flow itself, with real tools, is proven below)."""
    from vllm_dev.commands import pipeline

    root = mv.copy_project(tmp_path / "vllm")
    calls: list[tuple[Any, pipeline.Request]] = []

    def record(ws: Any, request: pipeline.Request, *, timer: Any) -> pipeline.PipelineResult:
        calls.append((ws, request))
        for stage in pipeline.Stage:
            with timer(stage):
                pass
        return pipeline.PipelineResult(plan=None, targets=None)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "run", record)
    session = RecordingSession(["--source", str(root), "--python", sys.executable], tmp_path)
    nox_flow.build_session(session, preset="release")  # type: ignore[arg-type]
    assert len(calls) == 1
    ws, request = calls[0]
    assert (ws.layer, ws.settings.python) == (nox_flow.LAYER, sys.executable)
    assert request.stages == pipeline.BUILD
    assert (request.every, request.install_every, request.editable_check) == (True, True, True)
    phases = [line.split(":")[1].strip() for line in session.logged
              if PHASE_RE.fullmatch(line)]
    assert phases == ["configure", "compile", "install", "import check"]
    assert session.runs == []  # nothing ran outside the pipeline (setup skipped: --python)


# --- nox itself ----------------------------------------------------------------------------------

@pytest.mark.unit
def test_nox_lists_the_matrix(tmp_path: Path) -> None:
    default = json.loads(run_nox(tmp_path, "-l", "--json").stdout)
    assert {s["name"] for s in default} == {"tests", "lint"}  # plain `nox`: build sessions off
    builds = json.loads(run_nox(tmp_path, "-l", "--json", "-t", "build").stdout)
    assert {s["name"]: s["tags"] for s in builds} == {"debug": ["build"], "release": ["build"]}
    assert all(f"cmake-build-nox-{s['name']}" in s["description"] for s in builds)
    # a template added to the presets directory is a session, with its own build dir
    presets = tmp_path / "presets"  # the user's templates add to the bundled ones
    presets.mkdir()
    (presets / "relwithdebinfo.json").write_text(
        '{"description": "Optimized, with symbols.", "buildType": "RelWithDebInfo"}')
    more = json.loads(run_nox(tmp_path, "-l", "--json", "-t", "build",
                              env={"VLLM_DEV_PRESETS_DIR": str(presets)}).stdout)
    assert sorted(s["name"] for s in more) == ["debug", "release", "relwithdebinfo"]
    usage = run_nox(tmp_path, "--usage", "release").stdout
    assert "Build the release preset from scratch in its own venv" in usage


@pytest.mark.unit
@pytest.mark.parametrize("case", ["missing", "not-vllm", "none-found", "bad-argument",
                                  "env-var", "invoke-config"])
def test_a_bad_checkout_fails_with_one_clear_line(tmp_path: Path, case: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "README.md").write_text("not vLLM\n")
    posargs = {"missing": ["--source", str(tmp_path / "nope")],
               "not-vllm": ["--source", "elsewhere"],
               "none-found": [],
               "bad-argument": ["--sauce", "x"], "env-var": [], "invoke-config": []}[case]
    expected = {"missing": f"--source {tmp_path / 'nope'} does not exist",
                "not-vllm": f"--source {elsewhere} is not a vLLM checkout: missing "
                            "CMakeLists.txt",
                "none-found": f"no vLLM checkout at or above {elsewhere}",
                "bad-argument": "unrecognized arguments: --sauce",
                "env-var": f"VLLM_DEV_SOURCE {tmp_path / 'gone'} does not exist",
                "invoke-config": f"config vllm_dev.source {elsewhere} is not a vLLM checkout"
                }[case]
    # the same variable and configuration as the tasks: invoke.yaml of the invocation directory
    env = {"VLLM_DEV_SOURCE": str(tmp_path / "gone")} if case == "env-var" else {}
    if case == "invoke-config":
        (tmp_path / "invoke.yaml").write_text("vllm_dev:\n  source: elsewhere\n")
    cwd = elsewhere if case == "none-found" else tmp_path
    done = run_nox(tmp_path, "-s", "release", "--", *posargs, cwd=cwd, env=env, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "aborted: vllm-dev:" in line]
    assert len(errors) == 1 and expected in errors[0], output
    assert "pip install" not in output  # it stopped before installing anything


@pytest.mark.unit
def test_no_wait_fails_at_once_when_another_holds_the_checkout(tmp_path: Path) -> None:
    """`-- --no-wait` (an option the sessions once lacked): no queueing behind the holder."""
    root = mv.copy_project(tmp_path / "vllm")
    argv = nox_argv(tmp_path, "-s", "release", "--", "--source", str(root), "--no-wait")
    with build_lock(root / ".vllm-dev", say=lambda m: None, command="test holds the checkout"):
        try:  # a session that waited would wait for this very block: bound it
            done = subprocess.run(argv, cwd=tmp_path, text=True, capture_output=True,
                                  env=clean_env({"VLLM_TARGET_DEVICE": "cpu"}),
                                  stdin=subprocess.DEVNULL, timeout=120, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the session waited for the lock:\n{exc.stdout!r}") from None
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output
    errors = [line for line in output.splitlines() if "aborted: vllm-dev:" in line]
    assert len(errors) == 1 and "is busy" in errors[0] and "test holds the checkout" in errors[0]
    assert "waiting for" not in output and "pip install" not in output


@pytest.mark.unit
def test_release_end_to_end_then_no_op_then_one_file(tmp_path: Path) -> None:
    """The CUDA run (when nvcc is present): release from scratch, then `nox -R` twice."""
    device = "cuda" if NVCC else "cpu"
    root = mv.copy_project(tmp_path / "vllm")
    project = Project(root=root, python=tmp_path / "nox-envs" / "release" / "bin" / "python")
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    # started from another directory, with a relative --source: resolved against that directory
    first = run_nox(tmp_path, "-s", "release", "--", "--source", "../vllm", cwd=elsewhere,
                    device=device)
    out = first.stdout + first.stderr
    assert sorted(set(PHASE_RE.findall(out))) == sorted(nox_flow.PHASES), out
    assert "vllm-dev: elapsed: setup" in out
    assert "uv pip install" in out and "--torch-backend=auto" in out
    build_dir = root / "cmake-build-nox-release"
    assert cache_value(build_dir, "CMAKE_BUILD_TYPE") == "Release"
    assert cache_value(build_dir, "VLLM_PYTHON_EXECUTABLE") == str(project.python)
    for name, argv in compile_flags(build_dir).items():
        assert {"-O2", "-O3"} & set(argv), f"{name} is not optimized: {argv}"
    assert venv_value(project.python, "_C", elsewhere) == 42
    if device == "cuda":
        assert "vllm._cuda_C" in out
        assert venv_value(project.python, "_cuda_C", elsewhere) == 1234

    again = run_nox(tmp_path, "-R", "-s", "release", "--", "--source", str(root), device=device)
    out = again.stdout + again.stderr
    assert "pip install" not in out and "cmake --preset" not in out, out
    # CPU: ninja says it; CUDA: the `ninja -n` of the split said it, and no cmake --build ran
    assert ("ninja: no work to do" in out if device == "cpu" else
            "compile: nothing to do in cmake-build-nox-release (ninja -n)" in out), out

    if device == "cuda":
        changed, module, value = root / "csrc/cuda/host_value.cu", "_cuda_C", 4321
        changed.write_text(changed.read_text().replace("1234", "4321"))
    else:
        changed, module, value = root / "csrc/module_C.cpp", "_C", 43
        changed.write_text(changed.read_text().replace("VALUE 42", "VALUE 43"))
    mark = project.ninja_log_mark(build_dir)
    one = run_nox(tmp_path, "-R", "-s", "release", "--", "--source", str(root), device=device)
    out = one.stdout + one.stderr
    assert "pip install" not in out and "cmake --preset" not in out, out
    obj = f"{changed.relative_to(root)}.o"
    compiles = latest_compiles(project, build_dir, since=mark)
    assert len(compiles) == 1, project.ninja_log_entries(build_dir, since=mark)
    assert compiles[0].endswith(obj)
    assert venv_value(project.python, module, elsewhere) == value


@pytest.mark.flow
def test_debug_waits_for_the_checkout_lock_and_leaves_the_developer_build_alone(
        tmp_path: Path) -> None:
    """CPU: beside a developer's own venv and build; another holder of the checkout's lock makes
    the session wait; the debug build is a debug build; the developer's next build does nothing."""
    project = make_project(tmp_path)
    project.run("build")
    dev_build = project.build_dir
    dev_presets = json.loads(project.root.joinpath("CMakeUserPresets.json").read_text())
    cache_mtime = (dev_build / "CMakeCache.txt").stat().st_mtime_ns
    ninja_steps = len((dev_build / ".ninja_log").read_text().splitlines())

    state = project.root / ".vllm-dev"
    lines: list[str] = []
    with build_lock(state, say=lambda m: None, command="test holds the checkout"):
        # started inside the checkout, without --source: found around nox's invocation dir
        proc = subprocess.Popen(
            nox_argv(tmp_path, "-s", "debug"), cwd=project.root / "csrc", text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=clean_env({**project.env, "VLLM_TARGET_DEVICE": "cpu"}))
        assert proc.stdout is not None
        reader = threading.Thread(target=lambda: [lines.append(ln) for ln in proc.stdout or []],
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while not any("waiting for" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        time.sleep(1.0)  # not a wait for a state: a window in which the waiter must do nothing
        assert not any("pip install" in line for line in lines)  # nothing ran meanwhile
    assert proc.wait(timeout=600) == 0, "".join(lines)
    reader.join(timeout=10)
    out = "".join(lines)
    assert "test holds the checkout" in out
    assert sorted(set(PHASE_RE.findall(out))) == sorted(nox_flow.PHASES), out

    build_dir = project.root / "cmake-build-nox-debug"
    assert cache_value(build_dir, "CMAKE_BUILD_TYPE") == "Debug"
    nox_python = tmp_path / "nox-envs" / "debug" / "bin" / "python"
    assert cache_value(build_dir, "VLLM_PYTHON_EXECUTABLE") == str(nox_python)
    for name, argv in compile_flags(build_dir).items():
        assert "-g" in argv, f"{name} has no debug info: {argv}"
        assert not {"-O1", "-O2", "-O3", "-Os"} & set(argv), f"{name} is optimized: {argv}"

    # the developer's presets are still there, unchanged, beside the session's own
    written = json.loads(project.root.joinpath("CMakeUserPresets.json").read_text())
    by_name = {p["name"]: p for p in written["configurePresets"]}
    for preset in dev_presets["configurePresets"]:
        assert by_name[preset["name"]] == preset
    assert "inherits" not in by_name["nox-debug"]

    after = project.run("build")
    assert "reconfiguring" not in after.stderr and "cmake --preset" not in after.stderr, \
        after.stderr
    assert (dev_build / "CMakeCache.txt").stat().st_mtime_ns == cache_mtime
    # nothing compiled, and ninja did not re-run cmake either (the presets file changed)
    assert len((dev_build / ".ninja_log").read_text().splitlines()) == ninja_steps
    assert project.value("_C") == 42
    assert os.path.samefile(cache_value(dev_build, "VLLM_PYTHON_EXECUTABLE"), project.python)


@pytest.mark.flow
def test_release_with_an_interpreter_of_your_own_limited_to_one_target(tmp_path: Path) -> None:
    """`-- --python P --target T`: no setup in the session, P is the configured interpreter,
    only T is compiled and installed, and T loads from its file in the checkout."""
    project = make_project(tmp_path / "own")  # a developer's set-up venv
    done = run_nox(tmp_path, "-s", "release", "--", "--source", str(project.root), "--python",
                   str(project.python), "--target", "_fast_C")
    out = done.stdout + done.stderr
    assert f"setup: skipped (--python {project.python}" in out and "pip install" not in out, out
    build_dir = project.root / "cmake-build-nox-release"
    assert cache_value(build_dir, "VLLM_PYTHON_EXECUTABLE") == str(project.python)
    compiles = latest_compiles(project, build_dir, since=0)
    assert [Path(c).name for c in compiles] == ["module_fast.cpp.o"], compiles
    assert "import check: vllm._fast_C load from" in out, out
    assert venv_value(project.python, "_fast_C", tmp_path) == 7
    missing = run_nox(tmp_path, "-s", "release", "--", "--source", str(project.root),
                      "--python", str(tmp_path / "nope" / "python"), check=False)
    assert missing.returncode != 0 and "--python" in missing.stdout + missing.stderr
    assert "Traceback" not in missing.stdout + missing.stderr
