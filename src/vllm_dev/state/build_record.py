"""The build dir's own record: vllm-dev made this dir, for which preset, and what configure last
ran with (``vllm-dev-build.json``, state/layout.py).

It is the mark ``clean`` trusts (it removes only directories that carry it) and the memory
``prime`` compares with the plan to decide whether to configure. A record of a newer vllm-dev
stops the build in one line (state/records.py): configuring over it would throw away a tree the
newer vllm-dev set up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.state import layout, records

BUILD_MARKER_KIND = "vllm-dev build dir"
FORMAT = records.Format(
    "build record", BUILD_MARKER_KIND, 1, if_newer=records.STOP,
    otherwise="or `vllm-dev clean` this build dir (then a fresh configure makes it again)")


@dataclass
class BuildRecord:
    """Marker and memory of one build dir. ``fingerprint`` is what configure last ran with."""

    build_dir: Path = field(metadata=records.TRANSIENT)
    preset: str = ""
    checkout: str = ""
    fingerprint: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.build_dir / layout.BUILD_RECORD

    @classmethod
    def load(cls, build_dir: Path) -> BuildRecord | None:
        """The record of ``build_dir``; None when there is none (or it was damaged: set aside).
        Raises :class:`~vllm_dev.state.records.NewerRecord` for a newer vllm-dev's."""
        return records.load(FORMAT, build_dir / layout.BUILD_RECORD, lambda body: records.from_json(
            cls, body, build_dir=build_dir)).value

    def save(self) -> None:
        records.save(FORMAT, self.path, records.to_json(self))


def is_marked_build_dir(path: Path) -> bool:
    """Whether vllm-dev created ``path`` (the only kind of directory ``clean`` removes): it holds
    a build record, of any version."""
    return records.holds(FORMAT, path / layout.BUILD_RECORD)

