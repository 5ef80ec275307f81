"""vllm-dev's own records: what each build dir was configured with, and what setup last did.

These are small JSON files. A corrupt one is set aside (renamed, never deleted) and rebuilt with a
message: a damaged record must never stop a build or take a user's file with it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_dev.errors import VllmDevError
from vllm_dev.process.files import atomic_write_bytes

BUILD_RECORD = "vllm-dev-build.json"
BUILD_MARKER_KIND = "vllm-dev build dir"


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in ``path``; None when absent; a corrupt file is renamed aside."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
        problem = "not a JSON object"
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except OSError as exc:
        raise VllmDevError(f"cannot read {path}: {exc.strerror}") from None
    stamp = time.strftime('%Y%m%d-%H%M%S')
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists() or aside.is_symlink():  # two in one second: keep both copies
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        path.rename(aside)
        print(f"vllm-dev: {path} was corrupt ({problem}); moved to {aside.name}, rebuilding it",
              file=sys.stderr)
    except OSError:
        print(f"vllm-dev: ignoring corrupt {path} ({problem})", file=sys.stderr)
    return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


@dataclass
class BuildRecord:
    """Marker and memory of one build dir. ``fingerprint`` is what configure last ran with."""

    build_dir: Path
    preset: str
    checkout: str
    fingerprint: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.build_dir / BUILD_RECORD

    @classmethod
    def load(cls, build_dir: Path) -> BuildRecord | None:
        data = read_json(build_dir / BUILD_RECORD)
        if data is None or data.get("kind") != BUILD_MARKER_KIND:
            return None
        fingerprint = data.get("fingerprint")
        return cls(
            build_dir=build_dir,
            preset=str(data.get("preset", "")),
            checkout=str(data.get("checkout", "")),
            fingerprint={str(k): str(v) for k, v in fingerprint.items()}
            if isinstance(fingerprint, dict) else {},
        )

    def save(self) -> None:
        write_json(self.path, {
            "kind": BUILD_MARKER_KIND,
            "preset": self.preset,
            "checkout": self.checkout,
            "fingerprint": self.fingerprint,
        })


def is_marked_build_dir(path: Path) -> bool:
    """Whether vllm-dev created ``path`` (the only kind of directory ``clean`` removes)."""
    data = read_json(path / BUILD_RECORD) if (path / BUILD_RECORD).is_file() else None
    return bool(data and data.get("kind") == BUILD_MARKER_KIND)


def ensure_state_dir(state_dir: Path) -> Path:
    """Create the checkout's ``.vllm-dev/``, ignored by git through its own ``.gitignore``."""
    try:
        state_dir.mkdir(exist_ok=True)
        ignore = state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
    except OSError as exc:
        raise VllmDevError(f"cannot create {state_dir}: {exc.strerror}") from None
    return state_dir
