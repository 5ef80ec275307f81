"""Which remembered settings a run uses, and what a run leaves in memory (the store: store.py).

Reading (:func:`usable`): what the store holds for the checkout and preset, less what this run
overrides in a way that excludes it. A flag always beats memory (settings.py's precedence), but
some settings exclude each other (``--dist`` compiles through sccache, a remote cache needs
ccache), so a remembered ``--dist`` would make a given ``--cache ccache`` an error: the
remembered value that conflicts with a given one is set aside for the run, with one line. An
activated virtual environment is the environment's choice of interpreter: it wins over a
remembered ``--python``, with one line when they differ. ``-U NAME`` drops a remembered define.

Writing (:class:`Pending`): the settings whose declaration says ``remember`` and that this run
got as a flag, plus ``-U``'s forgetting, committed only when the command reaches its configure or
build (the pipeline, or setup's install; never ``--dry``, never ``doctor``). A value is written as
resolved (a relative ``--python`` becomes absolute: a later command may run elsewhere). Secrets
are never written: a remote-cache URL with credentials given as a flag is used for the run and
not remembered, and one line says how to keep it (the variable, which vllm-dev reads each run);
a define whose value holds a URL with credentials, the same.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_dev.caching.compiler_cache import REMOTE_ENV, has_credentials, redact
from vllm_dev.config import store
from vllm_dev.config.declarations import SETTINGS, STEPS, setting
from vllm_dev.config.settings import Remembered, Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.presets.render import parse_define

_CREDENTIALS_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]*@")
_PATHS = ("python", "cache_dir")


def validate(preset: str, name: str, value: Any) -> None:
    """A remembered value its setting accepts (store.read sets a file aside otherwise). A name
    that is no setting is another module's record (store.write_entry): not checked here."""
    if name == store.DEFINES:
        parse_define(str(value), f"remembered define of preset {preset}")
        return
    try:
        declared = setting(name)
    except KeyError:
        return
    if not declared.remember:
        raise VllmDevError(f"{name!r} is not a setting vllm-dev remembers")
    declared.convert(value, f"remembered {declared.flag or name}")


def read(state_dir: Path, *, say: Callable[[str], None]) -> store.Memory:
    return store.read(state_dir, say=say, validate=validate)


def shown(name: str, value: Any) -> str:
    """A value as a line may print it (a remote URL's credentials masked)."""
    if name == "cache_remote" and isinstance(value, str):
        return redact(value)
    return str(value)


def spelled(name: str, value: Any) -> str:
    """``--python /x/bin/python``; a define as ``-D X=1``."""
    if name == store.DEFINES:
        return f"-D {value}"
    declared = setting(name)
    return f"{declared.flag or name} {shown(name, value)}"


def usable(memory: store.Memory, preset: str, *, given: Settings, environ: Mapping[str, str],
           undefine: Sequence[str] = (), say: Callable[[str], None]) -> Remembered:
    """What this run may take from memory; ``given`` is the run resolved without memory (it
    says which settings a flag or the environment sets)."""
    values = memory.preset(preset)
    defines = {n: e for n, e in memory.defines(preset).items() if n not in set(undefine)}

    def strong(name: str) -> bool:
        return given.source_of(name).kind in ("flag", "environment")

    def drop(name: str, because: str) -> None:
        entry = values.pop(name, None)
        if entry is not None:
            say(f"not using the remembered {spelled(name, entry.value)} ({entry.given()}): "
                f"{because}")

    # With --dist, the cache's source is the farm's (settings.py): not a --cache of the user's.
    if strong("cache") and not ("dist" in dict(given.sources)
                                and given.origin("cache") == given.origin("dist")):
        cache = f"{given.origin('cache')} {given.cache}"
        if given.cache != "sccache":
            drop("dist", f"{cache} compiles without the build farm")
        if given.cache != "ccache":
            drop("cache_remote", f"a remote cache needs ccache, not {cache}")
    if strong("dist"):
        drop("cache", f"{given.origin('dist')} compiles through sccache")
        drop("cache_remote", f"{given.origin('dist')} uses sccache's cache")
    if strong("cache_remote"):
        drop("dist", f"{given.origin('cache_remote')} is a ccache remote")
        if values.get("cache") and values["cache"].value != "ccache":
            drop("cache", f"{given.origin('cache_remote')} needs ccache")
    python = values.get("python")
    active = environ.get("VIRTUAL_ENV")
    if python is not None and active and not strong("python"):
        venv = Path(os.path.abspath(os.path.expanduser(active)))
        mine = Path(os.path.normpath(str(python.value)))
        if mine not in (venv, venv / "bin" / "python"):
            values.pop("python")
            say(f"the active virtual environment {venv} wins over the remembered --python "
                f"{python.value} ({python.given()}); `vllm-dev settings --forget python` "
                "forgets that one")
    return Remembered(values, defines)


