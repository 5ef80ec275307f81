"""vllm-dev's own record of what each install component put into the checkout.

CMake's ``install_manifest*.txt`` cannot be relied on: vLLM's top-level ``CMakeLists.txt`` has
``install(CODE "set(CMAKE_INSTALL_LOCAL_ONLY TRUE)" ALL_COMPONENTS)``, and with it CMake 3.30
writes no manifest, 3.31/4.x only ``install_local_manifest.txt``, 3.26-3.29 the usual
``install_manifest*.txt``. vllm-dev does not need CMake to tell it: it installs into a stage of
its own (``<build>/vllm-dev-stage``, emptied before each install), one component at a time, so
the files a component wrote are the ones that appeared or changed in the stage during its
``cmake --install`` (see staged_install.py).

The record lives at ``<build dir>/vllm-dev-install.json`` (state/layout.py; read and written
through state/records.py). Per component it keeps, for every
installed file: its path relative to the install prefix, the sha256 of what ``cmake --install``
produced (the installed bytes, RPATH rewritten: never the build dir's bytes), the identity
(mtime, size, inode) of the installed file right after the install, and the build output of the
same name with its identity at install time. From that, without reading a ``.so``:

* a component whose build outputs, installed files and ``cmake_install.cmake`` all still have
  the identities recorded at its install needs no install (install_state.py);
* a staged file whose hash equals the recorded one of an untouched installed file is not
  rewritten;
* ``verify`` knows which extensions this build dir installed, and which of them the last build
  changed since (a build output newer than its install).

API for other modules: :meth:`InstallRecord.load`, :meth:`InstallRecord.files` (absolute
installed paths, optionally of some components), :func:`installed_files`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.state import layout, records
from vllm_dev.toolchain.fact_cache import identity

KIND = "vllm-dev install record"
VERSION = 1
FORMAT = records.Format(
    "install record", KIND, VERSION, if_newer=records.STOP,
    otherwise="or `vllm-dev clean` this build dir (then a build installs every component)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class InstalledFile:
    """One file a component installed."""

    path: str  # relative to the install prefix (the checkout root), e.g. "vllm/_C.abi3.so"
    sha256: str  # of the installed bytes, as cmake --install produced them
    identity: list[int] | None  # [mtime_ns, size, inode] of the installed file after install
    source: str | None = None  # the build output of the same name (absolute), when one exists
    source_identity: list[int] | None = None

    def installed_changed(self, prefix: Path) -> bool:
        """The installed file is gone or was rewritten since vllm-dev installed it."""
        return self.identity is None or identity(prefix / self.path) != self.identity

    def source_changed(self) -> bool:
        """The build output was rebuilt (or removed) since it was installed."""
        return self.source is not None and identity(self.source) != self.source_identity


@dataclass
class ComponentRecord:
    files: list[InstalledFile] = field(default_factory=list)
    # the installed files loaded in the target interpreter since they last changed
    verified: bool = False
    # cmake_install.cmake when this component was installed: a reconfigure may change its rules
    script_identity: list[int] | None = None


@dataclass
class InstallRecord:
    build_dir: Path = field(metadata=records.TRANSIENT)
    prefix: Path | None = None
    components: dict[str, ComponentRecord] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.build_dir / layout.INSTALL_RECORD

    @classmethod
    def load(cls, build_dir: Path) -> InstallRecord:
        """The record of ``build_dir``; an empty one when there is none (or it was damaged: set
        aside, and everything installs again). Raises
        :class:`~vllm_dev.state.records.NewerRecord` for a newer vllm-dev's: without it every
        component would install again and its install checks would be lost."""
        loaded = records.load(FORMAT, build_dir / layout.INSTALL_RECORD,
                              lambda body: records.from_json(cls, body, build_dir=build_dir))
        return loaded.value or cls(build_dir)

    def save(self) -> None:
        if self.build_dir.is_dir():
            records.save(FORMAT, self.path, records.to_json(self))

    def forget(self) -> None:
        self.components.clear()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def files(self, components: list[str] | None = None) -> list[Path]:
        """Absolute paths of the installed files (of ``components``, or of all)."""
        if self.prefix is None:
            return []
        names = components if components else sorted(self.components)
        return [self.prefix / f.path for name in names if name in self.components
                for f in self.components[name].files]

    def entries(self) -> list[InstalledFile]:
        return [f for name in sorted(self.components) for f in self.components[name].files]

    def script_changed(self, component: str) -> bool:
        entry = self.components.get(component)
        return entry is None or \
            identity(self.build_dir / "cmake_install.cmake") != entry.script_identity


def installed_files(build_dir: Path, components: list[str] | None = None) -> list[Path]:
    """What vllm-dev's installs from ``build_dir`` put into the checkout (see module doc)."""
    return InstallRecord.load(build_dir).files(components)
