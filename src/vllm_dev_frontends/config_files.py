"""The ``vllm_dev`` configuration as both doors read it: Invoke's files, each kept apart.

Invoke merges its configuration levels into one mapping; vllm-dev needs them apart, because they
rank differently around the remembered settings (config/settings.py): a file given with ``-f``
and the ``INVOKE_VLLM_DEV_*`` variables are this run's and rank with the environment, above what
vllm-dev remembers; the files found by name (``/etc/invoke.yaml``, ``~/.invoke.yaml``, the
working directory's ``invoke.yaml``) are the standing configuration, below it. Invoke's
:class:`~invoke.config.Config` keeps each level's data and the file it came from (``_project``,
``_project_path``, ...), which is read here: Invoke offers no public accessor for one level.

The checkout root's ``invoke.yaml`` is read too (Invoke looks only in the working directory, so
a command run from ``csrc/`` missed the checkout's file): it ranks just below the working
directory's, which is the more specific one. Both the Invoke tasks and the Nox sessions read
configuration through :func:`levels` and :func:`at_checkout`, so the sessions see the same files
and the same defines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_dev.config.settings import ConfigFile
from vllm_dev.errors import VllmDevError

SECTION = "vllm_dev"


def _section(data: Any) -> dict[str, Any]:
    """The ``vllm_dev`` mapping of one level's data (Invoke's DataProxy has items() only)."""
    section = data.get(SECTION) if hasattr(data, "get") else None
    if section is None:
        return {}
    if not callable(getattr(section, "items", None)):
        raise VllmDevError(f"the {SECTION}: key of the configuration must map setting names to "
                           f"values, got {section!r}"[:200])
    return dict(section.items())


def _level(config: Any, name: str) -> tuple[dict[str, Any], str | None]:
    data = getattr(config, f"_{name}", None) or {}
    found = getattr(config, f"_{name}_found", None)
    path = getattr(config, f"_{name}_path", None) if found else None
    return _section(data), str(path) if path else None


@dataclass(frozen=True)
class Levels:
    """One run's configuration sources, by Invoke level."""

    standing: tuple[ConfigFile, ...] = ()  # /etc/invoke.yaml, ~/.invoke.yaml
    project: ConfigFile | None = None  # the working directory's invoke.yaml
    #: set by code (a test's MockContext): ranks as configuration
    overrides: ConfigFile | None = None
    this_run: tuple[ConfigFile, ...] = ()  # INVOKE_VLLM_DEV_*, then -f FILE

    def files(self, root: Path | None = None) -> list[ConfigFile]:
        """Weakest first, with the checkout root's file just below the working directory's
        (unless it is the same file)."""
        extra = at_checkout(root) if root is not None else None
        if extra is not None and self.project is not None and _same(extra, self.project):
            extra = None
        return [f for f in (*self.standing, extra, self.project, self.overrides, *self.this_run)
                if f is not None]


def levels(config: Any) -> Levels:
    """The configuration sources of an Invoke ``Config`` (see :class:`Levels`)."""
    standing = []
    for name in ("system", "user"):
        values, path = _level(config, name)
        if values:
            standing.append(ConfigFile(values, _where(path, name), path=path))
    project, path = _level(config, "project")
    overrides, _ = _level(config, "overrides")
    env, _ = _level(config, "env")
    runtime, runtime_path = _level(config, "runtime")
    this_run = [ConfigFile(env, "INVOKE_VLLM_DEV_* variables", environment=True)] if env else []
    if runtime:
        this_run.append(ConfigFile(runtime, f"-f {runtime_path}" if runtime_path else
                                   "the -f file", environment=True, path=runtime_path))
    return Levels(tuple(standing),
                  ConfigFile(project, _where(path, "project"), path=path) if project else None,
                  ConfigFile(overrides) if overrides else None, tuple(this_run))


def _where(path: str | None, level: str) -> str:
    return f"{Path(path).name} at {path}" if path else f"the {level} configuration"


def at_checkout(root: Path) -> ConfigFile | None:
    """``<checkout>/invoke.yaml`` (or ``.yml``, ``.json``), read by Invoke's own loader; None
    without one, or without Invoke (nox's own interpreter may lack it)."""
    try:
        from invoke import Config
    except ImportError:
        return None
    config = Config(project_location=root, lazy=True)
    # Invoke's .py config files would run code found in a checkout: only data files here.
    config._set(_file_suffixes=("yaml", "yml", "json"))
    try:
        config.load_project(merge=False)
    except Exception as exc:  # any file: bad YAML, a list, `vllm_dev: 5`...
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise VllmDevError(f"cannot read the configuration at {root}: {detail}") from None
    values, path = _level(config, "project")
    if not values or path is None:
        return None
    return ConfigFile(values, _where(path, "project"), path=path)


def _same(a: ConfigFile, b: ConfigFile) -> bool:
    try:
        return bool(a.path and b.path and os.path.samefile(a.path, b.path))
    except OSError:
        return a.path == b.path
