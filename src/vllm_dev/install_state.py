"""Skipping an install that would change nothing.

``cmake --install`` through the stage (see staged_install.py) copies every extension on every
build, even when ninja rebuilt nothing: on the test project that is most of a no-op build's
overhead over raw cmake, and on vLLM it is about a gigabyte of ``.so`` files copied per no-op
build. After a checked install the identity (mtime, size, inode) of everything that decides the
result is remembered; the next install is skipped only when ninja ran no step and none of it
changed:

* ``.ninja_log`` (any rebuilt step appends to it),
* ``cmake_install.cmake`` (a reconfigure rewrites it) and the install manifests,
* every installed file (a user or ``vllm-dev setup`` replacing one is noticed).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vllm_dev.fact_cache import identity

STATE_NAME = "vllm-dev-installed.json"
KIND = "vllm-dev install state"


def _watched(build_dir: Path, manifests: list[Path]) -> list[Path]:
    files = [build_dir / ".ninja_log", build_dir / "cmake_install.cmake", *manifests]
    for manifest in manifests:
        with contextlib.suppress(OSError):
            files += [Path(line) for line in manifest.read_text(errors="replace").splitlines()
                      if line.strip()]
    return files


def _key(components: list[str] | None) -> str:
    return ",".join(sorted(components)) if components else "*"


def remember(build_dir: Path, components: list[str] | None, manifests: list[Path]) -> None:
    """Note the state right after an install that was checked (see install.check_installed)."""
    from vllm_dev.state import write_json

    stamps = {str(p): identity(p) for p in _watched(build_dir, manifests)}
    if any(s is None for s in stamps.values()):
        forget(build_dir)
        return
    with contextlib.suppress(OSError):
        write_json(build_dir / STATE_NAME, {"kind": KIND, "components": _key(components),
                                            "files": stamps, "verified": False})


def mark_verified(build_dir: Path) -> None:
    """The installed extensions imported fine (``verify``): a skipped install needs no verify."""
    from vllm_dev.state import read_json, write_json

    data = read_json(build_dir / STATE_NAME)
    if data and data.get("kind") == KIND:
        data["verified"] = True
        with contextlib.suppress(OSError):
            write_json(build_dir / STATE_NAME, data)


def verified(build_dir: Path) -> bool:
    from vllm_dev.state import read_json

    path = build_dir / STATE_NAME
    data = read_json(path) if path.is_file() else None
    return bool(data and data.get("kind") == KIND and data.get("verified") is True)


def up_to_date(build_dir: Path, components: list[str] | None, manifests: list[Path], *,
               steps_run: int) -> bool:
    """Whether installing again would copy the same files to the same places."""
    if steps_run:
        return False
    path = build_dir / STATE_NAME
    if not path.is_file():
        return False
    from vllm_dev.state import read_json

    data = read_json(path) or {}
    if data.get("kind") != KIND or data.get("components") != _key(components):
        return False
    stamps = data.get("files")
    if not isinstance(stamps, dict) or not stamps:
        return False
    watched = {str(p) for p in _watched(build_dir, manifests)}
    if watched != set(stamps):
        return False
    return all(identity(name) == stamp for name, stamp in stamps.items())


def forget(build_dir: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(build_dir / STATE_NAME)
