"""The resolved settings of one run, and where each value came from.

Precedence, the same for every setting: command-line flag > environment (a variable; a
configuration file given with ``-f`` and Invoke's ``INVOKE_VLLM_DEV_*`` variables rank here too)
> remembered (a flag given to an earlier command of this checkout and preset, config/store.py) >
configuration files (``invoke.yaml`` of the working directory and of the checkout root,
``~/.invoke.yaml``, ``/etc/invoke.yaml``, under the ``vllm_dev`` key) > built-in default. Defines
(``-D``) are merged per name over the same layers: a flag's ``-D Y=2`` adds Y and keeps a
remembered X. Values are validated here, once, so bad input fails before anything runs, naming the
flag, variable or key that carried it. What each setting is (flag, variables, parser, default) is
declared once in :mod:`vllm_dev.config.declarations`; this module only applies those declarations,
plus the rules that relate two settings (a remote cache needs ccache; a build farm compiles
through sccache). Each value's source is kept in words, for ``vllm-dev settings``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vllm_dev.config.declarations import SETTINGS, Setting, setting
from vllm_dev.config.store import Entry
from vllm_dev.config.values import boolean, choice, positive_float, positive_int, text
from vllm_dev.errors import VllmDevError

__all__ = ["ConfigFile", "Remembered", "Settings", "Source", "boolean", "choice",
           "positive_float", "positive_int", "text"]

_T = TypeVar("_T")
#: Settings' fields that describe the values rather than being settings.
_META = ("origins", "sources", "define_sources")


@dataclass(frozen=True)
class ConfigFile:
    """The ``vllm_dev`` section of one configuration source, and how to name it in words."""

    values: Mapping[str, Any]
    #: ``invoke.yaml at /home/me/vllm/invoke.yaml``, ``-f /tmp/ci.yaml``, ...
    where: str = "the configuration (./invoke.yaml, ~/.invoke.yaml or -f FILE)"
    #: Ranks with the environment: a file given with ``-f`` and ``INVOKE_VLLM_DEV_*`` are this
    #: run's, as a variable is; the files found by name are the standing configuration.
    environment: bool = False
    #: The file, when there is one.
    path: str | None = None


@dataclass(frozen=True)
class Remembered:
    """What the store holds for this checkout and preset (config/store.py), as resolve uses it."""

    values: Mapping[str, Entry] = field(default_factory=dict)
    defines: Mapping[str, Entry] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """Where a value came from: ``kind`` one of flag, environment, remembered, config, default;
    ``words`` as ``vllm-dev settings`` says it (``given to build, 2026-12-03 14:02``)."""

    kind: str
    words: str


def _declared(cls: type[_T]) -> type[_T]:
    """Give each field the default of its declaration, and refuse a field list that is not the
    declarations' (same names, same order): the annotations below exist for the type checker
    only, so they must not become a second, drifting list of settings."""
    fields = [name for name in cls.__annotations__ if name not in _META]
    declared = [s.name for s in SETTINGS]
    if fields != declared:
        raise TypeError(f"Settings fields {fields} are not the declared settings {declared} "
                        "(vllm_dev/config/declarations.py)")
    for s in SETTINGS:
        setattr(cls, s.name, s.default)
    return cls


@dataclass(frozen=True)
@_declared
class Settings:
    """Resolved settings. ``None`` means "let vllm-dev decide" (detect, or compute). Each field's
    meaning, sources and default: :data:`vllm_dev.config.declarations.SETTINGS`."""

    source: str | None
    python: str | None
    device: str | None
    preset: str
    jobs: int | None
    max_jobs: int | None
    nvcc_threads: int | None
    job_memory_gib: float | None
    arch: str | None
    cache: str
    cache_dir: str | None
    cache_max_size: str | None
    cache_remote: str | None
    cache_remote_mode: str
    dist: str | None
    defines: tuple[str, ...]
    presets_dir: str | None
    no_wait: bool
    no_remember: bool
    no_split: bool
    confirm_minutes: float | None
    origins: tuple[tuple[str, str], ...] = ()
    #: Each value's source (only those not left to their default).
    sources: tuple[tuple[str, Source], ...] = ()
    #: Each define's source, by define name.
    define_sources: tuple[tuple[str, Source], ...] = ()

    def origin(self, name: str) -> str:
        """How to name the source of a setting in a message (``--jobs``, ``MAX_JOBS``, ...)."""
        return dict(self.origins).get(name) or setting(name).origin

    def source_of(self, name: str) -> Source:
        """Where ``name``'s value came from (``default`` when nothing set it)."""
        return dict(self.sources).get(name) or Source("default", "default")

    def remembered_names(self) -> list[str]:
        """The settings (``defines`` for remembered defines) this run takes from memory."""
        used = [n for n, s in self.sources if s.kind == "remembered" and n != "defines"]
        if any(s.kind == "remembered" for _, s in self.define_sources):
            used.append("defines")
        return used

    @classmethod
    def resolve(
        cls,
        *,
        flags: Mapping[str, Any],
        environ: Mapping[str, str],
        config: Mapping[str, Any] | Sequence[ConfigFile] | None = None,
        remembered: Remembered | None = None,
    ) -> Settings:
        """Merge the sources, setting by setting, and validate the result. ``config`` is one
        mapping (a plain configuration) or the configuration sources in Invoke's order (a later
        one wins among its rank)."""
        files = _config_files(config)
        for each in files:
            _check_config_keys(each)
        memory = remembered or Remembered()
        found: dict[str, Any] = {}
        origins: dict[str, str] = {}
        sources: dict[str, Source] = {}
        define_sources: dict[str, Source] = {}
        for declared in SETTINGS:
            if declared.repeatable:
                merged = _merged_defines(declared, flags=flags, environ=environ, files=files,
                                         memory=memory)
                if merged:
                    found[declared.name] = tuple(item for item, _, _ in merged.values())
                    top = max(merged.values(), key=lambda m: _RANK[m[1].kind])
                    origins[declared.name], sources[declared.name] = top[2], top[1]
                    define_sources = {name: m[1] for name, m in merged.items()}
                continue
            given = _given(declared, flags=flags, environ=environ, files=files, memory=memory)
            if given is not None:
                raw, origins[declared.name], sources[declared.name] = given
                found[declared.name] = declared.convert(raw, origins[declared.name])
        _check_cache(found, origins)
        _check_dist(found, origins, sources)
        return cls(**found, origins=tuple(sorted(origins.items())),
                   sources=tuple(sorted(sources.items())),
                   define_sources=tuple(define_sources.items()))


