"""Argument plumbing of the Invoke front end, with MockContext and a recording stand-in for the
workflow (the flows themselves are proven with real tools in test_flow.py)."""

from __future__ import annotations

from typing import Any

import pytest
from invoke import Config, Exit, MockContext

import vllm_dev.steps.clean
from vllm_dev.commands import pipeline
from vllm_dev.errors import CommandFailed, VllmDevError
from vllm_dev_frontends import invoke_tasks as t
from vllm_dev_frontends.invoke_tasks import DEFAULTS, namespace

pytestmark = pytest.mark.unit


def context(**vllm_dev: Any) -> MockContext:
    return MockContext(config=Config(overrides={"vllm_dev": {**DEFAULTS, **vllm_dev}}))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    calls: list[tuple[Any, dict[str, Any]]] = []

    def record(ws: Any, *args: Any, **kwargs: Any) -> None:
        # the pipeline's request, or the keyword arguments of a step
        calls.append((ws, vars(args[0]) if args else kwargs))

    for module, name in ((pipeline, "run"), (vllm_dev.steps.clean, "run_clean")):
        monkeypatch.setattr(module, name, record)
    for var in ("VLLM_DEV_SOURCE", "VLLM_TARGET_DEVICE", "MAX_JOBS", "NVCC_THREADS",
                "VLLM_DEV_JOBS", "VLLM_DEV_PRESET"):
        monkeypatch.delenv(var, raising=False)
    return calls


def test_build_flags_reach_the_workflow(recorded: list[tuple[Any, dict[str, Any]]]) -> None:
    t.build(context(), preset="debug", target=["_C", "_fast_C"], install=False, jobs="6",
            device="cpu", merge=True)
    ws, kwargs = recorded[0]
    assert ws.settings.preset == "debug"
    assert ws.settings.jobs == 6
    assert ws.settings.device == "cpu"
    assert kwargs["targets"] == ("_C", "_fast_C")
    # --no-install: compiled only, so nothing installed and nothing to verify
    assert kwargs["stages"] == {pipeline.Stage.CONFIGURE, pipeline.Stage.COMPILE}
    assert (kwargs["merge"], kwargs["force"]) == (True, False)


def test_each_task_runs_the_pipeline_once_with_its_stages(
        recorded: list[tuple[Any, dict[str, Any]]]) -> None:
    t.prime(context(), reconfigure=True)
    t.build(context())
    t.build(context(), verify=False)
    t.install(context(), component=["_C"])
    stages = [kwargs["stages"] for _, kwargs in recorded]
    assert stages == [pipeline.PRIME, pipeline.BUILD, pipeline.BUILD - {pipeline.Stage.CHECK},
                      pipeline.INSTALL]
    assert recorded[0][1]["reconfigure"] is True
    assert (recorded[3][1]["targets"], recorded[3][1]["install_every"]) == (("_C",), True)


def test_flag_beats_env_beats_config(recorded: list[tuple[Any, dict[str, Any]]],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_DEV_JOBS", "3")
    t.prime(context(jobs=2, preset="debug"))
    assert recorded[-1][0].settings.jobs == 3
    assert recorded[-1][0].settings.preset == "debug"  # from config
    t.prime(context(jobs=2), jobs="5")
    assert recorded[-1][0].settings.jobs == 5
    monkeypatch.delenv("VLLM_DEV_JOBS")
    t.prime(context(jobs=2))
    assert recorded[-1][0].settings.jobs == 2
    assert recorded[-1][0].settings.origin("jobs") == "config vllm_dev.jobs"


def test_dry_run_config_makes_a_dry_runner(recorded: list[tuple[Any, dict[str, Any]]]) -> None:
    c = context()
    c.config.run.dry = True
    t.clean_(c, all=True, installed=True)
    ws, kwargs = recorded[0]
    assert ws.runner.dry is True
    assert (kwargs["every"], kwargs["installed"]) == (True, True)


def test_errors_become_exit_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(ws: Any, *args: Any, **kwargs: Any) -> None:
        raise VllmDevError("something is wrong: fix it like this")

    monkeypatch.setattr(pipeline, "run", fail)
    with pytest.raises(Exit) as info:
        t.build(context())
    assert info.value.code == 1
    assert str(info.value.message) == "vllm-dev: something is wrong: fix it like this"


def test_failed_command_exit_code_is_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(ws: Any, *args: Any, **kwargs: Any) -> None:
        raise CommandFailed(["cmake", "--build", "--preset", "release"], 7)

    monkeypatch.setattr(pipeline, "run", fail)
    with pytest.raises(Exit) as info:
        t.build(context())
    assert info.value.code == 7


def test_bad_jobs_value_is_rejected_before_anything_runs(
        recorded: list[tuple[Any, dict[str, Any]]]) -> None:
    with pytest.raises(Exit) as info:
        t.build(context(), jobs="lots")
    assert "--jobs must be a positive integer" in str(info.value.message)
    assert recorded == []


def test_every_task_argument_has_help() -> None:
    ns = namespace()
    for name in ns.task_names:
        for argument in ns[name].get_arguments():
            assert argument.help, f"{name} --{argument.name} has no help text"


def test_invoke_list_from_a_fresh_clone(tmp_path: Any) -> None:
    """`invoke --list` in a clone of this repository with only invoke installed (no `pip install
    -e .`): the tasks are listed; running one says in one line what to install."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from vllm_dev.steps.setup import find_uv

    repo = Path(__file__).resolve().parent.parent
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info",
                                                               "__pycache__", ".nox"))
    venv = tmp_path / "bare"
    subprocess.run([find_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([find_uv(), "pip", "install", "-q", "-p", str(venv / "bin" / "python"),
                    "invoke"], check=True)
    invoke = str(venv / "bin" / "invoke")
    listed = subprocess.run([invoke, "--list"], cwd=clone, capture_output=True, text=True,
                            check=False)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    for name in ("build", "setup", "doctor", "verify"):
        assert f"  {name} " in listed.stdout, listed.stdout
    ran = subprocess.run([invoke, "doctor"], cwd=clone, capture_output=True, text=True,
                         check=False)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "vllm-dev: its dependency 'packaging' is not installed here: run `pip install -e .   "
        "(or: uv pip install -e .)` in this clone"], ran.stderr
