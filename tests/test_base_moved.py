"""The checkout's base moved past W (a ``git pull``, a rebase): said at build time with both
commits, and ``vllm-dev setup`` with the new base's prebuilt kernels makes only the user's own
edits compile again.

The test project stands in for vLLM: two precompiled wheels built at two commits of upstream
main (W1, then W2, which changes one kernel file of ``_C``), a local ``upstream`` remote of
vllm-project/vllm whose ``main`` is W2 (never fetched: a remote-tracking ref set by hand), and
the user's branch with one edit of ``_fast_C``, first on W1, then rebased onto W2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_affected import commit_all, edit, git, targets_of

import minivllm_tools as mv
from conftest import BIN_DIR, make_project

pytestmark = pytest.mark.flow

FAST_EDIT = "CMakeFiles/_fast_C.dir/csrc/fast/module_fast.cpp.o"


def test_base_moved_then_setup_refreshes_and_only_the_users_edits_compile(tmp_path: Path
                                                                            ) -> None:
    project = make_project(tmp_path, setup=False)
    root = project.root
    (root / ".gitignore").write_text(
        ".venv/\ncmake-build-*/\n*.so\nCMakeUserPresets.json\n*.egg-info/\n")
    git(root, "init", "-q", "-b", "main")
    w1 = commit_all(root, "W1")

    def wheel_of(name: str) -> Path:
        return mv.build_precompiled_wheel(tmp_path / name, python=str(project.python),
                                          cmake=str(BIN_DIR / "cmake"), source=root,
                                          commit=git(root, "rev-parse", "HEAD"))

    wheel1 = wheel_of("wheel1")
    edit(root / "csrc/ops/add.cpp", "return a + b;", "return a + b + 100;")  # upstream's change
    w2 = commit_all(root, "W2: upstream changes a kernel of _C")
    wheel2 = wheel_of("wheel2")
    git(root, "remote", "add", "upstream", "https://github.com/vllm-project/vllm.git")
    git(root, "update-ref", "refs/remotes/upstream/main", w2)

    # The user's branch on W1, with prebuilt kernels of W1: only the user's edit compiles.
    git(root, "checkout", "-q", "-b", "mine", w1)
    edit(root / "csrc/fast/module_fast.cpp", "PyLong_FromLong(7)", "PyLong_FromLong(8)")
    commit_all(root, "my edit")
    project.run("setup", env={"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel1)})
    mark = project.ninja_log_mark()
    first = project.run("build")
    assert [o for o in project.ninja_log_entries(since=mark) if o.endswith(".o")] == \
        [FAST_EDIT], first.stderr
    assert "base moved" not in first.stderr

    # git pull --rebase: the base is now W2, W is still W1. The build says so with both commits
    # and compiles upstream's change too (the prebuilt _C is W1's).
    git(root, "rebase", "-q", "upstream/main")
    mark = project.ninja_log_mark()
    moved = project.run("build")
    line = (f"vllm-dev: the checkout's base moved since W: W is {w1[:12]}, the merge-base of "
            f"HEAD with upstream/main is {w2[:12]}, and 1 upstream kernel file(s) changed "
            f"between them; `vllm-dev setup` refreshes the prebuilt kernels for {w2[:12]}")
    assert line in moved.stderr.splitlines(), moved.stderr
    # (_fast_C's object too: the rebase rewrote its source; a compiler-cache hit)
    assert "_C" in targets_of([o for o in project.ninja_log_entries(since=mark)
                               if o.endswith(".o")]), moved.stderr
    assert project.value("_C") == 42  # built here, for the new base

    # The refresh: the new base's prebuilt kernels; the build dir forgets what setup replaced.
    refreshed = project.run("setup", env={"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel2)})
    assert (f"setup: the prebuilt kernels in vllm/ are now W {w2[:12]}'s (were W {w1[:12]}'s): "
            f"cmake-build-release builds only what changes since {w2[:12]} reach; its installs "
            "of _C, _fast_C were replaced and are not put back") in refreshed.stderr, \
        refreshed.stderr
    assert project.value("_C") == 1  # W2's prebuilt kernels
    mark = project.ninja_log_mark()
    after = project.run("build")
    assert "base moved" not in after.stderr, after.stderr
    assert "1 of 2 target(s) affected" in after.stderr and f"since {w2[:12]}" in after.stderr
    assert [o for o in project.ninja_log_entries(since=mark) if o.endswith(".o")] == []
    assert project.value("_fast_C") == 8  # the user's edit, installed again
    assert project.value("_C") == 1  # W2's prebuilt _C: the one built for W1's base not put back
    verified = project.run("verify").stdout.splitlines()
    assert f"vllm._C: ok (prebuilt from the wheel at W {w2[:12]})" in verified, verified
    assert "vllm._fast_C: ok (built here and installed)" in verified, verified

    # In a build dir that built nothing else, the objects compiled are exactly the user's edits.
    project.run("clean")
    mark = project.ninja_log_mark()
    fresh = project.run("build")
    assert [o for o in project.ninja_log_entries(since=mark) if o.endswith(".o")] == \
        [FAST_EDIT], fresh.stderr
    assert project.value("_fast_C") == 8 and project.value("_C") == 1
