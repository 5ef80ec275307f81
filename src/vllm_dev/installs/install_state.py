"""Which components a build has to install, and which installed extensions still need a check.

Every rebuild used to reinstall every extension (vLLM's ``.so`` files are large: 27 MB for
``_moe_C_stable_libtorch`` with one arch, hundreds of MB for ``_C`` with all of them) and to
import all of them again. Now a component is installed only when something it installs may have
changed, decided from vllm-dev's install record (install_record.py), per component:

* no record of it, another install prefix, or ``cmake_install.cmake`` rewritten (a reconfigure
  may change the install rules): install;
* a recorded build output (the build dir's file of the same name) has another identity
  (mtime, size, inode) than when it was installed: install;
* an installed file was changed or removed behind vllm-dev's back: install (and say so);
* otherwise it is left alone: not staged, not rewritten.

Why identities of the build outputs rather than the entries ninja appended to ``.ninja_log``
during this build: the log says which *outputs* were rebuilt, not which install component they
feed (that needs CMake's target graph), and it misses what happened outside this build: a
``cmake --build`` typed by hand, or a ``build --no-install``, between two vllm-dev builds leaves
its entries before this build's mark, and the installed file would stay old. Comparing the
identity of the output that was installed with the one there now catches all of these, costs
one ``stat`` per file, and needs no parsing of vLLM's (large) ``build.ninja``. A relink that
produced the same bytes (a warm ccache after a revert) is staged and hashed, and then not
rewritten, because the staged file's hash equals the recorded hash of the installed file.

The ``verified`` flag of a component is cleared whenever one of its installed files changes and
set after its extensions loaded in the target interpreter; the check after a build looks only
at components without it (see verify.py).
"""

from __future__ import annotations

from pathlib import Path

from vllm_dev.installs.install_record import InstallRecord


def components_to_install(build_dir: Path, components: list[str], *, prefix: Path) -> list[str]:
    """The subset of ``components`` whose installed files may differ from what an install
    would write now (see the module docstring)."""
    record = InstallRecord.load(build_dir)
    if record.prefix != prefix:
        return list(components)
    return [c for c in components if _needs_install(record, c)]


def _needs_install(record: InstallRecord, component: str) -> bool:
    entry = record.components.get(component)
    if entry is None or record.prefix is None or record.script_changed(component):
        return True  # (a component that installs no file, e.g. install(CODE ...), is recorded)
    for installed in entry.files:
        if installed.source is None:  # no build output of that name: only staging can tell
            return True
        if installed.source_changed() or installed.installed_changed(record.prefix):
            return True
    return False


def unverified(build_dir: Path, components: list[str]) -> list[str]:
    """Components among ``components`` whose installed files were not loaded since they last
    changed."""
    record = InstallRecord.load(build_dir)
    return [c for c in components if c in record.components and not record.components[c].verified]


def mark_verified(build_dir: Path, components: list[str]) -> None:
    record = InstallRecord.load(build_dir)
    changed = False
    for name in components:
        entry = record.components.get(name)
        if entry is not None and not entry.verified:
            entry.verified = True
            changed = True
    if changed:
        record.save()


def mark_unverified(build_dir: Path, components: list[str] | None = None) -> None:
    """A check failed: the next build checks these (all when None) again."""
    record = InstallRecord.load(build_dir)
    for name, entry in record.components.items():
        if components is None or name in components:
            entry.verified = False
    if record.components:
        record.save()
