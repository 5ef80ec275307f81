"""`vllm-dev test` on the real vLLM 0.33.0 tree (CPU target), and its picker on vLLM's own kernel
tests (the 0.11.0 `tests/kernels/` archive of the testbeds, unpacked into the tree).

The picker needs the symbols of a changed unit's object. `_C` is about 47 minutes cold on 2 cores
(its 427 oneDNN objects), so the picker test compiles just the one object it reads, through
ninja's own object target (`cmake --build --preset release --target
CMakeFiles/_C.dir/csrc/cpu/layernorm.cpp.o`: one compile, about 30 s here), and asks the picker
about that unit. The loop itself runs on `fs_io_C` (one file, no oneDNN object): a test file
that calls the built extension, an edit that breaks it, a compile error, and the watch mode.
"""

from __future__ import annotations

import re
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from test_testloop import SUMMARY_RE, Output

import real_vllm as rv
from conftest import VLLM_DEV, Project, RealTree, clean_env

pytestmark = pytest.mark.real_vllm

KERNEL_TESTS_GLOB = "vllm-*-tests-kernels.tar.xz"  # beside the tier's vLLM archive
LAYERNORM_OBJECT = "CMakeFiles/_C.dir/csrc/cpu/layernorm.cpp.o"
FS_IO_OBJECT = "CMakeFiles/fs_io_C.dir/csrc/fs_io.cpp.o"

# A kernel test of fs_io_C as vLLM's tests would be: torch first, then the installed extension,
# loaded as `import vllm.fs_io_C` would load it but without running vllm/__init__.py (the tier's
# venv lacks vLLM's runtime requirements).
FS_IO_TEST = '''\
import importlib.util
from pathlib import Path

import torch  # noqa: F401  (vLLM's extensions link torch's libraries)

ROOT = Path(__file__).resolve().parents[2]


def fs_io():
    path = next((ROOT / "vllm").glob("fs_io_C.*so"))
    spec = importlib.util.spec_from_file_location("vllm.fs_io_C", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batch_lookup(tmp_path):
    (tmp_path / "there").write_bytes(b"block")
    found = fs_io().batch_lookup([str(tmp_path / "there"), str(tmp_path / "missing")])
    assert found == [True, False]
'''
LOOKUP = "exists_flags[i] = (access(paths[i], F_OK) == 0) ? 1 : 0;"
BROKEN = "exists_flags[i] = (access(paths[i], F_OK) == 0) ? 0 : 1;"
UNCOMPILABLE = LOOKUP + " missing_name_42"


@pytest.fixture(scope="module")
def with_pytest(real_tree: RealTree) -> RealTree:
    """pytest in the tier's shared target venv (what `vllm-dev setup --tests` would install:
    the tree's requirements/test/cpu.txt pins torch==2.14.0+cpu, on no registry here)."""
    subprocess.run([rv._uv(), "pip", "install", "-q", "-p", str(real_tree.python), "pytest"],
                   check=True, capture_output=True)
    return real_tree


def kernel_tests() -> Path:
    """vLLM's own tests/kernels archive, found beside the tier's vLLM archive (or checkout)."""
    source = rv.RealSource.from_env()
    assert source is not None
    found = sorted(source.vllm.parent.glob(KERNEL_TESTS_GLOB))
    if not found:
        pytest.fail(f"no {KERNEL_TESTS_GLOB} beside {source.vllm} (vLLM's own tests/kernels, "
                    "from the testbeds)")
    return found[-1]


