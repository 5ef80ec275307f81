"""Every view of the settings follows the declarations: the Invoke tasks' options, help, short
flags and configuration defaults; the Nox build sessions' options after ``--``; the README's
table. Includes the drift that was found before they were derived: Invoke ``build`` had no
``--max-jobs``; Nox had no ``--job-memory-gib``, ``--cache-*`` or ``--no-wait``; the Invoke
default of ``cache_remote_mode`` was None where Settings said read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from invoke import Config, MockContext, task

from vllm_dev.commands import pipeline
from vllm_dev.config import declarations as d
from vllm_dev.config import table
from vllm_dev.config import task_options as to
from vllm_dev.errors import VllmDevError
from vllm_dev_frontends import invoke_tasks as t
from vllm_dev_frontends import nox_flow, nox_options
from vllm_dev_frontends.invoke_tasks import DEFAULTS, namespace

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
TASK_STEPS = {name: name for name in d.STEPS}  # each step's task has its name


def options(task_name: str) -> dict[str, Any]:
    """A task's Invoke arguments by parameter name (fresh from the namespace, as the CLI)."""
    return {a.name: a for a in namespace()[task_name].get_arguments()}


# --- Invoke ------------------------------------------------------------------------------------

@pytest.mark.parametrize("step", d.STEPS)
def test_each_task_takes_exactly_its_steps_settings_as_declared(step: str) -> None:
    arguments = options(TASK_STEPS[step])
    task_obj = namespace()[TASK_STEPS[step]]
    own = {name for name in arguments if name not in task_obj.settings}
    declared = d.for_steps(step)
    assert [s.param for s in declared] == list(task_obj.settings)
    assert not own & {s.param for s in d.SETTINGS if s.param}, "a setting declared at a task"
    for s in declared:
        argument = arguments[str(s.param)]
        assert argument.help == s.describe()
        assert set(argument.names) == {s.flag.removeprefix("--"), *([s.short] if s.short
                                                                    else [])}
        if s.repeatable:
            assert argument.kind is list
        elif s.switch:
            assert argument.kind is bool and argument.default is s.default
        else:
            assert argument.kind is str and argument.default is None


def test_a_setting_has_the_same_option_in_every_task() -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    for name in namespace().task_names:
        task_obj = namespace()[name]
        for argument in task_obj.get_arguments():
            if argument.name in getattr(task_obj, "settings", {}):
                shape = (argument.names, argument.help, argument.kind, argument.default)
                assert seen.setdefault(argument.name, shape) == shape, (name, argument.name)
    assert set(seen) == {s.param for s in d.SETTINGS if s.flag}  # every flag is offered


def test_build_and_prime_take_max_jobs() -> None:
    for name in ("build", "prime"):
        assert options(name)["max_jobs"].help == d.setting("max_jobs").describe()


