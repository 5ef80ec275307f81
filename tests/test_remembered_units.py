"""The remembered settings, piece by piece: the store (.vllm-dev/settings.json), the precedence
flag > environment > remembered > configuration file > default, what a run leaves in memory and
what it keeps out (secrets), conflicts between remembered and given values, and the config levels
kept apart. The flows, with real cmake, are in test_remembered.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from invoke import Config

from vllm_dev.config import remember, store
from vllm_dev.config.settings import ConfigFile, Remembered, Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.planning.workspace import open_workspace
from vllm_dev.process.runner import SubprocessRunner
from vllm_dev_frontends import config_files
from vllm_dev_frontends import invoke_tasks as t

import minivllm_tools as mv

pytestmark = pytest.mark.unit


def entry(value: Any, command: str = "build") -> store.Entry:
    return store.Entry(value, command, "2026-12-03T14:02:11")


class Said(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


# --- the store ----------------------------------------------------------------------------------

def test_an_entry_says_which_command_gave_it_and_when() -> None:
    assert entry("x").given() == "given to build, 2026-12-03 14:02"


def test_write_read_and_a_checkout_wide_entry(tmp_path: Path) -> None:
    said = Said()
    state = tmp_path / ".vllm-dev"
    assert store.write_entry(state, "selection", ["a", "b"], command="test", say=said)
    assert not store.write_entry(state, "selection", ["a", "b"], command="test", say=said)
    assert store.read_entry(state, "selection", say=said).value == ["a", "b"]
    assert store.write_entry(state, "python", "/v/bin/python", command="prime",
                             section="presets.release", say=said)
    memory = store.read(state, say=said)
    assert memory.preset("release")["python"].command == "prime"
    assert memory.checkout["selection"].value == ["a", "b"]
    data = json.loads((state / "settings.json").read_text())
    assert data["format"] == store.FORMAT and set(data) == {"format", "presets", "checkout"}
    assert store.write_entry(state, "selection", None, command="test", say=said)  # forgotten
    assert store.read_entry(state, "selection", say=said) is None
    assert said == [] and (state / ".gitignore").read_text() == "*\n"
    with pytest.raises(ValueError, match="not a section"):
        store.write_entry(state, "x", 1, command="t", section="release", say=said)


@pytest.mark.parametrize(("text", "key"), [
    ("{not json", "(file)"),
    ('{"format": 1, "presets": {"release": {"device": {"value": "tpu", "command": "build", '
     '"at": ""}}}}', "presets.release.device"),
    ('{"format": 1, "presets": {"release": {"jobs": {"value": 4, "command": "build", '
     '"at": ""}}}}', "presets.release.jobs"),
    ('{"format": 1, "presets": {"release": {"defines": {"X": {"value": "Y=1", "command": "b", '
     '"at": ""}}}}}', "presets.release.defines.X"),
    ('{"format": 1, "presets": {"release": {"python": "/v/bin/python"}}}',
     "presets.release.python"),
    ('{"format": "one"}', "format"),
])
def test_a_corrupt_or_hand_edited_file_is_set_aside_with_one_line(tmp_path: Path, text: str,
                                                                  key: str) -> None:
    state = tmp_path / ".vllm-dev"
    state.mkdir()
    (state / "settings.json").write_text(text)
    said = Said()
    memory = remember.read(state, say=said)
    assert memory.presets == {} and memory.checkout == {}
    shown = "" if key == "(file)" else f"{key}: "  # the key a hand edit broke, named
    assert len(said) == 1 and said[0].startswith(f"{state / 'settings.json'} was corrupt ({shown}")
    assert "no remembered settings used" in said[0]
    aside = list(state.glob("settings.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == text  # kept, byte for byte
    assert not (state / "settings.json").exists()
    # the next write starts afresh, the copy aside stays
    store.write_entry(state, "n", 1, command="t", say=said)
    assert aside[0].read_text() == text


def test_a_newer_format_is_kept_not_used_and_never_written(tmp_path: Path) -> None:
    state = tmp_path / ".vllm-dev"
    state.mkdir()
    newer = '{"format": 2, "presets": {"release": {"python": "whatever"}}, "more": 1}\n'
    (state / "settings.json").write_text(newer)
    said = Said()
    assert remember.read(state, say=said).presets == {}
    assert len(said) == 1 and "is format 2, newer than this vllm-dev knows (1)" in said[0]
    assert not store.write_entry(state, "x", 1, command="t", say=said)
    assert (state / "settings.json").read_text() == newer
    assert not list(state.glob("*.corrupt-*"))


# --- resolution ---------------------------------------------------------------------------------

def test_precedence_flag_env_run_config_remembered_config_default() -> None:
    memory = Remembered({"arch": entry("8.0"), "cache_dir": entry("/mem")})
    files = [ConfigFile({"arch": "7.5", "cache_dir": "/file", "cache_max_size": "5G"},
                        "invoke.yaml at /c/invoke.yaml", path="/c/invoke.yaml"),
             ConfigFile({"cache_dir": "/run"}, "-f /tmp/ci.yaml", environment=True)]
    resolved = Settings.resolve(flags={}, environ={}, config=files, remembered=memory)
    assert (resolved.arch, resolved.cache_dir, resolved.cache_max_size) == ("8.0", "/run", "5G")
    assert resolved.source_of("arch").words == "given to build, 2026-12-03 14:02"
    assert resolved.source_of("arch").kind == "remembered"
    assert resolved.origin("arch") == "remembered --arch (given to build, 2026-12-03 14:02)"
    assert resolved.source_of("cache_dir").words == "-f /tmp/ci.yaml"
    assert resolved.source_of("cache_max_size").words == "invoke.yaml at /c/invoke.yaml"
    assert resolved.source_of("jobs").kind == "default"
    env = Settings.resolve(flags={}, environ={"VLLM_DEV_ARCH": "9.0"}, config=files,
                           remembered=memory)
    assert (env.arch, env.source_of("arch").words) == ("9.0", "environment VLLM_DEV_ARCH")
    flag = Settings.resolve(flags={"arch": "10.0"}, environ={"VLLM_DEV_ARCH": "9.0"},
                            config=files, remembered=memory)
    assert (flag.arch, flag.source_of("arch").words) == ("10.0", "flag --arch")
    assert resolved.remembered_names() == ["arch"]


def test_defines_merge_per_name_across_layers() -> None:
    memory = Remembered(defines={"X": entry("X=1", "prime"), "Z": entry("Z=3")})
    files = [ConfigFile({"defines": {"W": 4, "Z": 0}}, "invoke.yaml at /c/invoke.yaml")]
    resolved = Settings.resolve(flags={"defines": ["Y=2", "X=9"]}, environ={}, config=files,
                                remembered=memory)
    assert sorted(resolved.defines) == ["W=4", "X=9", "Y=2", "Z=3"]
    sources = {n: s.words for n, s in resolved.define_sources}
    assert sources == {"W": "invoke.yaml at /c/invoke.yaml", "X": "flag --define",
                       "Y": "flag --define", "Z": "given to build, 2026-12-03 14:02"}
    assert resolved.origin("defines") == "--define"
    assert remember.in_use_line(resolved, "build") == (
        "using remembered settings of preset release: -D Z=3 (`vllm-dev settings` shows them; "
        "--no-remember ignores them)")
    assert remember.in_use_line(resolved, "clean") is None  # clean reads no define


def given(flags: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    return Settings.resolve(flags=flags, environ=environ or {})


def memory_of(**values: Any) -> store.Memory:
    return store.Memory(presets={"release": {k: entry(v) for k, v in values.items()}})


@pytest.mark.parametrize(("remembered", "flags", "kept", "line"), [
    ({"dist": "http://farm:10600"}, {"cache": "ccache"}, {},
     "not using the remembered --dist http://farm:10600 (given to build, 2026-12-03 14:02): "
     "--cache ccache compiles without the build farm"),
    ({"cache_remote": "file:///r", "cache": "ccache"}, {"dist": "http://farm:1"}, {},
     "not using the remembered --cache ccache"),
    ({"dist": "http://farm:1"}, {"cache_remote": "file:///r"}, {}, "is a ccache remote"),
    ({"dist": "http://farm:1"}, {"cache": "sccache"}, {"dist": "http://farm:1"}, None),
])
def test_a_remembered_value_a_given_one_excludes_is_set_aside(
        remembered: dict[str, Any], flags: dict[str, Any], kept: dict[str, Any],
        line: str | None) -> None:
    said = Said()
    usable = remember.usable(memory_of(**remembered), "release", given=given(flags),
                             environ={}, say=said)
    assert {k: e.value for k, e in usable.values.items()} == kept
    assert (said[0].startswith(line) or line in said[0]) if line else said == []
    Settings.resolve(flags=flags, environ={}, remembered=usable)  # no conflict left


def test_an_active_venv_wins_over_the_remembered_interpreter(tmp_path: Path) -> None:
    said = Said()
    memory = memory_of(python="/remembered/.venv/bin/python")
    usable = remember.usable(memory, "release", given=given({}),
                             environ={"VIRTUAL_ENV": "/active/.venv"}, say=said)
    assert "python" not in usable.values
    assert said == ["the active virtual environment /active/.venv wins over the remembered "
                    "--python /remembered/.venv/bin/python (given to build, 2026-12-03 14:02); "
                    "`vllm-dev settings --forget python` forgets that one"]
    said.clear()
    same = remember.usable(memory, "release", given=given({}),
                           environ={"VIRTUAL_ENV": "/remembered/.venv"}, say=said)
    assert "python" in same.values and said == []
    said.clear()
    flag = remember.usable(memory, "release", given=given({"python": "/x"}),
                           environ={"VIRTUAL_ENV": "/active/.venv"}, say=said)
    assert said == [] and "python" in flag.values  # the flag wins anyway, silently


# --- what a run leaves in memory ----------------------------------------------------------------

def pending(tmp_path: Path, flags: dict[str, Any], undefine: tuple[str, ...] = (),
            environ: dict[str, str] | None = None) -> remember.Pending:
    settings = Settings.resolve(flags=flags, environ=environ or {})
    return remember.Pending(tmp_path / ".vllm-dev", "release", "build", settings, undefine)


def stored(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / ".vllm-dev" / "settings.json").read_text())


def test_flags_that_shape_the_build_are_remembered_the_rest_not(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    monkeypatch.chdir(tmp_path)
    said = Said()
    run = pending(tmp_path, {"python": "venv/bin/python", "jobs": "3", "device": "cpu",
                             "defines": ["X=1"], "cache_dir": "~/cc", "no_wait": True,
                             "preset": "release"},
                  environ={"VLLM_DEV_ARCH": "8.0"})
    assert run.commit(said)
    section = stored(tmp_path)["presets"]["release"]
    assert set(section) == {"python", "device", "cache_dir", "defines"}
    assert section["python"]["value"] == str(tmp_path / "venv" / "bin" / "python")  # absolute
    assert section["cache_dir"]["value"] == os.path.expanduser("~/cc")
    assert section["defines"] == {"X": {"value": "X=1", "command": "build",
                                        "at": section["defines"]["X"]["at"]}}
    assert said[-1].startswith("remembering for preset release: --python ")
    said.clear()
    assert not run.commit(said) and said == []  # the same values again: nothing written
    assert pending(tmp_path, {"defines": ["Y=2"]}).commit(said)
    assert set(stored(tmp_path)["presets"]["release"]["defines"]) == {"X", "Y"}  # merged
    assert pending(tmp_path, {}, undefine=("X",)).commit(said)
    assert set(stored(tmp_path)["presets"]["release"]["defines"]) == {"Y"}
    assert said[-1] == "forgot for preset release: -D X"


def test_secrets_never_reach_the_store(tmp_path: Path) -> None:
    said = Said()
    run = pending(tmp_path, {"cache_remote": "redis://dev:hunter2@cache:6379",
                             "defines": ["SRC=https://u:tok3n@git.example/x.git", "OK=1"]})
    run.commit(said)
    text = (tmp_path / ".vllm-dev" / "settings.json").read_text()
    assert "hunter2" not in text and "tok3n" not in text and '"OK=1"' in text
    assert any("--cache-remote holds credentials: used for this run, not remembered" in line
               and "export VLLM_DEV_CACHE_REMOTE=<url>" in line for line in said)
    assert not any("hunter2" in line or "tok3n" in line for line in said)


def test_a_farm_given_remembers_the_farm_not_its_sccache_and_ends_contradictions(
        tmp_path: Path) -> None:
    said = Said()
    pending(tmp_path, {"cache_remote": "file:///r"}).commit(said)
    pending(tmp_path, {"dist": "http://farm:10600"}).commit(said)
    section = stored(tmp_path)["presets"]["release"]
    assert set(section) == {"dist"}
    assert said[-1] == "forgot for preset release: --cache-remote"
    pending(tmp_path, {"cache": "ccache"}).commit(said)
    assert set(stored(tmp_path)["presets"]["release"]) == {"cache"}


# --- one opening for every door -----------------------------------------------------------------

def open_in(root: Path, flags: dict[str, Any], *, environ: dict[str, str] | None = None,
            said: Said | None = None, **kwargs: Any) -> Any:
    return open_workspace(command="build", flags=flags, runner=lambda s: SubprocessRunner(),
                          environ=environ or {}, cwd=root,
                          say=said if said is not None else Said(), **kwargs)


def test_no_remember_neither_reads_nor_writes(tmp_path: Path) -> None:
    root = mv.copy_project(tmp_path / "vllm")
    first = open_in(root, {"arch": "8.0"})
    first.remember()
    assert stored(root)["presets"]["release"]["arch"]["value"] == "8.0"
    said = Said()
    again = open_in(root, {}, said=said)
    assert again.settings.arch == "8.0" and said[0].startswith("using remembered settings")
    for way in ({"flags": {"no_remember": True}},
                {"flags": {}, "environ": {"VLLM_DEV_NO_REMEMBER": "1"}}):
        off = open_in(root, way["flags"], environ=way.get("environ"))  # type: ignore[arg-type]
        assert off.settings.arch is None and off.pending is None
    dry = open_workspace(command="build", flags={"arch": "9.0"},
                         runner=lambda s: SubprocessRunner(dry=True), environ={}, cwd=root,
                         say=Said())
    dry.remember()  # --dry never writes
    assert stored(root)["presets"]["release"]["arch"]["value"] == "8.0"


def test_undefine_checks_its_names(tmp_path: Path) -> None:
    root = mv.copy_project(tmp_path / "vllm")
    with pytest.raises(VllmDevError, match=r"^-U 'X\*': give a cache variable's name"):
        open_in(root, {}, undefine=("X*",))
    with pytest.raises(VllmDevError, match="-U X and -D X=... in one command"):
        open_in(root, {"defines": ["X=1"]}, undefine=("X",))
    said = Said()
    files = [ConfigFile({"defines": ["X=1"]}, "invoke.yaml at /c/invoke.yaml")]
    ws = open_in(root, {}, said=said, undefine=("X",), config=lambda _root: files)
    assert ws.settings.defines == ("X=1",)
    assert said == ["-U X: X is still set by invoke.yaml at /c/invoke.yaml; remove it there "
                    "to drop it"]


def test_a_remembered_interpreter_that_is_gone_is_one_line(tmp_path: Path) -> None:
    root = mv.copy_project(tmp_path / "vllm")
    venv = mv.make_venv(tmp_path / "venv-b")
    open_in(root, {"python": str(venv)}).remember()
    (venv.parent / "python").unlink()
    with pytest.raises(VllmDevError) as info:
        _ = open_in(root, {}).interpreter
    assert str(info.value) == (
        f"the remembered --python {venv} "
        f"({store.read(root / '.vllm-dev', say=Said()).preset('release')['python'].given()}) "
        "no longer exists: pass --python, or forget it with `vllm-dev settings --forget python`")


# --- configuration levels -----------------------------------------------------------------------

def test_invoke_levels_stay_apart_and_the_checkout_root_file_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "vllm"
    sub = root / "csrc"
    sub.mkdir(parents=True)
    (root / "invoke.yaml").write_text("vllm_dev:\n  arch: '8.0'\n  defines: {A: 1}\n")
    (sub / "invoke.yaml").write_text("vllm_dev:\n  arch: '9.0'\n")
    (tmp_path / "ci.yaml").write_text("vllm_dev:\n  cache_dir: /run\n")
    monkeypatch.setenv("INVOKE_VLLM_DEV_CACHE", "none")
    config = Config(defaults={"vllm_dev": t.DEFAULTS}, project_location=str(sub),
                    runtime_path=str(tmp_path / "ci.yaml"))
    config.load_project()
    config.load_runtime()
    config.load_shell_env()
    levels = config_files.levels(config)
    files = levels.files(root)
    assert [f.where for f in files] == [
        f"invoke.yaml at {root}/invoke.yaml", f"invoke.yaml at {sub}/invoke.yaml",
        "INVOKE_VLLM_DEV_* variables", f"-f {tmp_path}/ci.yaml"]
    assert [f.environment for f in files] == [False, False, True, True]
    resolved = Settings.resolve(flags={}, environ={}, config=files,
                                remembered=Remembered({"cache_dir": entry("/mem")}))
    assert (resolved.arch, resolved.defines, resolved.cache, resolved.cache_dir) == (
        "9.0", ("A=1",), "none", "/run")
    assert levels.files(sub) == levels.files(None)  # the same file is read once


def test_the_prime_and_build_tasks_take_minus_u_and_settings_is_a_task() -> None:
    ns = t.namespace()
    for name in ("prime", "build"):
        names = {n for a in ns[name].get_arguments() if a.name == "undefine" for n in a.names}
        assert names == {"undefine", "U"}
    arguments = {a.name for a in ns["settings"].get_arguments()}
    assert arguments == {"source", "preset", "json", "forget", "forget_all"}


def test_nox_sessions_read_the_checkout_files_and_defines_but_no_memory(tmp_path: Path) -> None:
    from vllm_dev_frontends import nox_flow

    root = mv.copy_project(tmp_path / "vllm")
    (root / "invoke.yaml").write_text("vllm_dev:\n  defines: {FROM_YAML: 1}\n")
    open_in(root, {"arch": "8.0", "defines": ["REMEMBERED=1"]}).remember()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ws = open_workspace(command="nox -s release", flags={"source": str(root)},
                        runner=lambda s: SubprocessRunner(), environ={},
                        config=nox_flow.invoke_config(elsewhere, {}).files, cwd=elsewhere,
                        say=Said(), remember=False)
    assert ws.settings.defines == ("FROM_YAML=1",) and ws.settings.arch is None
    assert dict(ws.settings.define_sources)["FROM_YAML"].words == (
        f"invoke.yaml at {root}/invoke.yaml")
    assert ws.pending is None


def test_open_workspace_hands_every_runner_the_cache_environment_and_secrets(
        tmp_path: Path) -> None:
    """The one place a runner's environment is assembled: a credentialed remote-cache URL
    reaches every door's runner by variable and is never echoed (the Nox sessions once lacked
    it)."""
    root = mv.copy_project(tmp_path / "vllm")
    given: list[Any] = []
    url = "redis://user:s3cret@cache.example:6379"
    open_workspace(command="build", flags={"cache_remote": url}, environ={}, cwd=root,
                   say=Said(), remember=False,
                   runner=lambda setup: given.append(setup) or SubprocessRunner())
    assert dict(given[0].environment) == {"VLLM_DEV_CACHE_REMOTE": url}
    assert url in given[0].secrets and "s3cret" in given[0].secrets
    open_workspace(command="build", flags={}, environ={}, cwd=root, say=Said(),
                   remember=False, runner=lambda setup: given.append(setup) or SubprocessRunner())
    assert (dict(given[1].environment), given[1].secrets) == ({}, ())


def test_a_value_the_command_chose_ranks_as_a_flag_and_says_why(tmp_path: Path) -> None:
    """The demo's example arch: checked like a flag, and named by why, never as ``--arch``."""
    root = mv.copy_project(tmp_path / "vllm")
    why = "the demo (the example project's default arch)"
    ws = open_in(root, {}, remember=False, chosen={"arch": ("7.5", why)})
    assert (ws.settings.arch, ws.settings.origin("arch")) == ("7.5", why)
    assert ws.settings.source_of("arch").words == why
    assert open_in(root, {}, remember=False).settings.origin("arch") == "--arch"
    with pytest.raises(VllmDevError, match=r"^the demo .* is not a list of CUDA arches"):
        open_in(root, {}, remember=False, chosen={"arch": ("sm_75", why)})
