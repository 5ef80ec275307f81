"""Why a configured build dir is configured again: reasons as data, decided before cmake runs
(the flows behind them, with real cmake, are in test_stale_config.py, test_checkout_presets.py and
test_remembered.py). Each line names only real changes, ``name: before -> after``.
"""

from __future__ import annotations

import json

import pytest

from vllm_dev.steps.prime import (
    PENDING_KEY,
    ReasonKind,
    ReconfigureReason,
    decide,
    derived,
)

pytestmark = pytest.mark.unit


def preset(environment: dict[str, str] | None = None, **variables: str) -> str:
    """A preset fingerprint whose cache variables are ``variables`` (what configure records)."""
    part: dict[str, object] = {"name": "release", "cacheVariables": variables}
    if environment:
        part["environment"] = environment
    return json.dumps([part])


OLD = {"preset": preset(CMAKE_BUILD_TYPE="Release"), "python": "/v/bin/python",
       "cmake": "/v/bin/cmake 3.31.0", "torch": "2.13.0", "nvcc": "none", "arch": "none"}


def test_nothing_changed_means_no_configure() -> None:
    decision = decide(OLD, dict(OLD), configured_before=True, requested=False)
    assert (decision.needed, decision.reasons, decision.line("release")) == (False, (), None)


def test_a_first_configure_has_no_reasons_to_print() -> None:
    decision = decide({}, OLD, configured_before=False, requested=False)
    assert decision.needed and decision.first and not decision.fresh
    assert decision.line("release") is None


@pytest.mark.parametrize(("key", "why"), [("python", "a new interpreter"),
                                          ("torch", "a new torch"), ("cmake", "a new cmake"),
                                          ("nvcc", "a new nvcc"), ("arch", None)])
def test_cached_inputs_need_a_fresh_cache_others_a_plain_rerun(key: str, why: str | None
                                                                ) -> None:
    new = {**OLD, key: OLD[key] + "-new"}
    decision = decide(OLD, new, configured_before=True, requested=False)
    assert decision.needed and decision.fresh is (why is not None)
    assert decision.reasons == (ReconfigureReason(ReasonKind.CHANGED, key, OLD[key], new[key]),)
    line = decision.line("release", built_objects=7)
    if why:  # which change needs it, and how many built objects it puts at stake, first
        assert line == (f"reconfiguring release with a fresh CMake cache ({why}; the build dir "
                        f"holds 7 built object(s), which may recompile): {key}: {OLD[key]} -> "
                        f"{new[key]}")
    else:
        assert line == f"reconfiguring release: {key}: {OLD[key]} -> {new[key]}"


def test_a_cache_variable_the_preset_no_longer_sets_is_undefined_not_fresh() -> None:
    old = {**OLD, "preset": preset(CMAKE_BUILD_TYPE="Release", VLLM_X="1")}
    decision = decide(old, dict(OLD), configured_before=True, requested=False)
    assert decision.needed and not decision.fresh
    assert decision.undefine == ("VLLM_X",)
    assert decision.line("release") == ("reconfiguring release: VLLM_X: 1 -> unset "
                                        "(cmake -U VLLM_X, the cache is kept)")


@pytest.mark.parametrize("name", ["CMAKE_CUDA_COMPILER", "Torch_DIR", "CUDA_ROOT",
                                  "FETCHCONTENT_SOURCE_DIR_ONEDNN"])
def test_dropping_a_name_cmake_derives_entries_from_needs_a_fresh_cache(name: str) -> None:
    assert derived(name)
    old = {**OLD, "preset": preset(CMAKE_BUILD_TYPE="Release", **{name: "/x"})}
    decision = decide(old, dict(OLD), configured_before=True, requested=False)
    assert decision.fresh and decision.undefine == ()
    line = decision.line("release", built_objects=3)
    assert line is not None and line.startswith(
        f"reconfiguring release with a fresh CMake cache ({name} no longer set, and CMake "
        "would keep what it derived from it; the build dir holds 3 built object(s)")
    assert line.endswith(f"): {name}: /x -> unset")


