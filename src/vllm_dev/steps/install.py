"""Installing built extensions into the checkout's ``vllm/`` and saying what arrived.

The install goes through vllm-dev's own stage (staged_install.py), one component at a time, and
is recorded in vllm-dev's install record (install_record.py); CMake's install manifests are never
read (their names and existence depend on the CMake version). ``build`` installs only the
components whose files may have changed (install_state.py); ``vllm-dev install`` stages every
component asked for and still rewrites only files whose bytes differ. The step takes a resolved
:class:`~vllm_dev.planning.plan.BuildDirPlan` (a build's whole plan is one); the pipeline holds the
build dir's lock around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_dev.errors import VllmDevError
from vllm_dev.installs.components import components
from vllm_dev.installs.install_record import installed_files
from vllm_dev.installs.install_state import components_to_install
from vllm_dev.installs.staged_install import staged_install
from vllm_dev.planning.plan import BuildDirPlan
from vllm_dev.steps.build import require_build_dir

if TYPE_CHECKING:
    from vllm_dev.installs.staged_install import CommitResult

__all__ = ["InstallReport", "install_components", "require_configured"]


@dataclass(frozen=True)
class InstallReport:
    files: list[Path]  # every file the installed components put into the checkout
    repaired: list[Path] = field(default_factory=list)  # changed behind our back, replaced
    written: list[Path] = field(default_factory=list)  # rewritten by this install
    components: list[str] = field(default_factory=list)  # staged by this install
    skipped: list[str] = field(default_factory=list)  # not staged: nothing of theirs changed


def require_configured(build_dir: Path) -> None:
    """``vllm-dev install`` installs what a build left: refuse a build dir never configured."""
    if not (build_dir / "CMakeCache.txt").is_file():
        raise VllmDevError(f"{build_dir} is not configured: run `vllm-dev build` first")


def install_components(plan: BuildDirPlan, wanted: list[str] | None, *,
                       only_changed: bool) -> InstallReport | None:
    """Install ``wanted`` (every component when empty); with ``only_changed`` only those whose
    files may have changed. None in a dry run."""
    build_dir = plan.build_dir

    require_build_dir(build_dir, plan.dry)
    every = list(wanted) if wanted else components(build_dir)
    if not every and not plan.dry:
        raise VllmDevError(f"{build_dir} installs nothing (no install component in "
                           "cmake_install.cmake): was anything built?")
    todo = every
    if only_changed and not plan.dry:
        todo = components_to_install(build_dir, every, prefix=plan.checkout.root)
    skipped = [c for c in every if c not in todo]
    if plan.dry and not every:  # not configured yet: the components are known only after it
        _staged(plan, [])
        return None
    if not todo:
        plan.say("install skipped: nothing was rebuilt and the installed files are unchanged")
        return InstallReport(installed_files(build_dir, every), skipped=skipped)
    result = _staged(plan, todo)
    if plan.dry:
        return None
    report = InstallReport(installed_files(build_dir, every), repaired=result.replaced,
                           written=result.written, components=result.components, skipped=skipped)
    _say_installed(plan, report, unchanged=result.unchanged)
    return report


def _staged(plan: BuildDirPlan, todo: list[str]) -> CommitResult:
    return staged_install(plan.build_dir, todo, cmake=plan.cmake.path, runner=plan.runner,
                          root=plan.checkout.root, package_dir=plan.checkout.package_dir)


def _say_installed(plan: BuildDirPlan, report: InstallReport, *, unchanged: list[Path]) -> None:
    root = plan.checkout.root
    for path in report.repaired:
        plan.say(f"replaced {path.relative_to(root)}: it had changed since vllm-dev installed it "
                 "(now the install's file again)")
    package = plan.checkout.package_dir.resolve()
    names = ", ".join(sorted(p.name for p in report.written)) or "nothing new"
    line = f"installed {len(report.written)} file(s) into {package}: {names}"
    if unchanged:
        line += f"; same bytes, left alone: {', '.join(sorted(p.name for p in unchanged))}"
    if report.skipped:
        line += f"; not rebuilt, left alone: {', '.join(report.skipped)}"
    plan.say(line)
