"""Ownership of the checkout's ``CMakeUserPresets.json``.

The file may be the user's own. vllm-dev marks what it writes with a ``vendor`` entry and never
overwrites or drops a file it did not write: without ``--merge`` or ``--force`` it stops; with
``--merge`` it adds its presets beside the user's (stopping on a name clash); with ``--force`` it
replaces the file. Both of the latter first keep a timestamped, byte-identical backup under
``<checkout>/.vllm-dev/backups/`` (git ignores that dir, so a backup never shows up as a change).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_dev.errors import VllmDevError
from vllm_dev.presets.render import PRESETS_VERSION, VENDOR_KEY, dumps
from vllm_dev.process.files import write_if_changed
from vllm_dev.state import layout
from vllm_dev.state.records import ensure_state_dir

_PRESET_KINDS = ("configurePresets", "buildPresets", "testPresets", "packagePresets",
                 "workflowPresets")


@dataclass(frozen=True)
class PresetsWrite:
    """What writing the presets did."""

    path: Path
    changed: bool
    backup: Path | None = None
    merged: bool = False


def _names(document: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for kind in _PRESET_KINDS:
        entries = document.get(kind)
        for preset in entries if isinstance(entries, list) else []:
            if isinstance(preset, dict) and isinstance(preset.get("name"), str):
                names.add(preset["name"])
    return names


def _vendor_entry(document: dict[str, Any]) -> dict[str, Any] | None:
    vendor = document.get("vendor")
    if isinstance(vendor, dict) and isinstance(vendor.get(VENDOR_KEY), dict):
        return vendor[VENDOR_KEY]
    return None


def _merge(user: dict[str, Any], ours: dict[str, Any], owned_before: set[str]) -> dict[str, Any]:
    """The user's document with our presets (re)placed beside theirs."""
    merged = dict(user)
    for kind in _PRESET_KINDS:
        kept = [p for p in user.get(kind) or []
                if not (isinstance(p, dict) and p.get("name") in owned_before)]
        if kind in ours:
            kept += ours[kind]
        if kept or kind in user:
            merged[kind] = kept
    version = user.get("version")
    merged["version"] = max(version if isinstance(version, int) else 0, PRESETS_VERSION)
    vendor = dict(user.get("vendor") or {})
    vendor[VENDOR_KEY] = {**ours["vendor"][VENDOR_KEY], "merged": True}
    merged["vendor"] = vendor
    return merged


def _clashes(names: set[str], ours: dict[str, Any], where: Path) -> None:
    clash = sorted(names & _names(ours))
    if clash:
        raise VllmDevError(
            f"{where} already defines preset {clash[0]!r}: rename yours, or pass --force to "
            "replace the file (a backup is kept)"
        )


def backup_path(path: Path) -> Path:
    """A new name in ``<checkout>/.vllm-dev/backups/`` for a backup of ``path``."""
    directory = ensure_state_dir(path.parent / layout.STATE_DIR) / layout.BACKUPS
    directory.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = directory / f"{path.name}.{stamp}"
    n = 1
    while candidate.exists():
        candidate = directory / f"{path.name}.{stamp}-{n}"
        n += 1
    return candidate


def plan_user_presets(
    path: Path, ours: dict[str, Any], *, merge: bool = False, force: bool = False
) -> tuple[str, bool, bool]:
    """The text to write, whether a backup is needed first, and whether it is a merge."""
    if not path.exists():
        return dumps(ours), False, False
    raw = path.read_text(encoding="utf-8", errors="replace")
    try:
        existing = json.loads(raw)
        if not isinstance(existing, dict):
            raise ValueError("not an object")
    except (ValueError, json.JSONDecodeError) as exc:
        if force:
            return dumps(ours), True, False
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(
            exc, json.JSONDecodeError) else ""
        raise VllmDevError(
            f"{path} is not a valid presets file{where}: fix it, or pass --force to replace it "
            "(a backup is kept)"
        ) from None
    bad_shape = _shape_problem(existing)
    if bad_shape:
        if force:
            return dumps(ours), True, False
        raise VllmDevError(
            f"{path}: {bad_shape}: fix it, or pass --force to replace the file (a backup is kept)")
    entry = _vendor_entry(existing)
    if entry is not None:
        if entry.get("merged"):
            owned_list = entry.get("owned", [])
            owned = {n for n in owned_list if isinstance(n, str)} if isinstance(
                owned_list, list) else set()
            user_names = _names(existing) - owned
            _clashes(user_names, ours, path)
            return dumps(_merge(existing, ours, owned)), False, True
        return dumps(ours), False, False
    if force:
        return dumps(ours), True, False
    if merge:
        _clashes(_names(existing), ours, path)
        return dumps(_merge(existing, ours, set())), True, True
    raise VllmDevError(
        f"{path} was not written by vllm-dev: pass --merge to add vllm-dev's presets beside "
        "yours, or --force to replace it (a backup is kept either way)"
    )


