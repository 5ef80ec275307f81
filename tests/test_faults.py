"""Disk full, a read-only checkout, no write permission on vllm/: one clear line, a non-zero exit,
nothing half-written, and the previous extensions still import.

The faults are real where the machine allows it: a tiny tmpfs mounted over the build dir or over
``vllm/`` and filled up (ENOSPC), and read-only bind mounts (EROFS). These tests run as root in CI,
where ``chmod`` cannot deny a write, so a read-only mount is the way "no write permission" is
produced. Every test here is of the ``mounts`` tier: where mounting is not permitted they skip
with that reason (a failure in CI, which runs as root).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vllm_dev.errors import VllmDevError
from vllm_dev.process.files import atomic_write_bytes

from conftest import Project, make_project

pytestmark = pytest.mark.mounts


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


def _can_mount(tmp: Path) -> bool:
    probe = tmp / "mount-probe"
    probe.mkdir(exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)):
        return False
    subprocess.run(["umount", str(probe)], check=False)
    return True


@pytest.fixture(scope="module")
def mounts_ok(tmp_path_factory: pytest.TempPathFactory) -> None:
    if not _can_mount(tmp_path_factory.mktemp("probe")):
        pytest.skip("mounting a tmpfs / read-only bind mount is not permitted here (needs root "
                    "or CAP_SYS_ADMIN); these faults cannot be produced for real")


@contextlib.contextmanager
def tmpfs_over(path: Path, *, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted over ``path``, holding a copy of what was there."""
    saved = path.with_name(path.name + ".saved")
    shutil.copytree(path, saved, symlinks=True)
    assert _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        shutil.copytree(saved, path, symlinks=True, dirs_exist_ok=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)
        shutil.rmtree(saved)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted read-only over itself (EROFS for every writer, root included)."""
    assert _mount("--bind", str(path), str(path))
    try:
        assert _mount("-o", "remount,bind,ro", str(path))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory: Path) -> None:
    """Fill the file system of ``directory`` to the last byte."""
    for name, chunk in (("filler", 65536), ("filler-small", 1)):
        try:
            with open(directory / name, "wb") as handle:
                while True:
                    handle.write(b"\0" * chunk)
                    handle.flush()
        except OSError:
            pass


def digest(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("vllm-dev: ") and "$ " not in ln]
    assert "Traceback" not in stderr
    return lines[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mounts_ok: None) -> Project:
    project = make_project(tmp_path_factory.mktemp("faults"))
    project.run("build")
    return project


def _set_value(project: Project, value: int) -> None:
    source = project.root / "csrc" / "module_C.cpp"
    source.write_text(re.sub(r"#define MINIVLLM_C_KNOWN_VALUE \d+\n#endif",
                             f"#define MINIVLLM_C_KNOWN_VALUE {value}\n#endif",
                             source.read_text(), count=1))


def _installed(project: Project) -> list[Path]:
    return sorted((project.root / "vllm").glob("*.so"))


def test_disk_full_in_build_dir(built: Project) -> None:
    """ENOSPC while compiling: the build fails in one line; vllm/ is untouched."""
    previous = built.value("_C")
    before = digest(_installed(built))
    _set_value(built, 43)
    with tmpfs_over(built.build_dir, size="8m") as build_dir:
        fill(build_dir)
        done = built.run("build", check=False)
        assert done.returncode != 0
        line = one_line_error(done.stderr)
        print(f"\n{line}")
        # the compile, or vllm-dev's own state file written before it, meets the full disk
        assert "is full" in line and "free some space" in line, line
        assert digest(_installed(built)) == before
        assert built.value("_C") == previous
    built.run("build")  # space is back: the build completes
    assert built.value("_C") == 43 and built.value("_fast_C") == 7


def test_disk_full_in_vllm_package(built: Project) -> None:
    """ENOSPC while moving the new .so into vllm/ (a tmpfs there: another file system, so the
    install copies beside the target and renames): one line, the old .so whole."""
    previous = built.value("_C")
    _set_value(built, 44)
    package = built.root / "vllm"
    before = digest(_installed(built))
    with tmpfs_over(package, size="2m"):
        fill(package)
        done = built.run("build", check=False)
        assert done.returncode == 1, done.stderr
        line = one_line_error(done.stderr)
        print(f"\n{line}")
        assert "No space left on device" in line and "_C.abi3.so" in line, line
        assert digest(_installed(built)) == before
        assert not list(package.glob(".*.tmp")), "a half-written temporary file was left"
        for name in ("filler", "filler-small"):
            (package / name).unlink(missing_ok=True)
        assert built.value("_C") == previous  # the previous build's, intact
    built.run("build")
    assert built.value("_C") == 44


def test_read_only_checkout(built: Project) -> None:
    """EROFS for the whole checkout: one line naming the problem; nothing changed."""
    previous = built.value("_C")
    _set_value(built, 45)
    files = [p for p in built.root.rglob("*") if p.is_file() and ".venv" not in p.parts]
    before = digest(files)
    with read_only(built.root):
        done = built.run("build", check=False)
        assert done.returncode == 1, done.stderr
        line = one_line_error(done.stderr)
        print(f"\n{line}")
        assert "Read-only file system" in line, line
    assert digest(files) == before
    assert built.value("_C") == previous
    built.run("build")
    assert built.value("_C") == 45


def test_no_write_permission_on_vllm(built: Project) -> None:
    """vllm/ not writable (a read-only bind mount: as root, chmod would not stop the write). The
    compile still happens; the install stops in one line and vllm/ keeps its whole old files."""
    previous = built.value("_C")
    _set_value(built, 46)
    before = digest(_installed(built))
    with read_only(built.root / "vllm"):
        done = built.run("build", check=False)
        assert done.returncode == 1, done.stderr
        line = one_line_error(done.stderr)
        print(f"\n{line}")
        assert line.startswith("vllm-dev: cannot install ") and "Read-only file system" in line
        assert "not writable" in line, line
        assert digest(_installed(built)) == before
        assert built.value("_C") == previous
    built.run("build")
    assert built.value("_C") == 46 and built.value("_fast_C") == 7


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path: Path, mounts_ok: None) -> None:
    """What every vllm-dev file write goes through (CMakeUserPresets.json, state files), on a
    really full file system (a filled 64 KiB tmpfs): ENOSPC named, the old file kept whole, no
    temporary file left behind."""
    target = tmp_path / "small"
    target.mkdir()
    assert _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target))
    try:
        presets = target / "CMakeUserPresets.json"
        presets.write_text('{"version": 6}\n')
        fill(target)
        with pytest.raises(VllmDevError, match="No space left on device"):
            atomic_write_bytes(presets, b"x" * 200_000)
        assert presets.read_text() == '{"version": 6}\n'
        assert sorted(p.name for p in target.iterdir() if p.name.startswith(".")) == []
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)
    assert os.listdir(target) == []