#: How strongly each kind of source holds (the define merge keeps the strongest per name).
_RANK = {"default": 0, "config": 1, "remembered": 2, "environment": 3, "flag": 4}


def _config_files(config: Mapping[str, Any] | Sequence[ConfigFile] | None) -> list[ConfigFile]:
    if not config:
        return []
    if isinstance(config, Sequence) and not isinstance(config, (str, bytes)):
        return [c for c in config if c.values]
    return [ConfigFile(dict(config))]


def _config_value(declared: Setting, files: Sequence[ConfigFile], *, environment: bool
                  ) -> tuple[Any, str, Source] | None:
    """The value the strongest configuration source of one rank gives (the last one)."""
    for each in reversed([f for f in files if f.environment is environment]):
        value = each.values.get(declared.config_key)
        if value not in (None, ""):
            return (value, f"config vllm_dev.{declared.config_key}",
                    Source("environment" if environment else "config", each.where))
    return None


def _remembered_origin(declared: Setting, entry: Entry) -> str:
    return f"remembered {declared.flag or declared.name} ({entry.given()})"


def _given(declared: Setting, *, flags: Mapping[str, Any], environ: Mapping[str, str],
           files: Sequence[ConfigFile], memory: Remembered) -> tuple[Any, str, Source] | None:
    """The raw value of one setting, its origin and source, from the first source that sets
    it."""
    flag = flags.get(declared.name)
    if isinstance(flag, str) and not flag.strip():  # `--jobs ""`: a mistake, not "unset"
        raise VllmDevError(f"{declared.origin} needs a value, got an empty one: give one or "
                           "leave the option out")
    if flag not in (None, "", [], ()):
        return flag, declared.origin, Source("flag", f"flag {declared.origin}")
    for var in declared.env:
        if environ.get(var):
            return environ[var], var, Source("environment", f"environment {var}")
    if (found := _config_value(declared, files, environment=True)) is not None:
        return found
    entry = memory.values.get(declared.name)
    if entry is not None:
        return entry.value, _remembered_origin(declared, entry), Source("remembered",
                                                                        entry.given())
    return _config_value(declared, files, environment=False)


