"""One way to read and write vllm-dev's records: versioned JSON, written atomically.

A record is a JSON object ``{"kind": ..., "version": N, ...body}`` (the settings store spells its
version ``format`` and has no kind: it was written that way first). :class:`Format` describes one
kind of record; :func:`load` and :func:`save` are the only readers and writers of the files that
state/layout.py names as records, and they keep three promises:

* **every record an earlier vllm-dev wrote still reads.** A file without a version is version 1
  (what every record was before records carried one), a file without a kind goes through the
  format's ``legacy`` reader (the deps cache and the setup record had neither), and ``upgrades``
  turn version N into N+1 in memory. So an upgrade costs no fresh configure, no reinstall and no
  lost install check (tests/test_state_records.py reads records in the literal format of the
  vllm-dev before this module);
* **a record of a newer version is never used, renamed, overwritten or rebuilt.** One line says
  so, once per file and run; a format marked :data:`STOP` (the build dir's build and install
  records: without them a build would configure and install afresh) stops the command in that
  line, the others (caches, the history) run without the record and never write it;
* **a damaged record costs one line, never a build or the file.** Bad JSON, a wrong type in a
  hand edit: the file is renamed aside byte for byte (``<name>.corrupt-<time>``) and the record
  starts afresh. A file of another kind in our place is ignored, as before.

The body goes to and from dataclasses through :func:`to_json` and :func:`from_json`, which read
the fields' type hints (lists, dicts, optionals, ``Path``, nested dataclasses) and name the key a
wrong value sits at. Large records (the history, the deps and fact caches: on the real vLLM tree
hundreds of thousands of entries) keep their bodies as plain JSON instead: a typed walk of every
entry would cost more than the build it speeds up.

Why a small helper of our own rather than cattrs (the kept library for this): measured on this
machine (Python 3.11, 2026-12-03), ``import cattrs`` with its ``preconf.json`` converter takes
90-100 ms (attrs, typing_extensions and its converters), a fifth of a 0.45 s no-op
``vllm-dev build``, which reads four of these records; this module imports nothing beyond the
standard library's ``json``, ``dataclasses`` and ``typing``, which vllm-dev loads anyway. And
cattrs would still leave the envelope (kind, version, legacy files, the newer-record rule, setting
a damaged file aside) to us: that part is most of this module.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from vllm_dev.errors import VllmDevError
from vllm_dev.process.files import atomic_write_bytes
from vllm_dev.state import layout

T = TypeVar("T")
#: What a format does with a record of a newer version: one line, then...
KEEP = "keep"  # ...run without it, never writing it
STOP = "stop"  # ...stop the command (the line is its error)
_said: set[str] = set()  # (path, what) already said in this process: one line per file and run


class Corrupt(Exception):
    """A record that is not what its format writes; ``key`` names where (``(file)``: all of it)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class NewerRecord(VllmDevError):
    """A record of a newer version than this vllm-dev knows, in a :data:`STOP` format."""


class Format:
    """One kind of record: what it is called, its version, and how older ones read.

    A plain class, not a dataclass: each record module declares one at import, and a dataclass
    costs about a millisecond to create, on every start of the console script."""

    __slots__ = ("name", "kind", "version", "version_key", "unversioned", "legacy", "upgrades",
                 "if_newer", "then", "otherwise", "compact", "sort_keys")

    def __init__(
        self, name: str, kind: str | None, version: int, *, version_key: str = "version",
        unversioned: int | None = 1,
        legacy: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        upgrades: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
        if_newer: str = KEEP, then: str = "rebuilding it", otherwise: str = "",
        compact: bool = False, sort_keys: bool = True,
    ) -> None:
        self.name = name  # in messages: "install record"
        self.kind = kind  # the "kind" every file of it carries (None: none, settings.json)
        self.version = version  # the version this vllm-dev writes
        self.version_key = version_key
        #: The version of a file without the version key (None: such a file is corrupt).
        self.unversioned = unversioned
        #: A file without the kind key, as vllm-dev wrote it before records carried one: its
        #: body in this version's shape (None: such a file is another program's, ignored).
        self.legacy = legacy
        #: ``upgrades[v]`` turns the body of version ``v`` into version ``v + 1``.
        self.upgrades = dict(upgrades or {})
        self.if_newer = if_newer
        #: What follows a damaged record's set-aside, in its line.
        self.then = then
        #: What else a :data:`STOP` format's line offers beside upgrading vllm-dev.
        self.otherwise = otherwise
        #: Indented with sorted keys (small records, diff-friendly), or compact (large ones).
        self.compact = compact
        self.sort_keys = sort_keys

    def __repr__(self) -> str:
        return f"Format({self.name!r}, {self.kind!r}, {self.version})"


