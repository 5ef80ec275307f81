"""Why a configured build dir is configured again: reasons as data, decided before cmake runs
(the flows behind them, with real cmake, are in test_stale_config.py and test_checkout_presets.py).
"""

from __future__ import annotations

import json

import pytest

from vllm_dev.steps.prime import (
    PENDING_KEY,
    ReasonKind,
    ReconfigureReason,
    decide,
)

pytestmark = pytest.mark.unit


def preset(**variables: str) -> str:
    """A preset fingerprint whose cache variables are ``variables`` (what configure records)."""
    return json.dumps([{"name": "release", "cacheVariables": variables}])


OLD = {"preset": preset(CMAKE_BUILD_TYPE="Release"), "python": "/v/bin/python",
       "cmake": "/v/bin/cmake 3.31.0", "torch": "2.13.0", "nvcc": "none", "arch": "none"}


def test_nothing_changed_means_no_configure() -> None:
    decision = decide(OLD, dict(OLD), configured_before=True, requested=False)
    assert (decision.needed, decision.reasons, decision.line("release")) == (False, (), None)


def test_a_first_configure_has_no_reasons_to_print() -> None:
    decision = decide({}, OLD, configured_before=False, requested=False)
    assert decision.needed and decision.first and not decision.fresh
    assert decision.line("release") is None


@pytest.mark.parametrize(("key", "fresh"), [("python", True), ("torch", True), ("cmake", True),
                                            ("nvcc", True), ("arch", False)])
def test_cached_inputs_need_a_fresh_cache_others_a_plain_rerun(key: str, fresh: bool) -> None:
    new = {**OLD, key: OLD[key] + "-new"}
    decision = decide(OLD, new, configured_before=True, requested=False)
    assert decision.needed and decision.fresh is fresh
    assert decision.reasons == (ReconfigureReason(ReasonKind.CHANGED, key, OLD[key], new[key]),)
    line = decision.line("release")
    assert line == (f"reconfiguring release: {key} changed ({OLD[key]} -> {new[key]})"
                    + (" (fresh CMake cache)" if fresh else ""))


def test_a_cache_variable_the_preset_no_longer_sets_makes_it_fresh() -> None:
    new = {**OLD, "preset": preset()}
    decision = decide(OLD, new, configured_before=True, requested=False)
    kinds = [r.kind for r in decision.reasons]
    assert kinds == [ReasonKind.CHANGED, ReasonKind.REMOVED] and decision.fresh
    assert decision.line("release") == ("reconfiguring release: preset changed (fresh CMake "
                                        "cache; CMAKE_BUILD_TYPE no longer set)")


def test_an_unfinished_configure_is_redone_first() -> None:
    old = {**OLD, PENDING_KEY: "unfinished"}
    decision = decide(old, dict(OLD), configured_before=True, requested=False)
    assert decision.needed and not decision.fresh
    assert decision.line("release") == "reconfiguring release: the last configure did not finish"


def test_reconfigure_on_request_says_nothing_and_keeps_the_cache() -> None:
    decision = decide(OLD, dict(OLD), configured_before=True, requested=True)
    assert decision.needed and not decision.fresh
    assert [r.kind for r in decision.reasons] == [ReasonKind.REQUESTED]
    assert decision.line("release") is None
