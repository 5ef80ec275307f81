"""Every collected test carries exactly one tier marker (pyproject.toml lists the tiers), so
``-m unit``, ``-m flow``, ... split the suite without gaps or overlaps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import conftest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).parent
# Collect the whole suite in a child (this run may have collected one file only) and print what
# the conftest hook found: the tiers per test and the tests without exactly one.
_COLLECT = """
import json, sys, pytest
rc = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", sys.argv[1]])
conftest = sys.modules["conftest"]
print("TIERS=" + json.dumps({"rc": int(rc), "problems": conftest.TIER_PROBLEMS,
                             "count": conftest.TIER_COUNTS}))
"""


def test_every_test_has_exactly_one_tier() -> None:
    done = subprocess.run([sys.executable, "-c", _COLLECT, str(TESTS)], cwd=TESTS.parent,
                          capture_output=True, text=True, timeout=300, check=False)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("TIERS="))
    found = json.loads(line.removeprefix("TIERS="))
    assert found["rc"] == 0, done.stdout[-2000:]
    assert found["problems"] == []
    assert sum(found["count"].values()) > 300  # the whole suite was seen
    assert found["count"].get("unit", 0) > 100 and found["count"].get("flow", 0) > 50


def test_the_tiers_are_declared(pytestconfig: pytest.Config) -> None:
    declared = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert set(conftest.TIERS) <= declared
