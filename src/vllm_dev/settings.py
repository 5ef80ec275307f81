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

from vllm_dev.checkout import DEVICES
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
    "arch": ("VLLM_DEV_ARCH",),
    "cache": ("VLLM_DEV_CACHE",),
    "presets_dir": ("VLLM_DEV_PRESETS_DIR",),
}


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
    cache: str = "ccache"
    presets_dir: str | None = None
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
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for f in fields(cls):
            if f.name == "origins":
                continue
            flag = flags.get(f.name)
            if flag not in (None, ""):
                values[f.name], origins[f.name] = flag, f"--{f.name.replace('_', '-')}"
                continue
            for var in ENV_VARS.get(f.name, ()):
                if environ.get(var):
                    values[f.name], origins[f.name] = environ[var], var
                    break
            else:
                if config.get(f.name) not in (None, ""):
                    values[f.name] = config[f.name]
                    origins[f.name] = f"config vllm_dev.{f.name}"
        for name in ("jobs", "max_jobs", "nvcc_threads"):
            if name in values:
                values[name] = positive_int(values[name], origins[name])
        if "device" in values:
            values["device"] = choice(values["device"], DEVICES, origins["device"])
        if "cache" in values:
            values["cache"] = choice(values["cache"], CACHES, origins["cache"])
        return cls(**values, origins=tuple(sorted(origins.items())))


def positive_int(value: Any, origin: str) -> int:
    """An integer >= 1, or a one-line error naming where the bad value came from."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise VllmDevError(f"{origin} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise VllmDevError(f"{origin} must be a positive integer, got {value!r}")
    return number


def choice(value: Any, allowed: tuple[str, ...], origin: str) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise VllmDevError(f"{origin} must be one of {', '.join(allowed)}, got {value!r}")
    return text