def test_build_passes_max_jobs_and_no_wait_to_the_settings(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(pipeline, "run", lambda ws, *args, **kwargs: seen.append(ws.settings))
    for var in ("MAX_JOBS", "VLLM_DEV_NO_WAIT"):
        monkeypatch.delenv(var, raising=False)
    context = MockContext(config=Config(overrides={"vllm_dev": dict(DEFAULTS)}))
    t.build(context, max_jobs="12", no_wait=True)
    assert (seen[-1].max_jobs, seen[-1].origin("max_jobs")) == (12, "--max-jobs")
    assert (seen[-1].no_wait, seen[-1].origin("no_wait")) == (True, "--no-wait")
    monkeypatch.setenv("VLLM_DEV_NO_WAIT", "1")
    t.build(context, no_wait=False)  # the switch left off hides nothing
    assert (seen[-1].no_wait, seen[-1].origin("no_wait")) == (True, "VLLM_DEV_NO_WAIT")


def test_short_flags_never_collide_within_a_task_and_h_is_help() -> None:
    ns = namespace()
    for name in ns.task_names:
        letters = [n for a in ns[name].get_arguments() for n in a.names if len(n) == 1]
        assert len(letters) == len(set(letters)), (name, letters)
        assert not set(letters) & set(t.CORE_SHORT_FLAGS), name
        assert "c" not in letters  # Invoke's zsh completion script takes -c
    declared = {s.param: s.short for s in d.SETTINGS if s.short}
    assert {**declared, **t.TASK_SHORT_FLAGS} == t.SHORT_FLAGS


def test_the_invoke_config_defaults_are_the_declared_ones() -> None:
    configured = namespace().configuration()["vllm_dev"]
    assert configured == DEFAULTS == d.config_defaults()
    assert configured["cache_remote_mode"] == "read-only"
    assert configured["preset"] == "release" and configured["no_wait"] is False


def test_a_task_cannot_redeclare_a_setting() -> None:
    with pytest.raises(ValueError, match="comes from the settings' declarations"):
        task(klass=t.VllmDevTask, name="report", step="report", help={"preset": "mine"})(
            lambda c, **settings: None)
    with pytest.raises(TypeError, match=r"\['preset'\] are settings"):
        task(klass=t.VllmDevTask, name="report", step="report")(
            lambda c, preset=None, **settings: None)
    with pytest.raises(TypeError, match=r"needs \*\*settings"):
        task(klass=t.VllmDevTask, name="report", step="report")(lambda c, json=False: None)


# --- task-only options (config/task_options.py) -----------------------------------------------

INVOKE_TASKS = [name for name in to.TASKS if name != to.NOX]


@pytest.mark.parametrize("task_name", INVOKE_TASKS)
def test_each_task_takes_exactly_its_declared_task_options(task_name: str) -> None:
    """Kind, default, help and short flag of every task-only option come from its one
    declaration; the task takes nothing else of its own."""
    task_obj = namespace()[task_name]
    arguments = options(task_name)
    declared = to.for_task(task_name)
    assert {n for n in arguments if n not in task_obj.settings} == {o.name for o in declared}
    for o in declared:
        argument = arguments[o.name]
        assert argument.help == o.help_for(task_name)
        assert set(argument.names) == {o.flag_name, *([o.short] if o.short else [])}
        if o.kind == to.REPEATABLE:
            assert (argument.kind, argument.default) == (list, [])
        elif o.kind == to.SWITCH:
            assert argument.kind is bool and argument.default is o.default
        else:
            assert argument.kind is str and argument.default is None


def test_every_declared_task_option_is_taken_and_every_task_is_one() -> None:
    ns = namespace()
    assert set(INVOKE_TASKS) == set(ns.task_names)
    for o in to.TASK_OPTIONS:
        for task_name in o.tasks - {to.NOX}:
            assert o.name in options(task_name), (task_name, o.name)
        assert set(o.help_in) <= o.tasks, o.name  # words for a task that does not take it


def test_a_letter_means_one_option_across_settings_and_task_options() -> None:
    letters: dict[str, str] = {}
    for name, letter in [*((str(s.param), s.short) for s in d.SETTINGS if s.short),
                         *to.short_flags().items()]:
        assert letters.setdefault(letter, name) == name, (letter, letters[letter], name)
    assert to.short_flags() == {"target": "t", "undefine": "U", "device": "d"}


def test_a_task_body_only_names_its_declared_options() -> None:
    """A missing or unknown option, a default in the body, a help or kind at the decorator: each
    would be a second declaration, and is refused when the task is defined."""
    with pytest.raises(TypeError, match=r"names \['json'\]; the options declared for report .* "
                                        r"\['json', 'slowest', 'trace'\]"):
        task(klass=t.VllmDevTask, name="report", step="report")(
            lambda c, *, json, **settings: None)
    with pytest.raises(TypeError, match=r"the defaults of \['json'\] come from"):
        task(klass=t.VllmDevTask, name="report", step="report")(
            lambda c, *, slowest, json=True, trace, **settings: None)
    with pytest.raises(ValueError, match=r"help and kind of \['json'\] come from the task "
                                         "options' declarations"):
        task(klass=t.VllmDevTask, name="report", step="report", help={"json": "mine"})(
            lambda c, *, slowest, json, trace, **settings: None)
    with pytest.raises(ValueError, match="not a task: 'nonsense'"):
        task(klass=t.VllmDevTask, name="nonsense")(lambda c: None)


def test_a_task_called_from_python_gets_the_declared_defaults(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(pipeline, "run", lambda ws, request, **kwargs: seen.append(request))
    context = MockContext(config=Config(overrides={"vllm_dev": dict(DEFAULTS)}))
    t.build(context, since="main")
    assert seen[-1].stages == pipeline.BUILD and seen[-1].since == "main"
    assert (seen[-1].targets, seen[-1].every, seen[-1].yes) == ((), False, False)


def test_the_declarations_refuse_what_no_door_could_parse() -> None:
    with pytest.raises(ValueError, match="a switch, and only a switch, has a default"):
        to.TaskOption("x", "x", frozenset({"build"}), to.VALUE, default=False)
    with pytest.raises(ValueError, match="kind 'int' is none of"):
        to.TaskOption("x", "x", frozenset({"build"}), "int")
    with pytest.raises(ValueError, match=r"not tasks: \['bulid'\]"):
        to.TaskOption("x", "x", frozenset({"bulid"}), default=False)
    for task_name in to.TASKS:  # no task takes one name twice
        to.for_task(task_name)


# --- Nox ---------------------------------------------------------------------------------------

def test_the_nox_options_are_the_settings_of_the_session_steps() -> None:
    actions = {a.dest: a for a in nox_options.parser()._actions}
    expected = [s for s in d.for_steps(*nox_options.SESSION_STEPS)
                if s.name not in ("preset", "no_remember")]  # a session remembers nothing
    assert list(nox_options.session_settings()) == expected
    assert "preset" not in actions  # the session's name is the preset
    for s in expected:
        action = actions[str(s.param)]
        assert set(action.option_strings) == {s.flag, *([f"-{s.short}"] if s.short else [])}
        assert action.help == nox_options.SESSION_HELP.get(s.name, s.describe())
    # The task-only arguments declared for the sessions, in their words, and nothing else.
    assert set(actions) - {str(s.param) for s in expected} == {
        "target", "merge", "force", "since", "all"}
    for o in to.for_task(to.NOX):
        assert set(actions[o.name].option_strings) == set(o.flags())
        assert actions[o.name].help == o.help_for(to.NOX)
    assert actions["target"].default == [] and actions["all"].default is False


def test_the_kernels_sessions_own_options_are_session_options() -> None:
    """The long options ``nox -s kernels`` tells apart from pytest's are its parser's."""
    known = {f for a in nox_options.parser()._actions for f in a.option_strings}
    assert set(nox_flow._KERNELS_OWN) <= known


def test_the_nox_options_that_had_drifted_reach_the_settings() -> None:
    from vllm_dev.config.settings import Settings

    args = nox_flow.parse_posargs([
        "--job-memory-gib", "3", "--cache-dir", "/cc", "--cache-max-size", "5G",
        "--cache-remote", "redis://h:6379", "--cache-remote-mode", "read-write", "--no-wait",
        "-j", "4", "-D", "A=1", "--define", "B=2", "--max-jobs", "8", "-t", "x"])
    flags = nox_options.setting_flags(args)
    resolved = Settings.resolve(flags={**flags, "preset": "release"}, environ={})
    assert (resolved.job_memory_gib, resolved.cache_dir, resolved.cache_max_size,
            resolved.cache_remote, resolved.cache_remote_mode, resolved.no_wait) == (
        3.0, "/cc", "5G", "redis://h:6379", "read-write", True)
    assert (resolved.jobs, resolved.max_jobs, resolved.defines) == (4, 8, ("A=1", "B=2"))
    assert resolved.origin("job_memory_gib") == "--job-memory-gib"
    assert args.target == ["x"]
    # Left off, the switch does not hide the environment; a prefix is not an option.
    plain = nox_options.setting_flags(nox_flow.parse_posargs([]))
    assert Settings.resolve(flags=plain, environ={"VLLM_DEV_NO_WAIT": "1"}).no_wait is True
    with pytest.raises(VllmDevError, match="unrecognized arguments: --cach none"):
        nox_flow.parse_posargs(["--cach", "none"])


# --- README ------------------------------------------------------------------------------------

def test_the_readme_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text()
    assert table.table_in(readme) == table.markdown_table(), (
        f"README.md's settings table differs from the declarations: run `{table.REGENERATE}`")


def test_the_table_shows_each_declaration() -> None:
    rows = table.markdown_table().splitlines()[3:-1]
    assert len(rows) == len(d.SETTINGS)
    for row, s in zip(rows, d.SETTINGS, strict=True):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[0] == f"`{s.config_key}`"
        assert cells[1].startswith(f"`{s.flag}`") if s.flag else cells[1] == ""
        assert cells[2] == (f"`-{s.short}`" if s.short else "")
        assert cells[3] == ", ".join(f"`{v}`" for v in s.env)
        assert s.shown_default.replace("<", "&lt;").replace(">", "&gt;") in cells[4]
        assert all(f"`{c}`" in cells[5] for c in s.choices)
    assert "`read-only`" in rows[[s.name for s in d.SETTINGS].index("cache_remote_mode")]


def test_the_check_fails_on_a_stale_table_and_says_how_to_regenerate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    generated = f"# x\n\n{table.markdown_table()}\n\nmore\n"
    readme.write_text(generated)
    assert table.main(["--check", str(readme)]) == 0
    readme.write_text(generated.replace("`--max-jobs`", "`--max-job`"))
    assert table.main(["--check", str(readme)]) == 1
    assert table.REGENERATE in capsys.readouterr().err
    assert table.main(["--write", str(readme)]) == 0
    assert readme.read_text() == generated
    with pytest.raises(ValueError, match="no settings table markers"):
        table.with_table("no table here")
