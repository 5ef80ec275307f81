"""Affected-target builds on the real vLLM tree (CPU tier; see tests/real_vllm.py).

The clone's history: the tree as unpacked, then one commit of testbed adaptations (on gcc < 12.3
it lowers the gcc check in ``cmake/cpu_extension.cmake``). ``--since HEAD`` is therefore "the tree
as unpacked, as this machine can build it"; ``--since HEAD~1`` must see the ``cmake/`` change and
build everything. Never builds ``_C`` (427 oneDNN objects): ``fs_io_C`` is one file.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import Project

pytestmark = pytest.mark.real_vllm


def _timed(label: str, project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    done = project.run(*args)
    print(f"[affected-real] {label}: {time.monotonic() - start:.1f} s | "
          + " | ".join(ln for ln in done.stderr.splitlines()
                       if "target(s)" in ln or "build release" in ln), file=sys.stderr)
    return done


def test_fs_io_edit_first_build_compiles_fs_io_c_only(real_vllm: Project) -> None:
    p = real_vllm
    source = p.root / "csrc" / "fs_io.cpp"
    source.write_text(source.read_text() + '\nextern "C" __attribute__((visibility("default"))) '
                      "int vllm_dev_affected_probe(int x) { return x + 1; }\n")
    assert not p.build_dir.exists()
    done = _timed("first build, fs_io.cpp edited, --since HEAD", p, "build", "--plain",
                  "--since", "HEAD")
    compiled = [e for e in p.ninja_log_entries() if e.endswith(".o")]
    assert compiled == ["CMakeFiles/fs_io_C.dir/csrc/fs_io.cpp.o"], done.stderr
    assert "fs_io_C: csrc/fs_io.cpp" in done.stderr, done.stderr
    installed = sorted((p.root / "vllm").glob("fs_io_C.*so"))
    assert len(installed) == 1
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(installed[0])], check=True,
                             capture_output=True, text=True).stdout
    assert "vllm_dev_affected_probe" in symbols


def test_cpu_header_edit_dry_names_the_c_targets_only(real_vllm: Project) -> None:
    p = real_vllm
    p.run("prime")
    header = p.root / "csrc" / "cpu" / "cpu_types.hpp"
    header.write_text(header.read_text() + "\n// edited\n")
    done = _timed("--dry build, csrc/cpu/cpu_types.hpp edited (header scan)", p, "--dry",
                  "build", "--since", "HEAD")
    named = {ln.split(":")[1].strip() for ln in done.stderr.splitlines()
             if ln.startswith("vllm-dev:   ")} - {"why", "to narrow it"}  # the cost block's
    assert "_C" in named and named <= {"_C", "_C_AVX2", "_C_AVX512"}, done.stderr
    assert "cpu_types.hpp (included by csrc/cpu/" in done.stderr, done.stderr
    assert not [e for e in p.ninja_log_entries() if e.endswith(".o")] \
        if (p.build_dir / ".ninja_log").is_file() else True
    adapted = subprocess.run(["git", "-C", str(p.root), "diff", "--name-only", "HEAD~1", "HEAD"],
                             check=True, capture_output=True, text=True).stdout.split()
    if any(path.startswith("cmake/") for path in adapted):  # gcc < 12.3: the check was lowered
        whole = p.run("--dry", "build", "--since", "HEAD~1")
        assert "building every target: cmake/" in whole.stderr, whole.stderr