def _merged_defines(declared: Setting, *, flags: Mapping[str, Any], environ: Mapping[str, str],
                    files: Sequence[ConfigFile], memory: Remembered
                    ) -> dict[str, tuple[str, Source, str]]:
    """Defines per name over every layer, weakest first: a stronger layer replaces a name's
    value, and adds its other names (``-D Y=2`` keeps a remembered ``X``)."""
    from vllm_dev.presets.render import parse_define  # lazy: tests/test_lazy_imports.py

    merged: dict[str, tuple[str, Source, str]] = {}

    def add(items: tuple[str, ...], source: Source, origin: str) -> None:
        for item in items:
            merged[parse_define(item, origin)[0]] = (item, source, origin)

    origin = f"config vllm_dev.{declared.config_key}"
    for each in (f for f in files if not f.environment):
        if each.values.get(declared.config_key) not in (None, "", [], ()):
            add(declared.convert(each.values[declared.config_key], origin),
                Source("config", each.where), origin)
    for entry in memory.defines.values():
        add((str(entry.value),), Source("remembered", entry.given()),
            _remembered_origin(declared, entry))
    for each in (f for f in files if f.environment):
        if each.values.get(declared.config_key) not in (None, "", [], ()):
            add(declared.convert(each.values[declared.config_key], origin),
                Source("environment", each.where), origin)
    for var in declared.env:
        if environ.get(var):
            add(declared.convert(environ[var], var), Source("environment", f"environment {var}"),
                var)
            break
    flag = flags.get(declared.name)
    if isinstance(flag, str) and not flag.strip():
        raise VllmDevError(f"{declared.origin} needs a value, got an empty one: give one or "
                           "leave the option out")
    if flag not in (None, "", [], ()):
        add(declared.convert(flag, declared.origin),
            Source("flag", f"flag {declared.origin}"), declared.origin)
    return merged


def _check_config_keys(config: ConfigFile) -> None:
    """A key under ``vllm_dev:`` that names no setting (``jbos: 4``) would be ignored without a
    word; it is an error, with the closest setting's name."""
    known = [s.config_key for s in SETTINGS]
    for key in config.values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (settings: {', '.join(known)})"
            raise VllmDevError(f"config vllm_dev.{key} is not a setting{hint}: fix or remove it "
                               f"in {config.where}"[:400])


def _check_cache(values: dict[str, Any], origins: dict[str, str]) -> None:
    """A shared (remote) cache is ccache's (see :mod:`vllm_dev.caching.compiler_cache`)."""
    cache = values.get("cache", setting("cache").default)
    if values.get("cache_remote") and cache != "ccache":
        raise VllmDevError(
            f"{origins['cache_remote']} needs the ccache compiler cache, not "
            f"{cache!r} (from {origins['cache']}): sccache's CUDA results miss across "
            "checkouts and its server fails to start when the remote is down"
        )


def _check_dist(values: dict[str, Any], origins: dict[str, str],
                sources: dict[str, Source]) -> None:
    """A build farm compiles through sccache: its cache replaces ccache's (see dist.py)."""
    if "dist" not in values:
        return
    explicit = sources.get("cache", Source("config", "")).kind not in ("config", "default")
    if explicit and values["cache"] != "sccache":
        raise VllmDevError(f"{origins['dist']} compiles through sccache and uses its cache: drop "
                           f"{origins['cache']}={values['cache']} or set it to sccache")
    values["cache"] = "sccache"  # the configured default (ccache) gives way to the farm
    origins["cache"] = origins["dist"]
    sources["cache"] = sources["dist"]
    if values.get("cache_remote"):
        raise VllmDevError(f"{origins['dist']} uses sccache's cache; {origins['cache_remote']} "
                           "is a ccache remote: drop one of them")