def test_the_picker_on_vllms_own_kernel_tests(real_vllm: Project) -> None:
    from vllm_dev.kerneltests.picker import Picker, test_files

    p = real_vllm
    with tarfile.open(kernel_tests()) as archive:
        archive.extractall(p.root, filter="tar")
    assert (p.root / "tests" / "kernels" / "core" / "test_layernorm.py").is_file()
    p.run("prime")
    for obj in (LAYERNORM_OBJECT, FS_IO_OBJECT):  # one compile each, nothing else
        mark = p.ninja_log_mark()
        built = subprocess.run([str(p.python.parent / "cmake"), "--build", "--preset", "release",
                                "--target", obj], cwd=p.root, env=clean_env(p.env),
                               capture_output=True, text=True, check=False)
        assert built.returncode == 0, built.stdout + built.stderr
        assert [e for e in p.ninja_log_entries(since=mark) if e.endswith(".o")] in ([obj], [])
        assert (p.build_dir / obj).is_file()

    picker = Picker(p.root, p.build_dir)
    pick = picker.pick(["csrc/cpu/layernorm.cpp"], where="in the edit")
    print("\n".join(pick.lines()))
    assert {"rms_norm", "fused_add_rms_norm"} <= set(pick.ops)
    assert pick.bindings == ["csrc/cpu/torch_bindings.cpp"]
    assert "tests/kernels/core/test_layernorm.py" in pick.tests
    # Every file under tests/kernels/ that names one of these ops as an op call is picked, and
    # nothing else: checked against a plain search of the files.
    calls = re.compile(r"(?:torch\.ops\.\w+|\bops)\.(rms_norm|fused_add_rms_norm)\b")
    expected = {str(f.relative_to(p.root)) for f in test_files(p.root)
                if calls.search(f.read_text(errors="replace"))}
    assert set(pick.tests) == expected
    assert pick.lines()[0].startswith("picked ")

    # A header: the units that include it (ninja's deps record of the object just compiled).
    through = picker.pick(["csrc/cpu/cpu_types.hpp"])
    assert "tests/kernels/core/test_layernorm.py" in through.tests
    assert through.units[0].because == "csrc/cpu/cpu_types.hpp"

    # A file that defines no op: none picked, and said.
    none = picker.pick(["csrc/fs_io.cpp"], where="in the edit")
    assert none.tests == {} and none.ops == []
    lines = none.lines()
    print("\n".join(lines))
    assert lines[0].startswith("no test picked: the translation unit(s) changed in the edit "
                               "define no op registered")
    assert "  csrc/fs_io.cpp defines no registered op" in lines


def test_test_then_watch_on_the_real_tree(real_vllm: Project, with_pytest: RealTree) -> None:
    p = real_vllm
    source = p.root / "csrc" / "fs_io.cpp"
    test = p.root / "tests" / "kernels" / "test_fs_io.py"
    test.parent.mkdir(parents=True)
    test.write_text(FS_IO_TEST)

    # It passes: configure, one compile, one install, the test.
    done = p.run("test", "--target", "fs_io_C", "--", "tests/kernels/test_fs_io.py")
    found = SUMMARY_RE.findall(done.stderr)
    assert found and tuple(map(int, found[-1])) == (1, 1, 1, 0, 0), done.stderr

    # An edit that breaks it: the test's failure shown, exit 1.
    source.write_text(source.read_text().replace(LOOKUP, BROKEN))
    done = p.run("test", "--target", "fs_io_C", check=False)  # the selection is remembered
    assert done.returncode == 1
    assert "assert [False, True] == [True, False]" in done.stdout
    assert "reusing the test selection remembered" in done.stderr

    # A compile error: shown, no test run.
    source.write_text(source.read_text().replace(BROKEN, UNCOMPILABLE))
    done = p.run("test", "--target", "fs_io_C", check=False)
    assert done.returncode == 1
    assert "missing_name_42" in done.stdout + done.stderr
    assert "test session starts" not in done.stdout
    assert "build FAILED" in done.stderr and "no test run" in done.stderr

    # Watch: the first cycle (still the compile error), then two edits, then Ctrl-C.
    started = time.monotonic()
    proc = subprocess.Popen(
        [VLLM_DEV, "test", "--target", "fs_io_C", "--watch", "--plain"], cwd=p.root, text=True,
        env=clean_env(p.env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out = Output(proc)
    try:
        line = out.wait_for(r"\] start: test: build FAILED")
        assert "waiting for the next save" in line
        source.write_text(source.read_text().replace(UNCOMPILABLE, LOOKUP))
        line = out.wait_for(r"\] csrc/fs_io.cpp: test: ")
        assert "1 object(s) compiled" in line and "1 passed, 0 failed, 0 skipped" in line, line
        source.write_text(source.read_text().replace(LOOKUP, BROKEN))
        line = out.wait_for(r"\] csrc/fs_io.cpp: test: ")
        assert "0 passed, 1 failed" in line, line
        # torch's headers and the build dir are no inputs the watcher follows
        assert re.search(r"watching [1-9]\d? file\(s\)", line), line
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    out.drain(0.5)
    assert not any("Traceback" in seen for seen in out.seen), "".join(out.seen)
    assert time.monotonic() - started < 300
