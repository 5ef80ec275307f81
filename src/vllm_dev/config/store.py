"""What vllm-dev remembers for a checkout: one small versioned file, ``.vllm-dev/settings.json``.

CMake remembers every ``-D`` in its cache; vllm-dev remembers at least as much. A setting given as
a flag to a command that reached its configure or build (``remember=True`` in its declaration) is
kept here for the checkout and preset, with the command that gave it and when, and later commands
use it when no flag or environment variable says otherwise (precedence: config/settings.py).

The file::

    {"format": 1,
     "checkout": {"<name>": {"value": ..., "command": "test", "at": "2026-12-03T14:02:11"}},
     "presets": {"release": {
         "python": {"value": "/home/me/vllm/.venv/bin/python", "command": "build", "at": "..."},
         "defines": {"VLLM_X": {"value": "VLLM_X=1", "command": "prime", "at": "..."}}}}}

- ``presets.<preset>`` holds the settings of one preset; ``defines`` is kept per name, so that a
  later ``-D Y=2`` adds Y and keeps X (``-U X`` forgets X).
- ``checkout`` is a section for records that belong to the checkout as a whole rather than to a
  preset (e.g. what a test task last selected): :func:`read_entry` and :func:`write_entry` read
  and write one named entry of any section, for any module.

Safety: every read and write holds a lock (``settings.json.lock``, filelock: an ``flock`` the
kernel drops with its holder). The file is a record of state/records.py: a write replaces it
atomically; a file that is not what this module writes (bad JSON, a hand edit with a wrong type, a
value its setting refuses) costs one line naming the file and the key; the file is kept aside
(renamed ``settings.json.corrupt-<time>``, never overwritten) and nothing is remembered. A file of
a newer format than this vllm-dev knows is left alone: not used and never written, with one line
saying so.
Secrets are never written here: the caller leaves credentialed values out (see settings.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_dev.errors import VllmDevError
from vllm_dev.state import layout, records

FILE_NAME = layout.SETTINGS
FORMAT = 1
# Its version is spelled "format", and it has no kind: it was first written so.
RECORD = records.Format("remembered settings", None, FORMAT, version_key="format",
                        unversioned=None, then="no remembered settings used", sort_keys=False)
CHECKOUT = "checkout"  # the section of checkout-wide records
DEFINES = "defines"  # the per-name section of a preset
LOCK_TIMEOUT_S = 30.0
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


@dataclass(frozen=True)
class Entry:
    """One remembered value and where it came from."""

    value: Any
    command: str
    at: str  # local time, ISO 8601 without zone (_TIME_FORMAT)

    def given(self) -> str:
        """``given to build, 2026-12-03 14:02``: how ``settings`` and messages name it."""
        return f"given to {self.command}, {self.at.replace('T', ' ')[:16]}"

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "command": self.command, "at": self.at}


@dataclass
class Memory:
    """The whole file, as read. ``presets`` maps preset -> setting -> Entry, except ``defines``,
    which maps define name -> Entry."""

    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout: dict[str, Entry] = field(default_factory=dict)
    #: False for a file of a newer format: it is kept as it is, never written.
    writable: bool = True

    def preset(self, name: str) -> dict[str, Entry]:
        """The settings remembered for ``name`` (without defines)."""
        return {k: v for k, v in self.presets.get(name, {}).items() if k != DEFINES}

    def defines(self, name: str) -> dict[str, Entry]:
        """The defines remembered for ``name``, by define name."""
        return dict(self.presets.get(name, {}).get(DEFINES, {}))

    def to_json(self) -> dict[str, Any]:
        presets: dict[str, Any] = {}
        for preset, values in sorted(self.presets.items()):
            section: dict[str, Any] = {}
            for key, entry in sorted(values.items()):
                if key == DEFINES:
                    if entry:
                        section[key] = {n: e.to_json() for n, e in sorted(entry.items())}
                else:
                    section[key] = entry.to_json()
            if section:
                presets[preset] = section
        data: dict[str, Any] = {"format": FORMAT, "presets": presets}
        if self.checkout:
            data[CHECKOUT] = {k: e.to_json() for k, e in sorted(self.checkout.items())}
        return data


def now() -> str:
    return time.strftime(_TIME_FORMAT)


def store_path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


#: The file is not what :meth:`Memory.to_json` writes; ``key`` names where.
_Corrupt = records.Corrupt


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """The store's lock (created with the state dir when missing: a write follows)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(state_dir / layout.SETTINGS_LOCK))
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise VllmDevError(f"{store_path(state_dir)} is locked by another vllm-dev for over "
                           f"{LOCK_TIMEOUT_S:.0f} s: try again, or pass --no-remember") from None
    try:
        yield
    finally:
        lock.release()


Validate = Callable[[str, str, Any], None]


def read(state_dir: Path, *, say: Callable[[str], None],
         validate: Validate | None = None) -> Memory:
    """The memory of the checkout whose state dir is ``state_dir`` (empty when there is none).

    ``validate(preset, name, value)`` raises VllmDevError for a value its setting refuses (a
    hand edit): the file is then set aside like a corrupt one."""
    path = store_path(state_dir)
    if not path.is_file():
        return Memory()
    with locked(state_dir):
        return _read_locked(path, say=say, validate=validate)


