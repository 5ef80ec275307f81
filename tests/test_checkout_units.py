"""Plumbing of the checkout-facing settings: compiler minimums read from CMake text in vLLM's
shapes, --define parsing from every source, installer arguments and the editable install's
environment, broken templates set aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.planning.workspace import Workspace
from vllm_dev.presets.render import PresetInputs, load_template_set, render
from vllm_dev.process.runner import SubprocessRunner
from vllm_dev.steps.setup import editable_step, installer_args
from vllm_dev.toolchain.compiler_minimums import find_minimums, gcc_minimum

pytestmark = pytest.mark.unit

REPO = Path(__file__).parents[1]

# The three shapes vLLM 0.33.0 uses (a version for every device, one for CUDA only, and the x86
# CPU backend's negated test inside its x86 branch), plus a flag for new compilers that is no
# minimum at all.
TOP = """
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS "11.3")
  message(FATAL_ERROR "GCC >= 11.3 is required")
endif()
if (VLLM_GPU_LANG STREQUAL "CUDA"
    AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU"
    AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS "13")
  message(FATAL_ERROR "GCC >= 13 is required to build with CUDA")
endif()
"""
CPU = """
if (CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64" OR ENABLE_X86_ISA)
    if (NOT (CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND
            CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12.3))
        message(FATAL_ERROR "X86 backend requires gcc/g++ >= 12.3")
    endif()
    if (CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND
        CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 15)
        list(APPEND CXX_COMPILE_FLAGS "-fno-tree-pre")
    endif()
endif()
"""


def test_gcc_minimums_come_from_the_checkout(tmp_path: Path) -> None:
    (tmp_path / "cmake").mkdir()
    (tmp_path / "CMakeLists.txt").write_text(TOP)
    (tmp_path / "cmake" / "cpu_extension.cmake").write_text(CPU)
    found = {(m.version, m.device) for m in find_minimums(tmp_path)}
    assert found == {((11, 3), None), ((13,), "cuda"), ((12, 3), "cpu")}
    cpu = gcc_minimum(tmp_path, "cpu", x86=True)
    assert cpu is not None and cpu.version == (12, 3)
    assert cpu.where == "cmake/cpu_extension.cmake:3"
    assert gcc_minimum(tmp_path, "cuda", x86=True).version == (13,)  # type: ignore[union-attr]
    assert gcc_minimum(tmp_path, "cpu", x86=False).version == (11, 3)  # type: ignore[union-attr]
    # an older tree: only the common minimum
    (tmp_path / "cmake" / "cpu_extension.cmake").unlink()
    (tmp_path / "CMakeLists.txt").write_text(TOP.split("if (VLLM_GPU_LANG")[0])
    assert gcc_minimum(tmp_path, "cuda", x86=True).version == (11, 3)  # type: ignore[union-attr]


@pytest.mark.parametrize("flags, environ, config, expected", [
    ({"defines": ["A=1", "B:BOOL=ON", "A=2"]}, {}, {}, ("A=2", "B:BOOL=ON")),
    ({}, {"VLLM_DEV_DEFINES": 'A=1 "CMAKE_CXX_FLAGS=-O2 -g"'}, {},
     ("A=1", "CMAKE_CXX_FLAGS=-O2 -g")),
    ({}, {}, {"defines": {"A": True, "B": "x"}}, ("A=ON", "B=x")),
    ({}, {}, {"defines": ["A=1"]}, ("A=1",)),
])
def test_defines_from_every_source(flags: dict, environ: dict, config: dict,
                                   expected: tuple[str, ...]) -> None:
    assert Settings.resolve(flags=flags, environ=environ, config=config).defines == expected


@pytest.mark.parametrize("value, message", [
    (["X"], "--define: 'X' is not NAME=VALUE"),
    (["1X=2"], "is not NAME=VALUE"),
    (["A:NUMBER=1"], "TYPE one of BOOL"),
    (["VLLM_PYTHON_EXECUTABLE=/x"], "set by vllm-dev itself; use --python"),
])
def test_bad_defines_are_one_line(value: list[str], message: str) -> None:
    with pytest.raises(VllmDevError, match=message.replace("(", r"\(")):
        Settings.resolve(flags={"defines": value}, environ={})
    with pytest.raises(VllmDevError, match="config vllm_dev.defines must be a list"):
        Settings.resolve(flags={}, environ={}, config={"defines": 5})


def test_defines_win_over_templates_in_every_preset() -> None:
    found = load_template_set([REPO / "presets"])
    document = render(found.templates, PresetInputs(
        python="/p", device="cpu", jobs=2, nvcc_threads=1,
        defines={"CMAKE_BUILD_TYPE": "MinSizeRel", "X": {"type": "BOOL", "value": "ON"}}))
    for preset in document["configurePresets"][1:]:
        assert preset["cacheVariables"]["CMAKE_BUILD_TYPE"] == "MinSizeRel"
        assert preset["cacheVariables"]["X"] == {"type": "BOOL", "value": "ON"}


def test_a_broken_template_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[1]")
    (tmp_path / "release.json").write_text(json.dumps({"buildType": "RelWithDebInfo"}))
    found = load_template_set([REPO / "presets", tmp_path])
    assert sorted(found.templates) == ["debug", "release"]
    assert found.templates["release"].build_type == "RelWithDebInfo"  # the user's replaces
    assert list(found.broken) == ["bad"] and "must be a JSON object" in found.broken["bad"]


def test_installer_arguments() -> None:
    assert installer_args(()) == ("--torch-backend=auto",)
    assert installer_args(("--no-build-isolation",)) == ("--torch-backend=auto",
                                                         "--no-build-isolation")
    for takes_over in (("--offline",), ("--torch-backend=cpu",), ("--index-url", "http://m/"),
                       ("--no-index", "--find-links", "/w")):
        assert installer_args(takes_over) == takes_over


def test_editable_install_gets_the_device(tmp_path: Path) -> None:
    ws = Workspace(settings=Settings(device="cpu", source=str(REPO / "tests" / "minivllm")),
                   runner=SubprocessRunner(dry=True), environ={
                       "VLLM_PRECOMPILED_WHEEL_LOCATION": "/w/vllm-1+cpu.whl"}, cwd=tmp_path)
    step = editable_step(ws)
    assert step.env == {"VLLM_USE_PRECOMPILED": "1", "VLLM_TARGET_DEVICE": "cpu",
                        "VLLM_PRECOMPILED_WHEEL_LOCATION": "/w/vllm-1+cpu.whl"}
