"""``clean`` under attack: nothing outside vllm-dev's own build dirs is ever removed.

Attacks: symlinks inside a build dir pointing outside it; a build dir that is itself a symlink
(to a directory carrying a copied vllm-dev marker); a symlinked path component; ``binaryDir``
templates resolving to the checkout, ``/``, ``..``, the parent, ``vllm/``; manifests listing files
outside ``vllm/`` for ``clean --installed``; and, with hypothesis, random ``binaryDir`` strings
built from macros, ``..``, ``.`` and slashes. Each case checks sentinel files inside and outside
the checkout afterwards. The core runs in-process (``clean`` needs no interpreter); a few cases
go through the real ``vllm-dev`` console script to prove the one-line error and exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.installs.install_record import ComponentRecord, InstalledFile, InstallRecord
from vllm_dev.planning.workspace import Workspace
from vllm_dev.process.runner import Completed
from vllm_dev.state.build_record import BUILD_MARKER_KIND
from vllm_dev.state.layout import BUILD_RECORD
from vllm_dev.steps.clean import run_clean

import minivllm_tools as mv
from conftest import VLLM_DEV, clean_env


class NoRunner:
    """clean starts no command; any attempt is a bug."""

    dry = False

    def run(self, argv, **kwargs) -> Completed:  # noqa: ANN001, ANN003
        raise AssertionError(f"clean ran {argv}")

    def query(self, argv, **kwargs) -> Completed:  # noqa: ANN001, ANN003
        raise AssertionError(f"clean asked {argv}")

    def start(self, argv, **kwargs) -> None:  # noqa: ANN001, ANN003
        raise AssertionError(f"clean started {argv}")


class World:
    """A checkout beside precious files outside it, and sentinels inside it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "vllm"
        if not self.root.exists():
            mv.copy_project(self.root)
        self.outside = base / "precious"
        self.outside.mkdir(exist_ok=True)
        (self.outside / "thesis.txt").write_text("years of work\n")
        (self.outside / "sub").mkdir(exist_ok=True)
        (self.outside / "sub" / "data.bin").write_bytes(b"\x00" * 10)
        self.presets = base / "presets"
        self.presets.mkdir(exist_ok=True)
        (self.root / "vllm" / "_precious.py").write_text("x = 1\n")
        self.sentinels = [self.outside / "thesis.txt", self.outside / "sub" / "data.bin",
                          self.root / "CMakeLists.txt", self.root / "vllm" / "_precious.py",
                          self.root / "vllm" / "__init__.py"]

    def template(self, name: str, binary_dir: str | None) -> None:
        for old in self.presets.glob("*.json"):
            old.unlink()
        data = {"buildType": "Release"} if binary_dir is None else {"binaryDir": binary_dir}
        (self.presets / f"{name}.json").write_text(json.dumps(data))

    def workspace(self, preset: str, said: list[str]) -> Workspace:
        settings = Settings(source=str(self.root), presets_dir=str(self.presets), preset=preset)
        return Workspace(settings=settings, runner=NoRunner(), cwd=self.root,  # type: ignore[arg-type]
                         say=said.append)

    def mark(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / BUILD_RECORD).write_text(json.dumps({"kind": BUILD_MARKER_KIND}))

    def intact(self) -> None:
        for path in self.sentinels:
            assert path.is_file(), f"{path} was removed"
        assert (self.outside / "thesis.txt").read_text() == "years of work\n"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([VLLM_DEV, *args], cwd=self.root, text=True, capture_output=True,
                              env=clean_env({"VLLM_DEV_PRESETS_DIR": str(self.presets)}),
                              stdin=subprocess.DEVNULL, check=False, timeout=60)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.mark.unit
def test_symlinks_inside_the_build_dir_are_unlinked_not_followed(world: World) -> None:
    world.template("release", None)
    build = world.root / "cmake-build-release"
    world.mark(build)
    (build / "CMakeFiles").mkdir()
    (build / "to-dir").symlink_to(world.outside)
    (build / "to-file").symlink_to(world.outside / "thesis.txt")
    (build / "CMakeFiles" / "deep").symlink_to(world.outside / "sub")
    (build / "to-root").symlink_to(world.root)
    (build / "to-slash").symlink_to("/")
    said: list[str] = []
    result = run_clean(world.workspace("release", said))
    assert result.removed_dirs == [build] and not build.exists()
    world.intact()
    assert (world.outside / "sub" / "data.bin").is_file() and world.root.is_dir()


@pytest.mark.unit
@pytest.mark.parametrize("target", ["outside", "inside"])
def test_a_build_dir_that_is_a_symlink_is_refused(world: World, target: str) -> None:
    world.template("release", None)
    real = world.outside if target == "outside" else world.root / "other-build"
    world.mark(real)  # even with a (copied) marker
    (world.root / "cmake-build-release").symlink_to(real)
    for every in (False, True):
        with pytest.raises(VllmDevError, match="is a symlink"):
            run_clean(world.workspace("release", []), every=every)
    assert (real / BUILD_RECORD).is_file()
    world.intact()
    done = world.cli("clean")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("vllm-dev: refusing to remove ")
    assert (real / BUILD_RECORD).is_file()


@pytest.mark.unit
def test_a_symlinked_parent_component_is_refused(world: World) -> None:
    (world.root / "builds").symlink_to(world.outside)
    world.mark(world.outside / "release")
    world.template("release", "${sourceDir}/builds/release")
    with pytest.raises(VllmDevError, match="is a symlink"):
        run_clean(world.workspace("release", []))
    assert (world.outside / "release" / BUILD_RECORD).is_file()
    world.intact()


