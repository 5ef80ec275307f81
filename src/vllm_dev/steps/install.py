"""Installing built extensions into the checkout's ``vllm/`` and saying what arrived.

The install goes through vllm-dev's own stage (staged_install.py), one component at a time, and
is recorded in vllm-dev's install record (install_record.py); CMake's install manifests are never
read (their names and existence depend on the CMake version). ``build`` installs only the
components whose files may have changed (install_state.py); ``vllm-dev install`` stages every
component asked for and still rewrites only files whose bytes differ.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.errors import VllmDevError
from vllm_dev.flow.workspace import Workspace
from vllm_dev.installs.install_record import installed_files

__all__ = ["InstallReport", "components", "check_components", "installed_files", "run_install",
           "install_components"]

_COMPONENT_RE = re.compile(r'CMAKE_INSTALL_COMPONENT\s+STREQUAL\s+"([^"]+)"')


@dataclass(frozen=True)
class InstallReport:
    files: list[Path]  # every file the installed components put into the checkout
    repaired: list[Path] = field(default_factory=list)  # changed behind our back, replaced
    written: list[Path] = field(default_factory=list)  # rewritten by this install
    components: list[str] = field(default_factory=list)  # staged by this install
    skipped: list[str] = field(default_factory=list)  # not staged: nothing of theirs changed


def components(build_dir: Path) -> list[str]:
    """Install components the build dir knows (vLLM names each after its target)."""
    script = build_dir / "cmake_install.cmake"
    if not script.is_file():
        return []
    return sorted(set(_COMPONENT_RE.findall(script.read_text(errors="replace"))))


def install_components(ws: Workspace, build_dir: Path, wanted: list[str] | None, *,
                       only_changed: bool) -> InstallReport | None:
    """Install ``wanted`` (every component when empty); with ``only_changed`` only those whose
    files may have changed. None in a dry run."""
    from vllm_dev.installs.install_state import components_to_install
    from vllm_dev.installs.staged_install import staged_install

    every = list(wanted) if wanted else components(build_dir)
    if not every and not ws.dry:
        raise VllmDevError(f"{build_dir} installs nothing (no install component in "
                           "cmake_install.cmake): was anything built?")
    todo = every
    if only_changed and not ws.dry:
        todo = components_to_install(build_dir, every, prefix=ws.checkout.root)
    skipped = [c for c in every if c not in todo]
    if ws.dry and not every:  # not configured yet: the components are known only after it
        staged_install(ws, build_dir, [])
        return None
    if not todo:
        ws.say("install skipped: nothing was rebuilt and the installed files are unchanged")
        return InstallReport(installed_files(build_dir, every), skipped=skipped)
    result = staged_install(ws, build_dir, todo)
    if ws.dry:
        return None
    report = InstallReport(installed_files(build_dir, every), repaired=result.replaced,
                           written=result.written, components=result.components, skipped=skipped)
    _say_installed(ws, report, unchanged=result.unchanged)
    return report


def _say_installed(ws: Workspace, report: InstallReport, *, unchanged: list[Path]) -> None:
    root = ws.checkout.root
    for path in report.repaired:
        ws.say(f"replaced {path.relative_to(root)}: it had changed since vllm-dev installed it "
               "(now the install's file again)")
    package = ws.checkout.package_dir.resolve()
    names = ", ".join(sorted(p.name for p in report.written)) or "nothing new"
    line = f"installed {len(report.written)} file(s) into {package}: {names}"
    if unchanged:
        line += f"; same bytes, left alone: {', '.join(sorted(p.name for p in unchanged))}"
    if report.skipped:
        line += f"; not rebuilt, left alone: {', '.join(report.skipped)}"
    ws.say(line)


def check_destinations(ws: Workspace, finals: list[Path]) -> None:
    """Refuse (before anything moves) files that would land outside the checkout's package."""
    package = ws.checkout.package_dir.resolve()
    for path in finals:
        real = Path(os.path.realpath(path))
        if package not in real.parents or package / "vllm" in real.parents:
            raise VllmDevError(
                f"install would put {path} outside the checkout's vllm/ package: check the "
                "install(... DESTINATION ...) of that target (vLLM installs into `vllm`)")


def run_install(ws: Workspace, *, wanted: list[str] | None = None) -> InstallReport | None:
    """``vllm-dev install``: stage every component asked for (all by default)."""
    build_dir = ws.build_dir
    if not (build_dir / "CMakeCache.txt").is_file():
        raise VllmDevError(f"{build_dir} is not configured: run `vllm-dev build` first")
    check_components(build_dir, wanted)
    from vllm_dev.process.locking import workspace_lock

    with workspace_lock(ws):  # staged, then renamed into vllm/ (see staged_install.py)
        return install_components(ws, build_dir, wanted, only_changed=False)


def check_components(build_dir: Path, wanted: list[str] | None) -> None:
    if not wanted:
        return
    known = components(build_dir)
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise VllmDevError(
            f"unknown target {unknown[0]!r}; this build has: {', '.join(known) or 'none'}"
        )
