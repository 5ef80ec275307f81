"""Remembering what slow subprocesses told us, until the files behind the answer change.

A no-op ``vllm-dev build`` should cost little more than the ``cmake --build`` it wraps. Asking
the target interpreter about itself (a Python start-up, ~70 ms) and ``cmake --version`` (~80 ms)
on every build was most of the difference. Their answers only change when the files behind them
change, so each answer is stored with the identity (mtime, size, inode) of those files:

* ``cmake --version`` / ``nvcc --version`` / nvcc's arch list: the executable itself;
* the interpreter probe: the interpreter, its ``pyvenv.cfg`` and its site-packages directories.
  Installing, removing or upgrading a distribution adds or removes a ``*.dist-info`` directory,
  which changes the site-packages directory's mtime, so a ``uv pip install torch==...`` is seen.

The store is ``<checkout>/.vllm-dev/fact-cache.json`` (state/layout.py), a record of
state/records.py: a damaged file is set aside and rebuilt, one of a newer vllm-dev is not used
and never written; a dry run reads it but never writes it. Its entries stay plain JSON (each
answer's own shape is its reader's business: :meth:`FactCache.memo` decodes it).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from vllm_dev.state import layout, records
from vllm_dev.toolchain.interpreter import InterpreterFacts, probe
from vllm_dev.toolchain.tools import version_of

CACHE_NAME = layout.FACT_CACHE
KIND = "vllm-dev fact cache"
FORMAT = records.Format("fact cache", KIND, 1)
T = TypeVar("T")


def identity(path: Path | str) -> list[int] | None:
    """What changes when a file is replaced or rewritten; None when it does not exist."""
    try:
        st = os.stat(path)  # follows symlinks: a venv's python is a link to the real binary
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _entries(body: dict[str, Any]) -> dict[str, Any]:
    entries = body.get("entries", {})
    if not isinstance(entries, dict):
        raise records.Corrupt("entries", "must be an object")
    return entries


def site_dirs(prefix: str) -> list[str]:
    """The site-packages directories of an environment rooted at ``prefix``."""
    patterns = ("lib/python*/site-packages", "lib64/python*/site-packages",
                "Lib/site-packages")
    found: list[str] = []
    for pattern in patterns:
        found += sorted(glob.glob(os.path.join(glob.escape(prefix), pattern)))
    return found


class FactCache:
    """Answers keyed by a name, valid while the identity of their files is unchanged."""

    def __init__(self, path: Path | None, *, writable: bool = True) -> None:
        self.path = path
        self.writable = writable and path is not None
        self._entries: dict[str, Any] | None = None
        self._dirty = False

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None:
                loaded = records.load(FORMAT, self.path, _entries)
                self._entries = loaded.value or {}
                self.writable = self.writable and loaded.writable
        return self._entries

    def get(self, key: str) -> Any | None:
        """The stored value if every file it depends on is unchanged, else None."""
        entry = self._load().get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
            return None
        for name, stamp in entry["files"].items():
            if identity(name) != stamp:
                return None
        return entry.get("value")

    def put(self, key: str, value: Any, files: Iterable[Path | str]) -> None:
        stamps = {str(f): identity(f) for f in files}
        if any(s is None for s in stamps.values()):
            return  # an answer about a file that is not there is not worth keeping
        self._load()[key] = {"files": stamps, "value": value}
        self._dirty = True
        self.save()

    def memo(self, key: str, files: Iterable[Path | str], compute: Callable[[], T],
             *, encode: Callable[[T], Any] = lambda v: v,
             decode: Callable[[Any], T] = lambda v: v) -> T:
        """``compute()``, or its remembered answer while ``files`` are unchanged."""
        files = list(files)
        stored = self.get(key)
        if stored is not None:
            try:
                return decode(stored)
            except (TypeError, ValueError, KeyError):
                pass  # written by another version of vllm-dev: ask again
        value = compute()
        self.put(key, encode(value), files)
        return value

    def save(self) -> None:
        if not (self.writable and self._dirty and self.path is not None):
            return
        try:
            records.save(FORMAT, self.path, {"entries": self._load()}, guard=False)
            self._dirty = False
        except OSError:
            pass  # a read-only checkout only loses the speed-up


def for_state_dir(state_dir: Path | None, *, dry: bool) -> FactCache:
    """The cache in a checkout's ``.vllm-dev/`` (created, with its ``.gitignore``, on write)."""
    if state_dir is None:
        return FactCache(None, writable=False)
    if not dry and not state_dir.is_dir():
        try:
            records.ensure_state_dir(state_dir)
        except Exception:  # noqa: BLE001 - no cache rather than no build
            return FactCache(None, writable=False)
    return FactCache(state_dir / CACHE_NAME, writable=not dry)


def cached_version(cache: FactCache, path: Path, *, runner: Any,
                   flag: str = "--version") -> tuple[int, ...]:
    """:func:`vllm_dev.toolchain.tools.version_of`, remembered per executable."""
    return cache.memo(f"version {path} {flag}", [path],
                      lambda: version_of(path, runner=runner, flag=flag),
                      encode=list, decode=lambda v: tuple(int(x) for x in v))


def cached_probe(cache: FactCache, interpreter: Any, *, runner: Any,
                 packages: Iterable[str] = ()) -> Any:
    """:func:`~vllm_dev.toolchain.interpreter.probe`, remembered while the environment is the same.
    """
    names = sorted(set(packages))
    key = f"probe {interpreter.path} {json.dumps(names)}"
    stored = cache.get(key)
    if isinstance(stored, dict):
        try:
            return InterpreterFacts(**{**stored, "version": tuple(stored["version"])})
        except (TypeError, KeyError):
            pass
    facts = probe(interpreter, runner=runner, packages=names)
    files: list[Path | str] = [interpreter.path]
    venv_cfg = Path(interpreter.path).parent.parent / "pyvenv.cfg"
    if venv_cfg.is_file():
        files.append(venv_cfg)
    sites = site_dirs(facts.prefix)
    # torch/version.py says which device torch was built for; an in-place edit of it leaves
    # the site-packages directory's mtime alone.
    sites += [v for s in sites if os.path.isfile(v := os.path.join(s, "torch", "version.py"))]
    if sites:  # without them an install would go unnoticed: then do not remember at all
        cache.put(key, asdict(facts), [*files, *sites])
    return facts