class Loaded(Generic[T]):
    """A record as read: ``value`` (None: none there, set aside, or not usable) and whether
    it may be written (False for a newer or unreadable file: it is kept as it is), and the
    version of the file as found (None: no usable file)."""

    __slots__ = ("value", "writable", "version")

    def __init__(self, value: T | None, writable: bool = True, version: int | None = None
                 ) -> None:
        self.value = value
        self.writable = writable
        self.version = version


def say_once(path: Path, what: str, line: str, say: Callable[[str], None] | None) -> None:
    key = f"{path}\0{what}"
    if key in _said:
        return
    _said.add(key)
    if say is not None:
        say(line)
    else:
        print(f"vllm-dev: {line}", file=sys.stderr)


def load(fmt: Format, path: Path, decode: Callable[[dict[str, Any]], T], *,
         say: Callable[[str], None] | None = None) -> Loaded[T]:
    """The record at ``path``, its body decoded by ``decode`` (which raises :class:`Corrupt`,
    TypeError, ValueError or KeyError for a body it cannot take). See the module docstring for
    what an absent, older, newer, foreign or damaged file gives."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return Loaded(None)
    except OSError as exc:
        line = f"cannot read {path} ({exc.strerror}): {fmt.name} not used"
        if fmt.if_newer == STOP:
            raise VllmDevError(line) from None
        say_once(path, "unreadable", line, say)
        return Loaded(None, writable=False)
    try:
        data = _parse(raw)
        found = _version(fmt, data)
        if found is None:
            return Loaded(None)  # another program's file in our place: as if absent
        version, body = found
        if version > fmt.version:
            return _newer(fmt, path, version, say)
        while version < fmt.version:
            upgrade = fmt.upgrades.get(version)
            if upgrade is None:
                raise Corrupt(fmt.version_key, f"version {version} is not one vllm-dev wrote")
            body = upgrade(body)
            version += 1
        return Loaded(decode(body), version=found[0])
    except Corrupt as bad:
        return Loaded(None, writable=set_aside(fmt, path, bad.key, bad.problem, say),
                      version=None)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Loaded(None, writable=set_aside(fmt, path, "(file)", problem[:200], say))


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Corrupt("(file)", "not UTF-8 text") from None
    except ValueError as exc:
        raise Corrupt("(file)", f"not JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise Corrupt("(file)", "not a JSON object")
    return data


def _version(fmt: Format, data: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """(version, body) of a parsed file; None for a file of another kind."""
    if fmt.kind is not None and "kind" not in data and fmt.legacy is not None:
        return fmt.version, fmt.legacy(data)
    if fmt.kind is not None and data.get("kind") != fmt.kind:
        return None
    version = data.get(fmt.version_key, fmt.unversioned)
    if version is None or not isinstance(version, int) or isinstance(version, bool):
        raise Corrupt(fmt.version_key, f"must be a number, got {version!r}"[:120])
    body = {k: v for k, v in data.items() if k not in ("kind", fmt.version_key)}
    return version, body


def _newer(fmt: Format, path: Path, version: int, say: Callable[[str], None] | None
           ) -> Loaded[Any]:
    line = f"{path} is format {version}, newer than this vllm-dev knows ({fmt.version}): "
    if fmt.if_newer == STOP:
        raise NewerRecord(line + "it was written by a newer vllm-dev and is left as it is: "
                          "upgrade vllm-dev" + (f", {fmt.otherwise}" if fmt.otherwise else ""))
    say_once(path, "newer", line + f"{fmt.name} not used and the file left as it is (upgrade "
             "vllm-dev, or remove the file)", say)
    return Loaded(None, writable=False, version=version)


def set_aside(fmt: Format, path: Path, key: str, problem: str,
              say: Callable[[str], None] | None) -> bool:
    """Rename a damaged record to ``<name>.corrupt-<time>`` (two in one second: both kept) and
    say so; whether the place is free again (False: the rename failed, the file stays)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(layout.CORRUPT.format(name=path.name, stamp=stamp))
    n = 1
    while aside.exists() or aside.is_symlink():
        aside = path.with_name(layout.CORRUPT.format(name=path.name, stamp=f"{stamp}-{n}"))
        n += 1
    what = problem if key == "(file)" else f"{key}: {problem}"
    try:
        path.rename(aside)
    except OSError:
        say_once(path, "corrupt", f"{path} was corrupt ({what}); left in place, {fmt.then}",
                 say)
        return False
    _said.add(f"{path}\0corrupt")
    line = f"{path} was corrupt ({what}); moved to {aside.name}, {fmt.then}"
    if say is not None:
        say(line)
    else:
        print(f"vllm-dev: {line}", file=sys.stderr)
    return True


