"""Every tunable of vllm-dev, and where each value came from.

Precedence, the same for every setting: command-line flag > environment variable > configuration
(``invoke.yaml`` / ``INVOKE_VLLM_DEV_*``, under the ``vllm_dev`` key) > built-in default. Values are
validated here, once, so bad input fails before anything runs, naming the flag, variable or key
that carried it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from vllm_dev.checkout.tree import DEVICES
from vllm_dev.errors import VllmDevError

CACHES = ("ccache", "sccache", "none")

# Environment variables per setting, first match wins. MAX_JOBS and NVCC_THREADS keep vLLM's names.
ENV_VARS: dict[str, tuple[str, ...]] = {
    "source": ("VLLM_DEV_SOURCE",),
    "python": ("VLLM_DEV_PYTHON",),
    "device": ("VLLM_TARGET_DEVICE",),
    "preset": ("VLLM_DEV_PRESET",),
    "jobs": ("VLLM_DEV_JOBS",),
    "max_jobs": ("MAX_JOBS",),
    "nvcc_threads": ("NVCC_THREADS",),
    "arch": ("VLLM_DEV_ARCH", "TORCH_CUDA_ARCH_LIST"),
    "job_memory_gib": ("VLLM_DEV_JOB_MEMORY_GIB",),
    "cache": ("VLLM_DEV_CACHE",),
    "cache_dir": ("VLLM_DEV_CACHE_DIR",),
    "cache_max_size": ("VLLM_DEV_CACHE_MAX_SIZE",),
    "cache_remote": ("VLLM_DEV_CACHE_REMOTE",),
    "cache_remote_mode": ("VLLM_DEV_CACHE_REMOTE_MODE",),
    "presets_dir": ("VLLM_DEV_PRESETS_DIR",),
    "defines": ("VLLM_DEV_DEFINES",),
    "no_wait": ("VLLM_DEV_NO_WAIT",),
    "dist": ("VLLM_DEV_DIST",),
}


_FLAG_NAMES = {"defines": "--define"}


def _defines(value: Any, origin: str) -> tuple[str, ...]:
    """``--define`` values (a list), ``VLLM_DEV_DEFINES`` (shell words, so a value may hold
    spaces when quoted) or config ``defines`` (a list of NAME=VALUE, or a NAME: VALUE map)."""
    import shlex

    from vllm_dev.presets.render import parse_define

    if isinstance(value, Mapping):
        items = [f"{k}={'ON' if v is True else 'OFF' if v is False else v}"
                 for k, v in value.items()]
    elif isinstance(value, str):
        try:
            items = shlex.split(value)
        except ValueError as exc:
            raise VllmDevError(f"{origin}: {exc} in {value!r}") from None
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        raise VllmDevError(f"{origin} must be a list of NAME=VALUE, got {value!r}"[:300])
    by_name = {parse_define(item, origin)[0]: item for item in items}  # the last one wins
    return tuple(by_name.values())


@dataclass(frozen=True)
class Settings:
    """Resolved settings. ``None`` means "let vllm-dev decide" (detect, or compute)."""

    source: str | None = None
    python: str | None = None
    device: str | None = None
    preset: str = "release"
    jobs: int | None = None
    max_jobs: int | None = None
    nvcc_threads: int | None = None
    arch: str | None = None
    job_memory_gib: float | None = None
    cache: str = "ccache"
    cache_dir: str | None = None
    cache_max_size: str | None = None
    cache_remote: str | None = None
    cache_remote_mode: str = "read-only"
    presets_dir: str | None = None
    # --define NAME[:TYPE]=VALUE (repeatable), rendered into every preset's cacheVariables.
    defines: tuple[str, ...] = ()
    no_wait: bool = False  # fail at once when another build holds the build dir (locking.py)
    dist: str | None = None  # sccache-dist scheduler URL (dist.py); the token is not a setting
    origins: tuple[tuple[str, str], ...] = ()

    def origin(self, name: str) -> str:
        """How to name the source of a setting in a message (``--jobs``, ``MAX_JOBS``, ...)."""
        return dict(self.origins).get(name, f"--{name.replace('_', '-')}")

    @classmethod
    def resolve(
        cls,
        *,
        flags: Mapping[str, Any],
        environ: Mapping[str, str],
        config: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Merge the three sources and validate the result."""
        config = config or {}
        _check_config_keys(config)
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for f in fields(cls):
            if f.name == "origins":
                continue
            flag = flags.get(f.name)
            if isinstance(flag, str) and not flag.strip():  # `--jobs ""`: a mistake, not "unset"
                raise VllmDevError(f"{_FLAG_NAMES.get(f.name, '--' + f.name.replace('_', '-'))} "
                                   "needs a value, got an empty one: give one or leave the "
                                   "option out")
            if flag not in (None, "", [], ()):
                values[f.name], origins[f.name] = flag, _FLAG_NAMES.get(
                    f.name, f"--{f.name.replace('_', '-')}")
                continue
            for var in ENV_VARS.get(f.name, ()):
                if environ.get(var):
                    values[f.name], origins[f.name] = environ[var], var
                    break
            else:
                if config.get(f.name) not in (None, ""):
                    values[f.name] = config[f.name]
                    origins[f.name] = f"config vllm_dev.{f.name}"
        if "defines" in values:
            values["defines"] = _defines(values["defines"], origins["defines"])
        for f in fields(cls):  # invoke.yaml can hold any YAML: lists, maps, numbers
            if f.name in values and f.name != "defines" and "str" in str(f.type):
                values[f.name] = text(values[f.name], origins[f.name])
        for name in ("jobs", "max_jobs", "nvcc_threads"):
            if name in values:
                values[name] = positive_int(values[name], origins[name])
        if "job_memory_gib" in values:
            values["job_memory_gib"] = positive_float(values["job_memory_gib"],
                                                      origins["job_memory_gib"])
        if "device" in values:
            values["device"] = choice(values["device"], DEVICES, origins["device"])
        if "cache" in values:
            values["cache"] = choice(values["cache"], CACHES, origins["cache"])
        if "no_wait" in values:
            values["no_wait"] = boolean(values["no_wait"], origins["no_wait"])
        if "arch" in values:  # checked whatever the device: a typo is one on a CPU build too
            from vllm_dev.toolchain.arch import parse_arch_setting

            parse_arch_setting(values["arch"], origin=origins["arch"])
        _check_cache(values, origins)
        _check_dist(values, origins)
        return cls(**values, origins=tuple(sorted(origins.items())))


