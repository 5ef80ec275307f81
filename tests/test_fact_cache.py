"""Remembered probe answers: reused while their files are unchanged, dropped when one changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vllm_dev.process.runner import SubprocessRunner
from vllm_dev.toolchain.fact_cache import FactCache, cached_version, site_dirs

pytestmark = pytest.mark.unit


def test_answer_reused_until_a_file_changes(tmp_path: Path) -> None:
    watched = tmp_path / "tool"
    watched.write_text("v1")
    cache = FactCache(tmp_path / "state" / "fact-cache.json")
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert cache.memo("k", [watched], compute) == 1
    again = FactCache(tmp_path / "state" / "fact-cache.json")  # a later vllm-dev run
    assert again.memo("k", [watched], compute) == 1 and len(calls) == 1
    watched.write_text("v2, longer")  # replaced tool: new size and mtime
    assert again.memo("k", [watched], compute) == 2


def test_a_new_distribution_in_site_packages_invalidates(tmp_path: Path) -> None:
    prefix = tmp_path / "venv"
    site = prefix / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    assert site_dirs(str(prefix)) == [str(site)]
    cache = FactCache(tmp_path / "c.json")
    cache.put("probe", {"torch": None}, [site])
    assert cache.get("probe") == {"torch": None}
    before = os.stat(site).st_mtime_ns
    (site / "torch-2.14.0.dist-info").mkdir()
    os.utime(site, ns=(before + 10**9, before + 10**9))  # coarse clocks: make the change visible
    assert cache.get("probe") is None


def test_dry_cache_never_writes_and_corrupt_file_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "fact-cache.json"
    watched = tmp_path / "watched"
    watched.write_text("x")
    dry = FactCache(path, writable=False)
    dry.put("k", 1, [watched])
    assert not path.exists()
    path.write_text("{not json")
    cache = FactCache(path)
    assert cache.get("k") is None  # set aside, not fatal
    cache.put("k", 2, [watched])
    assert FactCache(path).get("k") == 2


def test_cmake_version_remembered_per_executable(tmp_path: Path) -> None:
    script = tmp_path / "cmake"
    script.write_text("#!/bin/sh\necho 'cmake version 3.31.2'\n")
    script.chmod(0o755)
    cache = FactCache(tmp_path / "c.json")
    runner = SubprocessRunner()
    assert cached_version(cache, script, runner=runner) == (3, 31, 2)
    script.write_text("#!/bin/sh\necho 'cmake version 4.0.1'\n")
    assert cached_version(cache, script, runner=runner) == (4, 0, 1)