def save(fmt: Format, path: Path, body: Mapping[str, Any], *, guard: bool = True) -> bool:
    """Write ``body`` as this format's current version, atomically (the directory is created).
    ``guard``: first read what is there: a file of a newer version is kept (said in one line),
    and a file that already holds these bytes is left alone (no write, no fsync: a no-op build
    rewrites nothing). A caller that loaded the record and kept :attr:`Loaded.writable` passes
    False. Returns whether the file now holds ``body``."""
    head: dict[str, Any] = {} if fmt.kind is None else {"kind": fmt.kind}
    head[fmt.version_key] = fmt.version
    data = {**head, **body}
    if fmt.compact:
        text = json.dumps(data, separators=(",", ":"), sort_keys=fmt.sort_keys)
    else:
        text = json.dumps(data, indent=2, sort_keys=fmt.sort_keys) + "\n"
    new = text.encode()
    if guard:
        try:
            old = path.read_bytes()
        except OSError:
            old = None
        if old == new:
            return True
        if old is not None and _is_newer(fmt, path, old):
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, new)
    return True


def _is_newer(fmt: Format, path: Path, raw: bytes) -> bool:
    try:
        found = _version(fmt, _parse(raw))
    except (Corrupt, TypeError, ValueError, KeyError, AttributeError):
        return False  # nothing worth keeping: written over, as before
    if found is None or found[0] <= fmt.version:
        return False
    _newer(fmt, path, found[0], None)
    return True


def holds(fmt: Format, path: Path) -> bool:
    """Whether ``path`` is a record of this kind, whatever its version (a damaged one is set
    aside, as by :func:`load`)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return False
    try:
        data = _parse(raw)
    except Corrupt as bad:
        set_aside(fmt, path, bad.key, bad.problem, None)
        return False
    return fmt.kind is None or data.get("kind") == fmt.kind


def ensure_state_dir(state_dir: Path) -> Path:
    """Create the checkout's ``.vllm-dev/``, ignored by git through its own ``.gitignore``."""
    try:
        state_dir.mkdir(exist_ok=True)
        ignore = state_dir / layout.GITIGNORE
        if not ignore.exists():
            ignore.write_text("*\n")
    except OSError as exc:
        raise VllmDevError(f"cannot create {state_dir}: {exc.strerror}") from None
    return state_dir


# --- dataclasses to and from JSON ----------------------------------------------------------------

#: ``dataclasses.field(metadata=TRANSIENT)``: a field that is not part of the record (the build
#: dir it was read from...): :func:`from_json` takes it as a keyword.
_TRANSIENT_KEY = "vllm_dev.state"
TRANSIENT = {_TRANSIENT_KEY: "transient"}