def in_use_line(settings: Settings, command: str = "") -> str | None:
    """The one line that names the remembered values this run uses (None: it uses none); a
    step's command names only those its step reads (``clean`` reads no interpreter)."""
    def read(name: str) -> bool:
        return command not in STEPS or command in setting(name).steps

    remembered = dict(settings.sources)
    parts = [spelled(s.name, getattr(settings, s.name)) for s in SETTINGS
             if not s.repeatable and s.name in remembered and read(s.name)
             and remembered[s.name].kind == "remembered"]
    by_name = dict(settings.define_sources)
    for item in settings.defines if read("defines") else ():
        name = item.partition("=")[0].partition(":")[0].strip()
        if by_name.get(name) and by_name[name].kind == "remembered":
            parts.append(f"-D {item}")
    if not parts:
        return None
    return (f"using remembered settings of preset {settings.preset}: {', '.join(parts)} "
            "(`vllm-dev settings` shows them; --no-remember ignores them)")


@dataclass(frozen=True)
class Pending:
    """What one run leaves in memory, written by :meth:`commit` when the command reaches its
    configure or build."""

    state_dir: Path
    preset: str
    command: str
    settings: Settings
    undefine: tuple[str, ...] = ()

    def values(self, say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, str]]:
        """The settings and defines to remember (flags only), secrets left out with a line."""
        found: dict[str, Any] = {}
        for declared in SETTINGS:
            if not declared.remember or declared.repeatable:
                continue
            if self.settings.source_of(declared.name).kind != "flag":
                continue
            if declared.name == "cache" and self.settings.source_of("dist").kind == "flag" \
                    and self.settings.origin("cache") == self.settings.origin("dist"):
                continue  # the farm's sccache, not a --cache of the user's
            value = getattr(self.settings, declared.name)
            if declared.name in _PATHS:
                value = os.path.abspath(os.path.expanduser(str(value)))
            if declared.name == "cache_remote" and _has_credentials(str(value)):
                say(f"--cache-remote holds credentials: used for this run, not remembered (a "
                    f"secret is never written to a file); to keep it, export {REMOTE_ENV}"
                    "=<url>")
                continue
            found[declared.name] = value
        defines: dict[str, str] = {}
        by_name = dict(self.settings.define_sources)
        for item in self.settings.defines:
            name = item.partition("=")[0].partition(":")[0].strip()
            if by_name.get(name) is None or by_name[name].kind != "flag":
                continue
            if _CREDENTIALS_RE.search(item):
                say(f"-D {name}: its value holds credentials: used for this run, not "
                    "remembered (give it through VLLM_DEV_DEFINES to keep it)")
                continue
            defines[name] = item
        return found, defines

    def commit(self, say: Callable[[str], None]) -> bool:
        """Write what this run remembers; one line names what is new. Returns whether the
        store changed."""
        values, defines = self.values(say)
        if not values and not defines and not self.undefine:
            return False
        news: list[str] = []
        forgotten: list[str] = []

        def change(memory: store.Memory) -> bool:
            news.clear()
            forgotten.clear()
            section = memory.presets.setdefault(self.preset, {})
            kept = section.setdefault(store.DEFINES, {})
            for name, value in values.items():
                old = section.get(name)
                if old is None or old.value != value:
                    section[name] = store.Entry(value, self.command, store.now())
                    news.append(spelled(name, value))
                for other in _excluded_by(name, value, section):
                    if section.pop(other, None) is not None:
                        forgotten.append(setting(other).flag or other)
            for name, item in defines.items():
                old = kept.get(name)
                if old is None or old.value != item:
                    kept[name] = store.Entry(item, self.command, store.now())
                    news.append(f"-D {item}")
            for name in self.undefine:
                if kept.pop(name, None) is not None:
                    forgotten.append(f"-D {name}")
            return bool(news or forgotten)

        changed = store.update(self.state_dir, change, say=say, validate=validate)
        if changed and news:
            say(f"remembering for preset {self.preset}: {', '.join(news)} (later commands use "
                "them; `vllm-dev settings --forget NAME` or -U NAME forgets one)")
        if changed and forgotten:
            say(f"forgot for preset {self.preset}: {', '.join(forgotten)}")
        return changed


def _excluded_by(name: str, value: Any, section: Mapping[str, Any]) -> tuple[str, ...]:
    """Remembered settings a newly remembered value contradicts (the next plain command must
    not meet both): a cache other than sccache ends the farm, the farm ends ccache's remote and
    a remote ends the farm and any cache but ccache."""
    if name == "cache":
        return (*(("dist",) if value != "sccache" else ()),
                *(("cache_remote",) if value != "ccache" else ()))
    if name == "dist":
        return ("cache", "cache_remote")
    if name == "cache_remote":
        cache = section.get("cache")
        return ("dist", *(("cache",) if cache is not None and cache.value != "ccache" else ()))
    return ()


def _has_credentials(url: str) -> bool:
    return has_credentials(url)