def test_plain_names_are_not_derived() -> None:
    assert not any(derived(n) for n in ("VLLM_X", "CMAKE_BUILD_TYPE", "MY_DIRECTORY",
                                        "CMAKE_CXX_COMPILER_LAUNCHER", "NVCC_THREADS"))


def test_undefine_of_a_name_in_the_cache_reconfigures_with_minus_u() -> None:
    decision = decide(OLD, dict(OLD), configured_before=True, requested=False,
                      undefine=["MINE"])
    assert decision.needed and not decision.fresh and decision.undefine == ("MINE",)
    assert decision.line("release") == ("reconfiguring release: -U MINE (cmake -U MINE, the "
                                        "cache is kept)")


def test_paths_spelled_differently_are_no_change() -> None:
    """The issue's false line: keys whose value is the same after normalising paths."""
    old = {**OLD, "python": "/v/./bin//python", "cmake": "/v/bin/../bin/cmake 3.31.0",
           "preset": preset(CMAKE_INSTALL_PREFIX="${sourceDir}/./", X="/a/b/")}
    new = {**OLD, "preset": preset(CMAKE_INSTALL_PREFIX="${sourceDir}", X="/a/b")}
    decision = decide(old, new, configured_before=True, requested=False)
    assert (decision.needed, decision.reasons) == (False, ())


def test_only_real_changes_are_named_and_alike_ones_together() -> None:
    old = {**OLD, "preset": preset(
        {"CCACHE_DEPEND": "true", "TORCH_CUDA_ARCH_LIST": "8.0"},
        CMAKE_C_COMPILER_LAUNCHER="/old/ccache", CMAKE_CXX_COMPILER_LAUNCHER="/old/ccache",
        CMAKE_BUILD_TYPE="Release")}
    new = {**OLD, "preset": preset(
        {"TORCH_CUDA_ARCH_LIST": "8.0"},
        CMAKE_C_COMPILER_LAUNCHER="${sourceDir}/.vllm-dev/compiler-launcher",
        CMAKE_CXX_COMPILER_LAUNCHER="${sourceDir}/.vllm-dev/compiler-launcher",
        CMAKE_BUILD_TYPE="Release")}
    decision = decide(old, new, configured_before=True, requested=False)
    assert decision.needed and not decision.fresh and decision.undefine == ()
    # This is the line of a build dir an older vllm-dev configured (its presets named ccache
    # by absolute path and held ccache's variables): one plain reconfigure, no --fresh.
    assert decision.line("release") == (
        "reconfiguring release: CMAKE_CXX_COMPILER_LAUNCHER, CMAKE_C_COMPILER_LAUNCHER: "
        "/old/ccache -> ${sourceDir}/.vllm-dev/compiler-launcher; environment CCACHE_DEPEND: "
        "true -> unset (once, after upgrading vllm-dev: the presets now name one compiler "
        "launcher for every install and keep the cache's variables in the build presets; each "
        "object recompiles once, through the compiler cache)")


def test_an_unfinished_configure_is_redone_first() -> None:
    old = {**OLD, PENDING_KEY: "unfinished"}
    decision = decide(old, dict(OLD), configured_before=True, requested=False)
    assert decision.needed and not decision.fresh
    assert decision.line("release") == "reconfiguring release: the last configure did not finish"


def test_names_a_failed_configure_set_are_undefined_with_the_redo() -> None:
    old = {**OLD, PENDING_KEY: "unfinished",
           "preset attempted": preset(CMAKE_BUILD_TYPE="Release", TRIED="1")}
    decision = decide(old, dict(OLD), configured_before=True, requested=False)
    assert decision.needed and not decision.fresh and decision.undefine == ("TRIED",)


def test_reconfigure_on_request_says_nothing_and_keeps_the_cache() -> None:
    decision = decide(OLD, dict(OLD), configured_before=True, requested=True)
    assert decision.needed and not decision.fresh
    assert [r.kind for r in decision.reasons] == [ReasonKind.REQUESTED]
    assert decision.line("release") is None