def to_json(value: Any) -> Any:
    """A dataclass (nested, in lists and dicts), Path or tuple as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.metadata.get(_TRANSIENT_KEY) is None}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(cls: type[T], data: Any, key: str = "", **transient: Any) -> T:
    """An instance of dataclass ``cls`` from ``data``, each value checked against its field's
    type (:class:`Corrupt` names the first that is wrong, e.g. ``components._C.files[0].path``).
    Keys the class does not know are ignored; a missing key takes the field's default;
    ``transient`` gives the fields that are not part of the record."""
    try:
        return _object(cls, data, transient)  # type: ignore[no-any-return]
    except Corrupt as bad:
        where = (key + bad.key) if key else bad.key.removeprefix(".")
        raise Corrupt(where or "(file)", bad.problem) from None


# A decoder per type, made once from its hints: the install record is read a few times per
# build, and re-reading ``typing``'s view of each field every time cost more than the JSON.
_Decoder = Callable[[Any], Any]
_DECODERS: dict[Any, _Decoder] = {}
_FIELDS: dict[type, list[tuple[str, _Decoder, bool]]] = {}


def _fields(cls: type) -> list[tuple[str, _Decoder, bool]]:
    """(name, decoder, required) of each field of dataclass ``cls``."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _FIELDS[cls] = [
            (f.name, _decoder(hints[f.name]),
             f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls)]
    return found


def _object(cls: type, data: Any, transient: Mapping[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise Corrupt("", f"must be an object, got {_shown(data)}")
    values = dict(transient)
    for name, decode, required in _fields(cls):
        if name in transient:
            continue
        if name in data:
            try:
                values[name] = decode(data[name])
            except Corrupt as bad:
                raise _at(f".{name}", bad) from None
        elif required:
            raise Corrupt(f".{name}", "missing")
    return cls(**values)


def _at(where: str, bad: Corrupt) -> Corrupt:
    return Corrupt(where + bad.key, bad.problem)


def _decoder(tp: Any) -> _Decoder:
    found = _DECODERS.get(tp)
    if found is None:
        found = _DECODERS[tp] = _make(tp)
    return found


def _make(tp: Any) -> _Decoder:  # noqa: C901 - one case per kind of type, flat
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return lambda data: data
    if origin in (typing.Union, types.UnionType):
        may_be_none = type(None) in args
        options = [_decoder(a) for a in args if a is not type(None)]

        def union(data: Any) -> Any:
            if data is None and may_be_none:
                return None
            problems = []
            for option in options:
                try:
                    return option(data)
                except Corrupt as bad:
                    problems.append(bad.problem)
            raise Corrupt("", " or ".join(problems))
        return union
    if origin in (list, tuple):
        item = _decoder(args[0] if args else Any)
        plain = args[0] if args and args[0] in (int, str) else None

        def sequence(data: Any) -> Any:
            if not isinstance(data, list):
                raise Corrupt("", f"must be a list, got {_shown(data)}")
            if plain is not None and all(type(v) is plain for v in data):
                items = list(data)  # the common case, at C speed
            else:
                items = []
                for i, value in enumerate(data):
                    try:
                        items.append(item(value))
                    except Corrupt as bad:
                        raise _at(f"[{i}]", bad) from None
            return items if origin is list else tuple(items)
        return sequence
    if origin is dict:
        value_of = _decoder(args[1] if len(args) > 1 else Any)

        def mapping(data: Any) -> Any:
            if not isinstance(data, dict):
                raise Corrupt("", f"must be an object, got {_shown(data)}")
            out = {}
            for k, value in data.items():
                try:
                    out[str(k)] = value_of(value)
                except Corrupt as bad:
                    raise _at(f".{k}", bad) from None
            return out
        return mapping
    if dataclasses.is_dataclass(tp):
        return lambda data: _object(tp, data, {})  # type: ignore[arg-type]
    if tp is Path:
        return lambda data: Path(_plain(str, data))
    if tp is float:
        return lambda data: float(_plain((int, float), data))
    return lambda data: _plain(tp, data)


def _plain(tp: Any, data: Any) -> Any:
    if (isinstance(data, bool) and tp is not bool) or not isinstance(data, tp):
        raise Corrupt("", f"must be {_name(tp)}, got {_shown(data)}")
    return data


def _name(tp: Any) -> str:
    if isinstance(tp, tuple):
        return "a number"
    return {str: "a string", int: "a whole number", bool: "true or false"}.get(tp, str(tp))


def _shown(data: Any) -> str:
    return repr(data)[:60]