def beside_owned(path: Path, ours: dict[str, Any]) -> dict[str, Any]:
    """``ours`` plus every other preset vllm-dev already owns in ``path``, unchanged.

    For presets rendered for a second interpreter (``nox-release``): written through
    :func:`write_user_presets`, they join the developer's presets instead of replacing them, so
    the developer's presets (and their fingerprints) stay byte-identical. A file vllm-dev does
    not own is left to :func:`write_user_presets`' rules (``--merge``/``--force``).
    """
    try:
        existing = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return ours
    entry = _vendor_entry(existing) if isinstance(existing, dict) else None
    if entry is None:
        return ours
    replaced = _names(ours)
    owned = [n for n in entry.get("owned", []) if isinstance(n, str) and n not in replaced]
    combined: dict[str, Any] = dict(ours)  # same key order as a file of our own
    for kind in _PRESET_KINDS:
        kept = [p for p in existing.get(kind) or []
                if isinstance(p, dict) and p.get("name") in owned]
        if kept or kind in ours:
            combined[kind] = kept + list(ours.get(kind, []))
    version = existing.get("version")
    combined["version"] = max(version if isinstance(version, int) else 0, PRESETS_VERSION)
    combined["vendor"] = {VENDOR_KEY: {**ours["vendor"][VENDOR_KEY],
                                       "owned": owned + sorted(replaced)}}
    return combined


def _shape_problem(document: dict[str, Any]) -> str | None:
    """What makes a parsed presets file unsafe to merge into (merging would drop that part)."""
    for kind in _PRESET_KINDS:
        if kind in document and not isinstance(document[kind], list):
            return f"{kind} must be a list"
    if "vendor" in document and not isinstance(document["vendor"], dict):
        return "vendor must be an object"
    return None


def check_project_presets(root: Path, ours: dict[str, Any]) -> None:
    """CMake reads CMakePresets.json too; a name defined in both is an error there."""
    project = root / "CMakePresets.json"
    if not project.is_file():
        return
    try:
        document = json.loads(project.read_text(encoding="utf-8", errors="replace"))
    except ValueError:
        return  # cmake itself will report a broken project presets file, in its words
    if isinstance(document, dict):
        _clashes(_names(document), ours, project)


def write_user_presets(
    path: Path, ours: dict[str, Any], *, merge: bool = False, force: bool = False,
    dry: bool = False,
) -> PresetsWrite:
    """Write (or merge) our presets unless nothing changed; see the module docstring."""
    check_project_presets(path.parent, ours)
    text, needs_backup, merged = plan_user_presets(path, ours, merge=merge, force=force)
    if path.exists() and path.read_text(encoding="utf-8", errors="replace") == text:
        return PresetsWrite(path, changed=False, merged=merged)
    if dry:
        return PresetsWrite(path, changed=True, merged=merged)
    backup = None
    if needs_backup:
        try:
            backup = backup_path(path)
            shutil.copy2(path, backup)
        except (OSError, VllmDevError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise VllmDevError(f"cannot back up {path}: {reason}; nothing was changed") \
                from None
    write_if_changed(path, text)
    return PresetsWrite(path, changed=True, backup=backup, merged=merged)
