"""The pieces of the affected-target selection that need no build: what a wheel says about its
commit, how a compile command becomes a dependency scan, git's view of what changed."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from vllm_dev.checkout import affected, header_scan, precompiled
from vllm_dev.toolchain.interpreter import meets

pytestmark = pytest.mark.unit

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True, env=GIT_ENV).stdout.strip()


def repo(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "repo"
    (root / "csrc").mkdir(parents=True)
    (root / "csrc" / "a.cpp").write_text("int a;\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "W")
    return root, git(root, "rev-parse", "HEAD")


def wheel(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def test_wheel_commit_from_version_py_and_torch_pin(tmp_path: Path) -> None:
    """The torch pin is the one that applies here (not an extra's)."""
    root, w = repo(tmp_path)
    path = wheel(tmp_path / "vllm-0.33.0-cp38-abi3-manylinux1_x86_64.whl", {
        "vllm/_version.py": f"__version__ = version = '0.33.0'\n"
                            f"__commit_id__ = commit_id = 'g{w[:9]}'\n",
        "vllm-0.33.0.dist-info/METADATA": "Name: vllm\nVersion: 0.33.0\n"
                                          "Requires-Dist: torch>=2; extra == 'bench'\n"
                                          "Requires-Dist: torch==2.14.0\n"
                                          "Requires-Dist: numpy\n",
    })
    facts = precompiled.read_wheel(str(path))
    assert (facts.commit_hint, facts.torch, facts.version) == (w[:9], "==2.14.0", "0.33.0")
    base = precompiled.from_wheel(root, facts)
    assert base.commit == w and base.torch == "==2.14.0"


def test_nightly_version_names_the_commit_and_unknown_commits_say_so(tmp_path: Path) -> None:
    root, w = repo(tmp_path)
    facts = precompiled.read_wheel(
        f"https://wheels.vllm.ai/x/vllm-0.11.2.dev278%2Bg{w[:9]}-cp38-abi3-manylinux1_x86_64.whl")
    assert facts.commit_hint == w[:9]
    assert precompiled.from_wheel(root, facts).commit == w
    gone = precompiled.from_wheel(root, precompiled.WheelFacts("x.whl", "1", "deadbeef1"))
    assert gone.commit is None and "not in the local git history" in gone.problem


def test_environment_commit_must_be_40_hex_and_known(tmp_path: Path) -> None:
    root, w = repo(tmp_path)
    env = precompiled.from_environment
    assert env(root, {"VLLM_PRECOMPILED_WHEEL_COMMIT": w.upper()}).commit == w  # type: ignore
    nightly = env(root, {"VLLM_PRECOMPILED_WHEEL_COMMIT": "nightly"})
    assert nightly is not None and nightly.commit is None and "40-digit" in nightly.problem
    assert env(root, {}) is None


def test_merge_base_with_a_local_upstream_main(tmp_path: Path) -> None:
    root, w = repo(tmp_path)
    git(root, "remote", "add", "upstream", "https://github.com/vllm-project/vllm.git")
    git(root, "update-ref", "refs/remotes/upstream/main", w)
    git(root, "checkout", "-qb", "mine")
    (root / "csrc" / "b.cpp").write_text("int b;\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "mine")
    base = precompiled.find_base(root, root / ".vllm-dev", {})
    assert base.commit == w and "upstream/main" in base.origin


def test_changed_files_cover_every_kind_and_skip_build_dirs_and_venvs(tmp_path: Path) -> None:
    root, w = repo(tmp_path)
    (root / "csrc" / "a.cpp").write_text("int a2;\n")  # unstaged
    (root / "csrc" / "new.h").write_text("// new\n")  # untracked
    (root / "csrc" / "deep").mkdir()
    (root / "csrc" / "deep" / "x.cuh").write_text("// new dir\n")  # untracked dir
    build = root / "cmake-build-release"
    build.mkdir()
    (build / "CMakeCache.txt").write_text("")
    (build / "junk.h").write_text("")
    (root / ".venv").mkdir()
    (root / ".venv" / "pyvenv.cfg").write_text("")
    (root / ".venv" / "lib.h").write_text("")
    (root / ".deps" / "onednn-src").mkdir(parents=True)  # vLLM's FETCHCONTENT_BASE_DIR
    (root / ".deps" / "onednn-src" / "dnnl.h").write_text("")
    assert affected.changed_files(root, w, skip=[build]) == [
        "csrc/a.cpp", "csrc/deep/x.cuh", "csrc/new.h"]


def test_scan_command_and_make_rule() -> None:
    argv = ["/usr/bin/c++", "-DX", "-Iinc", "-MD", "-MT", "o.o", "-MF", "o.d", "-o", "o.o", "-c",
            "/s/a.cpp"]
    assert header_scan.scan_command(argv) == ["/usr/bin/c++", "-DX", "-Iinc", "/s/a.cpp", "-M",
                                              "-MG"]
    nvcc = ["/usr/local/bin/nvcc", "-x", "cu", "-c", "/s/k.cu", "-o", "k.o"]
    assert header_scan.scan_command(nvcc) == ["/usr/local/bin/nvcc", "-x", "cu", "/s/k.cu", "-M"]
    rule = "k.o : /s/k.cu \\\n    /s/dir\\ with\\ space/h.h \\\n    rel/g.h\n"
    assert header_scan.parse_make_rule(rule, "/b") == ["/s/k.cu", "/s/dir with space/h.h",
                                                       "/b/rel/g.h"]


def test_torch_pin_matches_local_versions() -> None:
    assert meets("==2.13.0", "2.13.0+cpu")
    assert not meets("==2.14.0", "2.13.0+cpu")
    assert not meets("==2.14.0+cpu", "2.14.0+cu130")  # a local label the pin names must match
    assert meets(">=2.13", "2.14.0.dev20260101+cpu")  # a nightly torch is a version like any
    assert meets("not a specifier", "2.13.0")  # unreadable: no evidence of a mismatch
