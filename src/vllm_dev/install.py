"""Installing built extensions into the checkout's ``vllm/`` and proving they arrived intact.

CMake's install skips a file as up to date when both timestamps fall in the same second, so a
fast rebuild (warm compiler cache) could leave the previous ``.so`` installed while the build dir
holds the new one. The staged install (staged_install.py) avoids that by installing into an empty
stage; as a safety net, after every install each file of the manifest is compared with its build
output and replaced (atomically) where they differ.
"""

from __future__ import annotations

import filecmp
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.errors import VllmDevError
from vllm_dev.files import atomic_copy
from vllm_dev.workspace import Workspace

_COMPONENT_RE = re.compile(r'CMAKE_INSTALL_COMPONENT\s+STREQUAL\s+"([^"]+)"')
_SKIP_DIRS = {"CMakeFiles", "_deps", ".deps"}


@dataclass(frozen=True)
class InstallReport:
    files: list[Path]
    repaired: list[Path] = field(default_factory=list)


def components(build_dir: Path) -> list[str]:
    """Install components the build dir knows (vLLM names each after its target)."""
    script = build_dir / "cmake_install.cmake"
    if not script.is_file():
        return []
    return sorted(set(_COMPONENT_RE.findall(script.read_text(errors="replace"))))


def manifest_paths(build_dir: Path, wanted: list[str] | None) -> list[Path]:
    if wanted:
        return [build_dir / f"install_manifest_{c}.txt" for c in wanted]
    return [build_dir / "install_manifest.txt"]


def installed_files(build_dir: Path, wanted: list[str] | None = None) -> list[Path]:
    files: list[Path] = []
    for manifest in manifest_paths(build_dir, wanted):
        if manifest.is_file():
            files += [Path(line) for line in manifest.read_text().splitlines() if line.strip()]
    return files


def build_outputs(build_dir: Path) -> dict[str, Path]:
    """Built files by name. Hand-walked: CMake records no file-to-target map we can read cheaply."""
    found: dict[str, Path] = {}
    for top, dirs, names in os.walk(build_dir):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in names:
            if name.endswith((".so", ".pyd", ".dylib")):
                found.setdefault(name, Path(top) / name)
    return found


def check_installed(ws: Workspace, build_dir: Path, wanted: list[str] | None = None
                    ) -> InstallReport:
    package = ws.checkout.package_dir.resolve()
    files = installed_files(build_dir, wanted)
    if not files:
        raise VllmDevError(f"the install wrote no manifest in {build_dir}: was anything built?")
    outputs = build_outputs(build_dir)
    repaired: list[Path] = []
    for path in files:
        real = Path(os.path.realpath(path))
        if package not in real.parents or package / "vllm" in real.parents:
            raise VllmDevError(
                f"install put {path} outside the checkout's vllm/ package: configure with "
                "CMAKE_INSTALL_PREFIX=${sourceDir} (`vllm-dev prime --reconfigure`)"
            )
        if not path.is_file():
            raise VllmDevError(f"install manifest lists {path}, which does not exist")
        built = outputs.get(path.name)
        if built is not None and not filecmp.cmp(built, path, shallow=False):
            atomic_copy(built, path)
            repaired.append(path)
    for path in repaired:
        ws.say(f"replaced stale {path.relative_to(ws.checkout.root)} (cmake's install skipped it "
               "as up to date)")
    names = ", ".join(sorted(p.name for p in files))
    ws.say(f"installed {len(files)} file(s) into {package}: {names}")
    return InstallReport(files, repaired)


def run_install(ws: Workspace, *, wanted: list[str] | None = None) -> InstallReport | None:
    build_dir = ws.build_dir
    if not (build_dir / "CMakeCache.txt").is_file():
        raise VllmDevError(f"{build_dir} is not configured: run `vllm-dev build` first")
    check_components(build_dir, wanted)
    from vllm_dev.locking import workspace_lock
    from vllm_dev.staged_install import staged_install

    with workspace_lock(ws):  # staged, then renamed into vllm/ (see staged_install.py)
        staged_install(ws, build_dir, wanted or None)
        return None if ws.dry else check_installed(ws, build_dir, wanted)


def check_components(build_dir: Path, wanted: list[str] | None) -> None:
    if not wanted:
        return
    known = components(build_dir)
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise VllmDevError(
            f"unknown target {unknown[0]!r}; this build has: {', '.join(known) or 'none'}"
        )