def _check_config_keys(config: Mapping[str, Any]) -> None:
    """A key under ``vllm_dev:`` that names no setting (``jbos: 4``) would be ignored without a
    word; it is an error, with the closest setting's name."""
    import difflib

    known = [f.name for f in fields(Settings) if f.name != "origins"]
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (settings: {', '.join(known)})"
            raise VllmDevError(f"config vllm_dev.{key} is not a setting{hint}: fix or remove it "
                               "in the configuration file (./invoke.yaml, ~/.invoke.yaml or "
                               "-f FILE)"[:400])


def positive_int(value: Any, origin: str) -> int:
    """An integer >= 1, or a one-line error naming where the bad value came from."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise VllmDevError(f"{origin} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise VllmDevError(f"{origin} must be a positive integer, got {value!r}")
    return number


def positive_float(value: Any, origin: str) -> float:
    """A number > 0 (e.g. GiB), or a one-line error naming where the bad value came from."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise VllmDevError(f"{origin} must be a positive number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise VllmDevError(f"{origin} must be a positive number, got {value!r}")
    return number


def _check_cache(values: dict[str, Any], origins: dict[str, str]) -> None:
    """Validate the compiler-cache settings (see :mod:`vllm_dev.caching.compiler_cache`)."""
    from vllm_dev.caching import compiler_cache as cc

    if "cache_remote" in values:
        values["cache_remote"] = cc.validate_remote(str(values["cache_remote"]),
                                                    origin=origins["cache_remote"])
    if "cache_remote_mode" in values:
        values["cache_remote_mode"] = choice(values["cache_remote_mode"], cc.REMOTE_MODES,
                                             origins["cache_remote_mode"])
    if "cache_max_size" in values:
        values["cache_max_size"] = cc.validate_size(str(values["cache_max_size"]),
                                                    origin=origins["cache_max_size"])
    if values.get("cache_remote") and values.get("cache", "ccache") != "ccache":
        raise VllmDevError(
            f"{origins['cache_remote']} needs the ccache compiler cache, not "
            f"{values['cache']!r} (from {origins['cache']}): sccache's CUDA results miss across "
            "checkouts and its server fails to start when the remote is down"
        )


def _check_dist(values: dict[str, Any], origins: dict[str, str]) -> None:
    """A build farm compiles through sccache: its cache replaces ccache's (see dist.py)."""
    if "dist" not in values:
        return
    from vllm_dev.caching.dist import validate_url

    values["dist"] = validate_url(str(values["dist"]), origin=origins["dist"])
    explicit = not origins.get("cache", "config").startswith("config")
    if explicit and values["cache"] != "sccache":
        raise VllmDevError(f"{origins['dist']} compiles through sccache and uses its cache: drop "
                           f"{origins['cache']}={values['cache']} or set it to sccache")
    values["cache"] = "sccache"  # the configured default (ccache) gives way to the farm
    origins["cache"] = origins["dist"]
    if values.get("cache_remote"):
        raise VllmDevError(f"{origins['dist']} uses sccache's cache; {origins['cache_remote']} "
                           "is a ccache remote: drop one of them")


def text(value: Any, origin: str) -> str:
    """A string setting; numbers (YAML reads ``arch: 8.0`` as one) become their text."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise VllmDevError(f"{origin} must be a string, got {value!r}"[:300])


def boolean(value: Any, origin: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case), or a one-line error naming the origin."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise VllmDevError(f"{origin} must be true or false, got {value!r}")


def choice(value: Any, allowed: tuple[str, ...], origin: str) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise VllmDevError(f"{origin} must be one of {', '.join(allowed)}, got {value!r}")
    return text
