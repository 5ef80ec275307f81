"""The resolved settings of one run, and where each value came from.

Precedence, the same for every setting: command-line flag > environment variable > configuration
(``invoke.yaml`` / ``INVOKE_VLLM_DEV_*``, under the ``vllm_dev`` key) > built-in default. Values are
validated here, once, so bad input fails before anything runs, naming the flag, variable or key
that carried it. What each setting is (flag, variables, parser, default) is declared once in
:mod:`vllm_dev.config.declarations`; this module only applies those declarations, plus the rules
that relate two settings (a remote cache needs ccache; a build farm compiles through sccache).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from vllm_dev.config.declarations import SETTINGS, Setting, setting
from vllm_dev.config.values import boolean, choice, positive_float, positive_int, text
from vllm_dev.errors import VllmDevError

__all__ = ["Settings", "boolean", "choice", "positive_float", "positive_int", "text"]

_T = TypeVar("_T")


def _declared(cls: type[_T]) -> type[_T]:
    """Give each field the default of its declaration, and refuse a field list that is not the
    declarations' (same names, same order): the annotations below exist for the type checker
    only, so they must not become a second, drifting list of settings."""
    fields = [name for name in cls.__annotations__ if name != "origins"]
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
    confirm_minutes: float | None
    origins: tuple[tuple[str, str], ...] = ()

    def origin(self, name: str) -> str:
        """How to name the source of a setting in a message (``--jobs``, ``MAX_JOBS``, ...)."""
        return dict(self.origins).get(name) or setting(name).origin

    @classmethod
    def resolve(
        cls,
        *,
        flags: Mapping[str, Any],
        environ: Mapping[str, str],
        config: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Merge the three sources, setting by setting, and validate the result."""
        config = config or {}
        _check_config_keys(config)
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for declared in SETTINGS:
            found = _given(declared, flags=flags, environ=environ, config=config)
            if found is not None:
                raw, origins[declared.name] = found
                values[declared.name] = declared.convert(raw, origins[declared.name])
        _check_cache(values, origins)
        _check_dist(values, origins)
        return cls(**values, origins=tuple(sorted(origins.items())))


def _given(declared: Setting, *, flags: Mapping[str, Any], environ: Mapping[str, str],
           config: Mapping[str, Any]) -> tuple[Any, str] | None:
    """The raw value of one setting and its origin, from the first source that sets it."""
    flag = flags.get(declared.name)
    if isinstance(flag, str) and not flag.strip():  # `--jobs ""`: a mistake, not "unset"
        raise VllmDevError(f"{declared.origin} needs a value, got an empty one: give one or "
                           "leave the option out")
    if flag not in (None, "", [], ()):
        return flag, declared.origin
    for var in declared.env:
        if environ.get(var):
            return environ[var], var
    if config.get(declared.config_key) not in (None, ""):
        return config[declared.config_key], f"config vllm_dev.{declared.config_key}"
    return None


def _check_config_keys(config: Mapping[str, Any]) -> None:
    """A key under ``vllm_dev:`` that names no setting (``jbos: 4``) would be ignored without a
    word; it is an error, with the closest setting's name."""
    import difflib

    known = [s.config_key for s in SETTINGS]
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (settings: {', '.join(known)})"
            raise VllmDevError(f"config vllm_dev.{key} is not a setting{hint}: fix or remove it "
                               "in the configuration file (./invoke.yaml, ~/.invoke.yaml or "
                               "-f FILE)"[:400])


def _check_cache(values: dict[str, Any], origins: dict[str, str]) -> None:
    """A shared (remote) cache is ccache's (see :mod:`vllm_dev.caching.compiler_cache`)."""
    cache = values.get("cache", setting("cache").default)
    if values.get("cache_remote") and cache != "ccache":
        raise VllmDevError(
            f"{origins['cache_remote']} needs the ccache compiler cache, not "
            f"{cache!r} (from {origins['cache']}): sccache's CUDA results miss across "
            "checkouts and its server fails to start when the remote is down"
        )


def _check_dist(values: dict[str, Any], origins: dict[str, str]) -> None:
    """A build farm compiles through sccache: its cache replaces ccache's (see dist.py)."""
    if "dist" not in values:
        return
    explicit = not origins.get("cache", "config").startswith("config")
    if explicit and values["cache"] != "sccache":
        raise VllmDevError(f"{origins['dist']} compiles through sccache and uses its cache: drop "
                           f"{origins['cache']}={values['cache']} or set it to sccache")
    values["cache"] = "sccache"  # the configured default (ccache) gives way to the farm
    origins["cache"] = origins["dist"]
    if values.get("cache_remote"):
        raise VllmDevError(f"{origins['dist']} uses sccache's cache; {origins['cache_remote']} "
                           "is a ccache remote: drop one of them")
