"""The declarations of the settings, and Settings.resolve driven by them: precedence, origins in
messages, empty flags, unknown config keys, one owner per set of choices."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from invoke import Config

from vllm_dev.caching import compiler_cache
from vllm_dev.checkout import tree
from vllm_dev.config import declarations as d
from vllm_dev.config.settings import Settings, _declared
from vllm_dev.errors import VllmDevError

pytestmark = pytest.mark.unit

# A valid raw value per setting (as a flag, a variable or a YAML value would give it) and the
# value it resolves to. A new declaration without a sample fails test_every_setting_has_a_sample.
SAMPLES: dict[str, tuple[Any, Any]] = {
    "source": ("/src/vllm", "/src/vllm"),
    "python": ("/venv/bin/python", "/venv/bin/python"),
    "device": ("CPU", "cpu"),
    "preset": ("debug", "debug"),
    "jobs": ("3", 3),
    "max_jobs": ("16", 16),
    "nvcc_threads": ("2", 2),
    "job_memory_gib": ("1.5", 1.5),
    "arch": ("8.0,9.0", "8.0,9.0"),
    "cache": ("none", "none"),
    "cache_dir": ("/cache", "/cache"),
    "cache_max_size": ("20G", "20G"),
    "cache_remote": ("redis://cache.example.com:6379", "redis://cache.example.com:6379"),
    "cache_remote_mode": ("read-write", "read-write"),
    "dist": ("http://127.0.0.1:10600/", "http://127.0.0.1:10600"),
    "defines": ("A=1 'B=x y'", ("A=1", "B=x y")),
    "presets_dir": ("/mine", "/mine"),
    "no_wait": ("yes", True),
    "no_remember": ("1", True),
    "no_split": ("1", True),
    "confirm_minutes": ("0", 0.0),
}


def test_every_setting_has_a_sample() -> None:
    assert set(SAMPLES) == {s.name for s in d.SETTINGS}


def test_names_flags_short_flags_and_variables_are_unique() -> None:
    for attribute in ("name", "flag", "short", "param"):
        given = [getattr(s, attribute) for s in d.SETTINGS if getattr(s, attribute)]
        assert len(given) == len(set(given)), attribute
    variables = [v for s in d.SETTINGS for v in s.env]
    assert len(variables) == len(set(variables))
    for s in d.SETTINGS:
        assert s.steps and s.steps <= set(d.STEPS), s.name
        assert s.short is None or (len(s.short) == 1 and s.short not in "hc"), s.name
        assert s.flag is None or s.flag == "--" + s.name.replace("_", "-") or s.repeatable


def test_choices_come_from_the_modules_that_own_them() -> None:
    assert d.setting("device").choices is tree.DEVICES
    assert d.setting("cache").choices is compiler_cache.KINDS
    assert d.setting("cache_remote_mode").choices is compiler_cache.REMOTE_MODES
    for s in d.SETTINGS:
        if s.choices:
            assert s.default is None or s.default in s.choices, s.name


@pytest.mark.parametrize("declared", d.SETTINGS, ids=lambda s: s.name)
def test_each_default_parses_to_itself(declared: d.Setting) -> None:
    if declared.default not in (None, ()):
        assert declared.convert(declared.default, "test") == declared.default


def test_settings_fields_are_the_declarations_with_their_defaults() -> None:
    names = [f.name for f in fields(Settings)
             if f.name not in ("origins", "sources", "define_sources")]
    assert names == [s.name for s in d.SETTINGS]
    plain = Settings()
    for s in d.SETTINGS:
        assert getattr(plain, s.name) == s.default, s.name
    assert plain.cache_remote_mode == "read-only"


def test_a_settings_class_that_drifts_from_the_declarations_is_refused() -> None:
    class Missing:
        source: str | None
        origins: tuple[tuple[str, str], ...] = ()

    with pytest.raises(TypeError, match="not the declared settings"):
        _declared(Missing)


@pytest.mark.parametrize("declared", d.SETTINGS, ids=lambda s: s.name)
def test_flag_beats_env_beats_config_beats_default(declared: d.Setting) -> None:
    raw, value = SAMPLES[declared.name]
    config = {declared.config_key: raw}
    resolved = Settings.resolve(flags={}, environ={}, config=config)
    assert getattr(resolved, declared.name) == value
    assert resolved.origin(declared.name) == f"config vllm_dev.{declared.config_key}"
    for var in reversed(declared.env):  # the first variable set wins
        environ = {v: raw for v in declared.env[declared.env.index(var):]}
        resolved = Settings.resolve(flags={}, environ=environ, config=config)
        assert resolved.origin(declared.name) == var
        assert getattr(resolved, declared.name) == value
    if declared.flag:
        flag_raw = list(value) if declared.repeatable else raw
        resolved = Settings.resolve(flags={declared.name: flag_raw},
                                    environ={v: raw for v in declared.env}, config=config)
        assert resolved.origin(declared.name) == declared.flag
        assert getattr(resolved, declared.name) == (
            tuple(flag_raw) if declared.repeatable else value)
    assert getattr(Settings.resolve(flags={}, environ={}), declared.name) == declared.default


@pytest.mark.parametrize("declared", [s for s in d.SETTINGS if s.flag and not s.switch],
                         ids=lambda s: s.name)
def test_an_empty_flag_is_refused_naming_the_flag(declared: d.Setting) -> None:
    with pytest.raises(VllmDevError) as info:
        Settings.resolve(flags={declared.name: " "}, environ={})
    assert str(info.value).startswith(f"{declared.flag} needs a value, got an empty one")


@pytest.mark.parametrize(("name", "bad", "message"), [
    ("jobs", "lots", "must be a positive integer, got 'lots'"),
    ("max_jobs", "0", "must be a positive integer, got '0'"),
    ("job_memory_gib", "-1", "must be a positive number, got '-1'"),
    ("device", "tpu", "must be one of cuda, cpu, rocm, got 'tpu'"),
    ("cache", "distcc", "must be one of ccache, sccache, none, got 'distcc'"),
    ("cache_remote_mode", "rw", "must be one of read-only, read-write, got 'rw'"),
    ("no_wait", "maybe", "must be true or false, got 'maybe'"),
    ("arch", "sm_90", "'sm_90' is not a list of CUDA arches"),
    ("cache_max_size", "lots", "must be a size like 20G"),
])
def test_a_bad_value_names_its_origin(name: str, bad: str, message: str) -> None:
    declared = d.setting(name)
    if declared.flag:
        with pytest.raises(VllmDevError, match=f"^{declared.flag} "):
            Settings.resolve(flags={name: bad}, environ={})
    var = declared.env[-1]
    with pytest.raises(VllmDevError) as info:
        Settings.resolve(flags={}, environ={var: bad})
    assert str(info.value).startswith(var) and message in str(info.value)
    with pytest.raises(VllmDevError) as info:
        Settings.resolve(flags={}, environ={}, config={name: bad})
    assert str(info.value).startswith(f"config vllm_dev.{name}") and message in str(info.value)


def test_an_unknown_config_key_is_reported_with_the_closest_setting() -> None:
    with pytest.raises(VllmDevError, match=r"config vllm_dev.jbos is not a setting \(did you "
                                           r"mean jobs\?\)"):
        Settings.resolve(flags={}, environ={}, config={"jbos": 4})
    with pytest.raises(VllmDevError, match=r"vllm_dev.xyzzy is not a setting \(settings: source, "):
        Settings.resolve(flags={}, environ={}, config={"xyzzy": 4})


def test_an_off_switch_from_the_command_line_does_not_hide_the_environment() -> None:
    flags = d.flags_from_options({"no_wait": False, "define": [], "jobs": None})
    assert flags == {"no_wait": None, "defines": [], "jobs": None}
    assert Settings.resolve(flags=flags, environ={"VLLM_DEV_NO_WAIT": "1"}).no_wait is True
    flags = d.flags_from_options({"no_wait": True})
    assert Settings.resolve(flags=flags, environ={}).origin("no_wait") == "--no-wait"


def test_the_config_defaults_are_the_declared_ones_and_a_defines_map_merges(tmp_path: Any
                                                                             ) -> None:
    defaults = d.config_defaults()
    assert defaults["cache_remote_mode"] == "read-only"  # was None beside Settings' read-only
    assert {k: v for k, v in defaults.items()} == {
        s.config_key: s.default for s in d.SETTINGS if not s.repeatable}
    # A map under `defines:` (the README's form) merges over the defaults: the repeatable
    # setting has no default there that Invoke would refuse to merge a map into.
    (tmp_path / "invoke.yaml").write_text("vllm_dev:\n  defines:\n    A: 1\n    B: true\n")
    config = Config(defaults={"vllm_dev": defaults}, project_location=str(tmp_path))
    config.load_project()
    resolved = Settings.resolve(flags={}, environ={}, config=dict(config.vllm_dev))
    assert resolved.defines == ("A=1", "B=ON")
    assert resolved.cache_remote_mode == "read-only"
