"""Bad input: one clear line, a non-zero exit, no traceback, and nothing changed on disk."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import Project, make_project


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under root with its mtime and content hash; not the venv, nor vllm-dev's own
    cache of probe answers in .vllm-dev/ (refreshing it is not a change to the checkout)."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in (".venv", ".vllm-dev") or not path.is_file() or path.is_symlink():
            continue
        state[str(rel)] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def assert_one_line_failure(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("vllm-dev:") and not ln.startswith("vllm-dev: $")]
    assert len(errors) >= 1, done.stderr
    message = errors[-1]
    for needle in needles:
        assert needle in message, message
    return message


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """One configured and built project shared by the read-only error cases."""
    project = make_project(tmp_path_factory.mktemp("errors"))
    project.run("build")
    return project


@pytest.mark.flow
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("build", "--preset", "nosuch"), ("unknown preset 'nosuch'", "debug, release")),
        (("build", "--jobs", "0"), ("--jobs must be a positive integer", "'0'")),
        (("build", "--jobs", "-3"), ("--jobs must be a positive integer",)),
        (("build", "--jobs", "many"), ("--jobs must be a positive integer", "'many'")),
        (("build", "--nvcc-threads", "0"), ("--nvcc-threads must be a positive integer",)),
        (("build", "--target", "_nosuch_C"), ("unknown target '_nosuch_C'", "_C", "_fast_C")),
        (("install", "--component", "_nosuch_C"), ("unknown target '_nosuch_C'",)),
        (("build", "--device", "tpu"), ("--device must be one of cuda, cpu, rocm",)),
        (("build", "--source", "/nonexistent/vllm"), ("/nonexistent/vllm does not exist",)),
        (("build", "--python", "/nonexistent/bin/python"),
         ("/nonexistent/bin/python does not exist",)),
    ],
)
def test_bad_flag(built: Project, args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    before = snapshot(built.root)
    assert_one_line_failure(built.run(*args, check=False), *needles)
    assert snapshot(built.root) == before


@pytest.mark.flow
def test_bad_env_values_name_the_variable(built: Project) -> None:
    before = snapshot(built.root)
    done = built.run("build", check=False, env={"MAX_JOBS": "zero"})
    assert_one_line_failure(done, "MAX_JOBS must be a positive integer")
    done = built.run("build", check=False, env={"VLLM_TARGET_DEVICE": "gpu"})
    assert_one_line_failure(done, "VLLM_TARGET_DEVICE must be one of")
    assert snapshot(built.root) == before


@pytest.mark.flow
def test_not_a_vllm_checkout(tmp_path: Path, built: Project) -> None:
    other = tmp_path / "other"
    (other / "vllm").mkdir(parents=True)
    (other / "CMakeLists.txt").write_text("project(something_else)\n")
    done = built.run("build", "--source", str(other), check=False)
    assert_one_line_failure(done, "is not a vLLM checkout",
                            "project(vllm_extensions) in CMakeLists.txt", "setup.py or pyproject")
    done = built.run("build", cwd=tmp_path, check=False)
    assert_one_line_failure(done, "no vLLM checkout at or above", "--source")


@pytest.mark.flow
def test_malformed_template_points_at_file_line_column(tmp_path: Path, built: Project) -> None:
    templates = tmp_path / "presets"
    shutil.copytree(Path(__file__).parents[1] / "presets", templates)
    (templates / "broken.json").write_text('{\n  "buildType": "Debug"\n  "description": "x"\n}\n')
    before = snapshot(built.root)
    env = {"VLLM_DEV_PRESETS_DIR": str(templates)}
    done = built.run("build", "--preset", "broken", check=False, env=env)
    assert_one_line_failure(done, f"{templates / 'broken.json'}:3:3:", "delimiter")
    (templates / "broken.json").write_text('{"buildType": "Debug", "cacheVars": {}}')
    done = built.run("build", "--preset", "broken", check=False, env=env)
    assert_one_line_failure(done, "unknown key 'cacheVars'")
    assert snapshot(built.root) == before
    # the other presets still build; the broken one is reported once
    done = built.run("build", env=env)
    assert done.stderr.count("preset template 'broken' skipped") == 1


@pytest.mark.flow
def test_user_template_adds_a_preset_without_python(tmp_path: Path, built: Project) -> None:
    templates = tmp_path / "presets"
    shutil.copytree(Path(__file__).parents[1] / "presets", templates)
    (templates / "relwithdebinfo.json").write_text('{"buildType": "RelWithDebInfo"}\n')
    built.run("build", "--preset", "relwithdebinfo",
              env={"VLLM_DEV_PRESETS_DIR": str(templates)})
    cache = (built.root / "cmake-build-relwithdebinfo" / "CMakeCache.txt").read_text()
    assert "CMAKE_BUILD_TYPE:STRING=RelWithDebInfo" in cache


@pytest.mark.flow
def test_missing_target_interpreter(tmp_path: Path) -> None:
    project = make_project(tmp_path, setup=False)
    shutil.rmtree(project.root / ".venv")
    before = snapshot(project.root)
    done = project.run("build", check=False)
    assert_one_line_failure(done, "no target interpreter", "uv venv")
    assert snapshot(project.root) == before


@pytest.mark.flow
def test_interpreter_lacking_build_requirements(tmp_path: Path) -> None:
    project = make_project(tmp_path, setup=False)
    before = snapshot(project.root)
    done = project.run("build", check=False)
    assert_one_line_failure(done, "lacks build requirement", "cmake", "vllm-dev setup")
    assert snapshot(project.root) == before


@pytest.mark.flow
def test_cmake_too_old(tmp_path: Path) -> None:
    """A stand-in cmake that reports 3.20 (on PATH, with the venv's own cmake removed)."""
    project = make_project(tmp_path)
    for name in ("cmake", "ctest", "cpack"):
        (project.python.parent / name).unlink(missing_ok=True)
    old = tmp_path / "oldbin"
    old.mkdir()
    fake = old / "cmake"
    fake.write_text("#!/bin/sh\necho 'cmake version 3.20.0'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    before = snapshot(project.root)
    done = project.run("build", check=False,
                       env={"PATH": f"{old}{os.pathsep}/usr/bin{os.pathsep}/bin"})
    assert_one_line_failure(done, "cmake 3.20.0", str(fake), "older than the 3.26")
    assert snapshot(project.root) == before


@pytest.mark.flow
def test_nvcc_required_but_absent(built: Project) -> None:
    before = snapshot(built.root)
    done = built.run("build", "--device", "cuda", check=False,
                     env={"CUDACXX": "/nonexistent/nvcc"})
    assert_one_line_failure(done, "no nvcc was found", "--device cpu")
    assert snapshot(built.root) == before


@pytest.mark.flow
def test_clean_refuses_symlinked_build_dir(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    (outside / "vllm-dev-build.json").write_text('{"kind": "vllm-dev build dir"}')
    project.build_dir.symlink_to(outside, target_is_directory=True)
    done = project.run("clean", check=False)
    assert_one_line_failure(done, "refusing to remove", "symlink")
    assert (outside / "precious").read_text() == "keep me"


@pytest.mark.flow
def test_clean_refuses_escaping_binary_dir(tmp_path: Path, built: Project) -> None:
    templates = tmp_path / "presets"
    templates.mkdir()
    (templates / "escape.json").write_text('{"binaryDir": "${sourceDir}/../escape"}')
    (templates / "root.json").write_text('{"binaryDir": "${sourceDir}"}')
    for preset in ("escape", "root"):
        done = built.run("clean", "--preset", preset, check=False,
                         env={"VLLM_DEV_PRESETS_DIR": str(templates)})
        assert_one_line_failure(done, "not inside the checkout")
    assert (built.root / "vllm" / "__init__.py").is_file()


def test_foreign_user_presets_survive_byte_for_byte(project: Project) -> None:
    user = project.root / "CMakeUserPresets.json"
    original = (b'{\n  "version": 6,\n  "configurePresets": [{"name": "mine", '
                b'"generator": "Ninja", "binaryDir": "${sourceDir}/build-mine"}]\n}\n')
    user.write_bytes(original)
    done = project.run("build", check=False)
    assert_one_line_failure(done, "not written by vllm-dev", "--merge", "--force")
    assert user.read_bytes() == original
    assert not project.build_dir.exists()