def _read_locked(path: Path, *, say: Callable[[str], None],
                 validate: Validate | None) -> Memory:
    loaded = records.load(RECORD, path, lambda body: _parse(body, validate), say=say)
    return loaded.value if loaded.value is not None else Memory(writable=loaded.writable)


def _parse(data: dict[str, Any], validate: Validate | None) -> Memory:
    """The file's sections (its ``format`` already checked by state/records.py)."""
    unknown = set(data) - {"presets", CHECKOUT}
    if unknown:
        raise _Corrupt(sorted(unknown)[0], "not a section of this file")
    memory = Memory()
    presets = data.get("presets", {})
    if not isinstance(presets, dict):
        raise _Corrupt("presets", "must be an object")
    for preset, values in presets.items():
        if not isinstance(values, dict):
            raise _Corrupt(f"presets.{preset}", "must be an object")
        section: dict[str, Any] = {}
        for name, raw in values.items():
            key = f"presets.{preset}.{name}"
            if name == DEFINES:
                if not isinstance(raw, dict):
                    raise _Corrupt(key, "must be an object of NAME: entry")
                section[DEFINES] = {str(n): _entry(f"{key}.{n}", e) for n, e in raw.items()}
                for n, entry in section[DEFINES].items():
                    _check(validate, preset, DEFINES, entry.value, f"{key}.{n}")
                    if not isinstance(entry.value, str) or entry.value.partition("=")[0] \
                            .partition(":")[0].strip() != n:
                        raise _Corrupt(f"{key}.{n}", f"value {entry.value!r} is not {n}=VALUE"
                                       [:160])
            else:
                section[name] = _entry(key, raw)
                _check(validate, preset, name, section[name].value, key)
        memory.presets[str(preset)] = section
    records_ = data.get(CHECKOUT, {})
    if not isinstance(records_, dict):
        raise _Corrupt(CHECKOUT, "must be an object")
    memory.checkout = {str(k): _entry(f"{CHECKOUT}.{k}", v) for k, v in records_.items()}
    return memory


def _check(validate: Validate | None, preset: str, name: str, value: Any, key: str) -> None:
    if validate is None:
        return
    try:
        validate(preset, name, value)
    except VllmDevError as exc:
        raise _Corrupt(key, str(exc)[:200]) from None


def _entry(key: str, raw: Any) -> Entry:
    if not isinstance(raw, dict) or "value" not in raw:
        raise _Corrupt(key, "must be an object with value, command and at")
    command, at = raw.get("command", "?"), raw.get("at", "")
    if not isinstance(command, str) or not isinstance(at, str):
        raise _Corrupt(key, "command and at must be strings")
    return Entry(raw["value"], command, at)


def update(state_dir: Path, change: Callable[[Memory], bool], *, say: Callable[[str], None],
           validate: Validate | None = None) -> bool:
    """Read, ``change`` (True when it changed something) and write back, under the lock: two
    commands that finish at once both keep what they remembered. Nothing is written when nothing
    changed, or when the file is of a newer format (said once, by the read). Returns whether the
    file was written."""
    records.ensure_state_dir(state_dir)
    with locked(state_dir):
        memory = _read_locked(store_path(state_dir), say=say, validate=validate)
        if not memory.writable or not change(memory):
            return False
        body = memory.to_json()
        del body["format"]
        return records.save(RECORD, store_path(state_dir), body, guard=False)


# --- one named entry, for any module (e.g. a checkout-wide record) ------------------------------


def read_entry(state_dir: Path, name: str, *, section: str = CHECKOUT,
               say: Callable[[str], None]) -> Entry | None:
    """One entry: of the checkout-wide section (default), or of preset ``section`` when it is
    ``presets.<preset>`` (a name there must not be a setting's: those are remember.py's). None
    when nothing is remembered under ``name``."""
    memory = read(state_dir, say=say)
    return _section(memory, section).get(name)


def write_entry(state_dir: Path, name: str, value: Any, *, command: str,
                section: str = CHECKOUT, say: Callable[[str], None]) -> bool:
    """Remember ``value`` (JSON-serialisable, no secret) under ``name``; ``None`` forgets it.
    Returns whether the file changed."""

    def change(memory: Memory) -> bool:
        entries = _section(memory, section, create=True)
        old = entries.get(name)
        if value is None:
            return entries.pop(name, None) is not None
        if old is not None and old.value == value:
            return False
        entries[name] = Entry(value, command, now())
        return True

    return update(state_dir, change, say=say)


def _section(memory: Memory, section: str, *, create: bool = False) -> dict[str, Any]:
    if section == CHECKOUT:
        return memory.checkout
    preset = section.removeprefix("presets.")
    if section == preset or not preset:
        raise ValueError(f"not a section: {section!r} (checkout or presets.<preset>)")
    if create:
        return memory.presets.setdefault(preset, {})
    return memory.presets.get(preset, {})