BAD_BINARY_DIRS = ["${sourceDir}", "${sourceDir}/", "${sourceDir}/.", "/", "//", "..", ".",
                   "", "${sourceDir}/..", "${sourceParentDir}", "${sourceDir}/x/../..",
                   "../${sourceDirName}", "${sourceDir}/vllm", "${sourceDir}/vllm/sub", "/tmp",
                   "${sourceParentDir}/precious", "../precious", "${sourceDir}/../precious"]


@pytest.mark.unit
@pytest.mark.parametrize("binary_dir", BAD_BINARY_DIRS)
def test_binary_dir_resolving_outside_is_refused(world: World, binary_dir: str) -> None:
    world.template("evil", binary_dir)
    world.mark(world.outside)  # a marker where the template points must not help
    (world.root / BUILD_RECORD).write_text(json.dumps({"kind": BUILD_MARKER_KIND}))
    for every in (False, True):
        with pytest.raises(VllmDevError, match="binaryDir"):
            run_clean(world.workspace("evil", []), every=every)
    world.intact()
    assert (world.outside / BUILD_RECORD).is_file() and (world.root / BUILD_RECORD).is_file()


@pytest.mark.unit
def test_binary_dir_refusal_through_the_console_script(world: World) -> None:
    for binary_dir in ("/", "..", "${sourceDir}"):
        world.template("release", binary_dir)
        done = world.cli("clean", "--all")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "binaryDir" in lines[0], done.stderr
        world.intact()


@pytest.mark.unit
def test_unmarked_dir_is_refused(world: World) -> None:
    world.template("release", "${sourceDir}/csrc")  # a real source dir, no vllm-dev marker
    with pytest.raises(VllmDevError, match="did not create it"):
        run_clean(world.workspace("release", []))
    assert (world.root / "csrc" / "module_C.cpp").is_file()


@pytest.mark.unit
def test_clean_installed_removes_only_files_inside_vllm(world: World) -> None:
    world.template("release", None)
    build = world.root / "cmake-build-release"
    world.mark(build)
    ours = world.root / "vllm" / "_C.abi3.so"
    ours.write_bytes(b"so")
    (world.root / "vllm" / "_link.so").symlink_to(world.outside / "thesis.txt")
    listed = [ours, world.outside / "thesis.txt", world.root / "vllm" / ".." / "CMakeLists.txt",
              world.root / "vllm" / "_link.so", world.root / "CMakeLists.txt",
              Path("/etc/hostname"), world.root / "vllm" / "__init__.py" / ".." / ".." / "setup.py"]
    # vllm-dev's install record, as a hostile or damaged one could read: every kind of path
    record = InstallRecord(build, prefix=world.root)
    record.components["_C"] = ComponentRecord([
        InstalledFile(path=os.path.relpath(p, world.root) if i % 2 else str(p), sha256="0",
                      identity=None) for i, p in enumerate(listed)])
    record.save()
    result = run_clean(world.workspace("release", []), installed=True)
    assert not ours.exists()
    assert result.removed_files == [ours]
    assert (world.root / "vllm" / "_link.so").is_symlink()
    assert Path("/etc/hostname").exists() and (world.root / "setup.py").is_file()
    world.intact()


FRAGMENTS = st.sampled_from(["${sourceDir}", "${sourceParentDir}", "${sourceDirName}",
                             "${presetName}", "${dollar}", "..", ".", "/", "//", "x", "vllm",
                             "precious", "~", " ", "\\", "build"])


@pytest.mark.unit
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(FRAGMENTS, max_size=7), joiner=st.sampled_from(["/", ""]))
def test_random_binary_dirs_never_remove_anything_outside(world: World, parts: list[str],
                                                          joiner: str) -> None:
    binary_dir = joiner.join(parts)
    world.template("fuzz", binary_dir)
    said: list[str] = []
    ws = world.workspace("fuzz", said)
    try:
        build = ws.build_dir
    except VllmDevError:
        build = None
    if build is not None:  # accepted: it must lie strictly inside the checkout, outside vllm/
        root = world.root.resolve()
        assert root in build.parents and build != root
        assert (root / "vllm") != build and (root / "vllm") not in build.parents
        if not build.exists():
            world.mark(build)
    world.mark(world.outside)
    try:
        run_clean(ws, every=True)
    except VllmDevError as exc:
        assert "\n" not in str(exc)
    world.intact()
    assert (world.outside / BUILD_RECORD).is_file()
    assert os.path.isdir(world.root / "csrc")


@pytest.mark.mounts
def test_clean_of_a_read_only_build_dir_is_one_line_and_can_be_retried(world: World) -> None:
    """EROFS (a read-only bind mount; as root chmod would not stop rmtree): one line, no
    traceback, the marker kept so the dir stays cleanable once writable again."""
    world.template("release", None)
    build = world.root / "cmake-build-release"
    world.mark(build)
    (build / "sub").mkdir()
    (build / "sub" / "obj.o").write_bytes(b"o")
    if subprocess.run(["mount", "--bind", str(build), str(build)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("bind mounts not permitted here: cannot make the build dir read-only as root")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(build)], check=True)
        done = world.cli("clean")
        assert done.returncode == 1 and "Traceback" not in done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith((f"vllm-dev: cannot remove {build}",
                                f"vllm-dev: cannot lock {build}")), line
        assert "Read-only file system" in line
        assert (build / BUILD_RECORD).is_file() and (build / "sub" / "obj.o").is_file()
    finally:
        subprocess.run(["umount", "-l", str(build)], check=True)
    assert world.cli("clean").returncode == 0 and not build.exists()
    world.intact()
