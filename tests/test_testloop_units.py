"""The pieces of `vllm-dev test`: the pytest argument split, the remembered selection, the
picker's readers (symbols, registrations, test files; one real gcc-compiled object), the JUnit
counts, the watch decision and the foreground run's Ctrl-C handling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vllm_dev.checkout.tree import Checkout
from vllm_dev.commands.testloop.pause import WholeBuild, pause_lines
from vllm_dev.commands.testloop.watchset import WatchSet
from vllm_dev.kerneltests import pytest_args, remembered
from vllm_dev.kerneltests.picker import (
    Picker,
    calls_in,
    defined_functions,
    function_name,
    matches,
    registrations,
)
from vllm_dev.kerneltests.pytest_run import NOTHING_TESTED, TestOutcome, pytest_argv, read_junit

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parent.parent / "src"


# --- the arguments after -- ---------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "selection", "rest"), [
    (["tests/kernels/core/test_layernorm.py", "-v"], ["tests/kernels/core/test_layernorm.py"],
     ["-v"]),
    (["-k", "rms and not fp8", "-x", "--tb", "short", "tests/kernels"],
     ["-k", "rms and not fp8", "tests/kernels"], ["-x", "--tb", "short"]),
    (["-mslow", "--tb=line", "t.py::test_a[1]"], ["-mslow", "t.py::test_a[1]"], ["--tb=line"]),
    (["-q", "--deselect", "t.py::x", "--pdb", "-n", "2"], ["--deselect", "t.py::x"],
     ["-q", "--pdb", "-n", "2"]),
    (["-v", "--", "-odd-name.py"], ["-odd-name.py"], ["-v"]),
    (["-s", "-rA"], [], ["-s", "-rA"]),
])
def test_the_selection_is_split_from_the_per_run_flags(argv: list[str], selection: list[str],
                                                       rest: list[str]) -> None:
    got = pytest_args.split(argv)
    assert list(got.selection) == selection
    assert list(got.rest) == rest


def test_a_junitxml_of_the_users_wins_and_is_read_back(tmp_path: Path) -> None:
    args = pytest_args.split(["t.py", "--junitxml", "mine.xml"])
    assert args.junit_path == "mine.xml"
    argv = pytest_argv(Path("/venv/bin/python"), args, under=None, junit=tmp_path / "own.xml")
    assert not any(a.startswith("--junitxml=") for a in argv)
    plain = pytest_argv(Path("/venv/bin/python"), pytest_args.split(["t.py"]),
                        under="gdb --args", junit=tmp_path / "own.xml")
    assert plain == ["gdb", "--args", "/venv/bin/python", "-m", "pytest",
                     f"--junitxml={tmp_path / 'own.xml'}", "t.py"]


# --- the remembered selection -------------------------------------------------------------------

def test_the_remembered_selection_round_trips_and_is_forgotten(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / ".vllm-dev"
    say = print
    assert remembered.load_selection(state, say=say) is None
    remembered.save_selection(state, ("tests/kernels", "-k", "rms"), say=say)
    assert remembered.load_selection(state, say=say) == ("tests/kernels", "-k", "rms")
    data = json.loads((state / "settings.json").read_text())  # the settings store's file
    assert data["checkout"][remembered.ENTRY]["value"] == ["tests/kernels", "-k", "rms"]
    assert data["checkout"][remembered.ENTRY]["command"] == "test"
    assert (state / ".gitignore").read_text() == "*\n"  # the state dir stays out of git
    assert remembered.forget_selection(state, say=say) is True
    assert remembered.load_selection(state, say=say) is None
    assert remembered.forget_selection(state, say=say) is False


def test_a_hand_edited_selection_or_a_corrupt_store_counts_as_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / ".vllm-dev"
    state.mkdir()
    path = state / "settings.json"
    path.write_text(json.dumps({"format": 1, "checkout": {remembered.ENTRY: {
        "value": "not a list", "command": "test", "at": "2026-12-03T10:00:00"}}}))
    assert remembered.load_selection(state, say=print) is None
    path.write_text("{not json")
    assert remembered.load_selection(state, say=print) is None
    err = capsys.readouterr()
    assert "settings.json" in err.out + err.err  # one line naming the file, never a traceback
    assert list(state.glob("settings.json.corrupt-*"))  # set aside, not overwritten


# --- the picker's readers -----------------------------------------------------------------------

@pytest.mark.parametrize(("demangled", "name"), [
    ("fused_add_rms_norm(at::Tensor&, at::Tensor&, std::optional<at::Tensor>, double)",
     "fused_add_rms_norm"),
    ("vllm::rms_norm(at::Tensor&, double)", "vllm::rms_norm"),
    ("void vllm::scaled<float, 4>(float*, int)", "vllm::scaled"),
    ("PyInit__C", "PyInit__C"),
    ("minivllm::add(long, long)", "minivllm::add"),
    ("std::vector<int, std::allocator<int> > vllm::make(int)", "vllm::make"),
])
def test_function_names_from_demangled_symbols(demangled: str, name: str) -> None:
    assert function_name(demangled) == name


BINDINGS = textwrap.dedent("""\
    TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
      // Layernorm
      ops.def(
          "rms_norm(Tensor! out, Tensor input, Tensor weight, float epsilon) -> "
          "()");
      ops.impl("rms_norm", torch::kCPU, &rms_norm);
      ops.def("fused_add_rms_norm(Tensor! input, Tensor! residual) -> ()");
      ops.impl("fused_add_rms_norm", torch::kCPU,
               &vllm::fused_add_rms_norm);
      ops.def("is_onednn_acl_supported() -> bool", &is_onednn_acl_supported);
      ops.impl("bare_op.out", torch::kCUDA, bare_function);
      ops.impl("boxed", TORCH_BOX(&boxed_impl<float>));
      ops.impl("with_fn", TORCH_FN(fn_impl));
      ops.def("schema_only(Tensor x) -> Tensor");
      cache_ops.impl("swap_blocks", torch::kCPU, &swap_blocks);
    }
    """)


def test_registrations_are_read_in_vllms_shapes() -> None:
    found = {(r.op, r.function) for r in registrations(BINDINGS, file="b.cpp")}
    assert found == {
        ("rms_norm", "rms_norm"), ("fused_add_rms_norm", "vllm::fused_add_rms_norm"),
        ("is_onednn_acl_supported", "is_onednn_acl_supported"),
        ("bare_op", "bare_function"), ("boxed", "boxed_impl"), ("with_fn", "fn_impl"),
        ("swap_blocks", "swap_blocks")}
    lines = {r.op: r.line for r in registrations(BINDINGS)}
    assert lines["rms_norm"] == 6


def test_a_defined_function_matches_a_registration_by_name_and_qualification() -> None:
    assert matches("vllm::rms_norm", "rms_norm")
    assert matches("vllm::rms_norm", "vllm::rms_norm")
    assert not matches("rms_norm", "vllm::rms_norm")
    assert not matches("vllm::rms_norm_impl", "rms_norm")


def test_test_files_call_ops_as_vllms_kernel_tests_do() -> None:
    text = textwrap.dedent("""\
        import torch
        import vllm._custom_ops as custom
        from vllm._custom_ops import scaled_fp8_quant as quant, gelu_new
        opcheck(torch.ops._C.rms_norm, (out, x, w, 1e-6))
        custom.silu_and_mul(out, x)
        ops.rms_norm_dynamic_per_token_quant(x)
        gelu_new(out, x)
        y = not_an_op.fused_add_rms_norm(x)
        """)
    ops = ["rms_norm", "silu_and_mul", "fused_add_rms_norm", "gelu_new", "scaled_fp8_quant",
           "gelu_fast"]
    assert calls_in(text, ops) == ["gelu_new", "rms_norm", "silu_and_mul"]


def _compiled_checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny checkout with one compiled unit and a compilation database (no ninja)."""
    gxx = shutil.which("g++") or shutil.which("c++")
    if gxx is None:
        pytest.skip("no C++ compiler")
    root = tmp_path / "tree"
    (root / "csrc").mkdir(parents=True)
    (root / "tests" / "kernels" / "core").mkdir(parents=True)
    (root / "csrc" / "norm.h").write_text("#pragma once\ninline int helper() { return 1; }\n")
    (root / "csrc" / "norm.cpp").write_text(textwrap.dedent("""\
        #include "norm.h"
        namespace vllm { void rms_norm(double* out, int n) { out[0] = n + helper(); } }
        void not_registered(int) {}
        """))
    (root / "csrc" / "bindings.cpp").write_text(
        'void f(Lib& ops) {\n  ops.impl("rms_norm", torch::kCPU, &vllm::rms_norm);\n}\n')
    (root / "tests" / "kernels" / "core" / "test_norm.py").write_text(
        "def test_it():\n    torch.ops._C.rms_norm(out, x)\n")
    (root / "tests" / "kernels" / "test_other.py").write_text("ops.silu_and_mul(x)\n")
    build = root / "cmake-build-release"
    obj_dir = build / "CMakeFiles" / "_C.dir" / "csrc"
    obj_dir.mkdir(parents=True)
    obj = obj_dir / "norm.cpp.o"
    subprocess.run([gxx, "-c", str(root / "csrc" / "norm.cpp"), "-o", str(obj)], check=True)
    (build / "compile_commands.json").write_text(json.dumps([
        {"directory": str(build), "file": str(root / "csrc" / name),
         "arguments": [gxx, "-c", str(root / "csrc" / name), "-o",
                       f"CMakeFiles/_C.dir/csrc/{name}.o"],
         "output": f"CMakeFiles/_C.dir/csrc/{name}.o"}
        for name in ("norm.cpp", "bindings.cpp")]))
    return root, build


def test_the_picker_reads_a_real_object_and_finds_the_tests(tmp_path: Path) -> None:
    root, build = _compiled_checkout(tmp_path)
    assert "vllm::rms_norm" in defined_functions(
        build / "CMakeFiles/_C.dir/csrc/norm.cpp.o", nm=shutil.which("nm") or "nm")
    pick = Picker(root, build).pick(["csrc/norm.cpp", "README.md"], where="since abc")
    assert pick.ops == ["rms_norm"]
    assert pick.tests == {"tests/kernels/core/test_norm.py": ["rms_norm"]}
    assert pick.bindings == ["csrc/bindings.cpp"]
    lines = pick.lines()
    assert lines[0].startswith("picked 1 test file(s)") and "since abc" in lines[0]
    assert "  csrc/norm.cpp defines op(s) rms_norm" in lines

    unbuilt = Picker(root, build).pick(["csrc/bindings.cpp"])
    assert unbuilt.tests == {}
    assert "not compiled in cmake-build-release yet" in "\n".join(unbuilt.lines())
    nothing = Picker(root, build).pick(["docs/x.md"])
    assert nothing.lines()[0].startswith("no test picked: no changed file")


def test_a_unit_that_defines_no_op_picks_nothing_and_says_so(tmp_path: Path) -> None:
    root, build = _compiled_checkout(tmp_path)
    (root / "csrc" / "bindings.cpp").write_text('void f(Lib& ops) { ops.impl("x", &other); }\n')
    pick = Picker(root, build).pick(["csrc/norm.cpp"])
    assert pick.tests == {} and pick.ops == []
    assert pick.lines()[0].startswith("no test picked: the translation unit(s) changed define "
                                      "no op registered")
    assert "  csrc/norm.cpp defines no registered op" in pick.lines()


# --- test outcomes ------------------------------------------------------------------------------

def _junit(path: Path, *, tests: int, failures: int = 0, errors: int = 0, skipped: int = 0
           ) -> Path:
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest" '
                    f'tests="{tests}" failures="{failures}" errors="{errors}" '
                    f'skipped="{skipped}"/></testsuites>')
    return path


def test_junit_counts_and_what_nothing_tested_means(tmp_path: Path) -> None:
    assert read_junit(_junit(tmp_path / "a.xml", tests=5, failures=1, skipped=2)) == (2, 1, 0, 2)
    assert read_junit(tmp_path / "missing.xml") is None
    ok = TestOutcome(0, 1.0, 3, 0, 0, 1)
    assert ok.status == 0 and ok.problem() is None
    assert ok.counts() == "3 passed, 0 failed, 1 skipped"
    skipped = TestOutcome(0, 1.0, 0, 0, 0, 4)
    assert skipped.status == NOTHING_TESTED and "every selected test was skipped" in (
        skipped.problem() or "")
    none = TestOutcome(5, 1.0, 0, 0, 0, 0)
    assert none.status == 5 and (none.problem() or "").startswith("no test found")
    failed = TestOutcome(1, 1.0, 1, 2, 0, 0)
    assert failed.status == 1 and failed.problem() is None
    crashed = TestOutcome(4, 0.2)
    assert crashed.counts().startswith("pytest exited 4 (usage error")


def test_test_requirements_in_both_layouts(tmp_path: Path) -> None:
    checkout = Checkout(tmp_path)
    assert checkout.test_requirements("cpu") is None
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "test.txt").write_text("pytest\n")
    assert checkout.test_requirements("cpu") == tmp_path / "requirements" / "test.txt"
    (tmp_path / "requirements" / "test").mkdir()
    (tmp_path / "requirements" / "test" / "cpu.txt").write_text("pytest\n")
    assert checkout.test_requirements("cpu") == tmp_path / "requirements" / "test" / "cpu.txt"


# --- the watch decision -------------------------------------------------------------------------

def test_a_save_pauses_only_for_a_whole_tree_build(tmp_path: Path) -> None:
    objs = {name: str(tmp_path / f"{name}.o") for name in ("a", "b", "c", "f")}
    for obj in objs.values():
        Path(obj).write_text("")
    src = {name: str(tmp_path / name) for name in
           ("a.cpp", "b.cpp", "c.cpp", "f.cpp", "all.h", "CMakeLists.txt")}
    watched = WatchSet(tmp_path, tmp_path / "build", ["_C", "_fast_C"], reaches={
        src["a.cpp"]: {objs["a"]}, src["b.cpp"]: {objs["b"]}, src["c.cpp"]: {objs["c"]},
        src["f.cpp"]: {objs["f"]}, src["all.h"]: {objs["a"], objs["b"], objs["c"]}},
        owners={objs["a"]: {"_C"}, objs["b"]: {"_C"}, objs["c"]: {"_C"},
                objs["f"]: {"_fast_C"}},
        configure_inputs={src["CMakeLists.txt"]})
    one = watched.decide([src["a.cpp"]])
    assert one.pause is None and one.targets == {"_C"} and one.objects == 1
    assert watched.decide([src["f.cpp"]]).pause is None  # every object of _fast_C, but only 1
    header = watched.decide([src["all.h"]])
    assert header.pause is not None and header.objects == 3
    assert "all.h reaches every object of _C" in header.pause.reason
    cmake = watched.decide([src["CMakeLists.txt"], src["a.cpp"]])
    assert cmake.pause is not None and "decides the whole build" in cmake.pause.reason
    Path(objs["b"]).unlink()  # a never-built object counts as out of date
    two = watched.decide([src["a.cpp"], src["c.cpp"]])
    assert two.pause is not None and two.objects == 3
    lines = pause_lines(WholeBuild("x changed", 7, ()))
    assert lines[0] == "paused, nothing built: x changed (up to 7 object(s))"


def test_a_pause_lasts_until_the_change_is_built(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    cmake_lists, header, obj = tmp_path / "CMakeLists.txt", tmp_path / "h.h", build / "a.o"
    for path in (build / "build.ninja", obj):
        path.write_text("")
    time.sleep(0.02)
    cmake_lists.write_text("")
    header.write_text("")
    watched = WatchSet(tmp_path, build, ["_C"], reaches={str(header): {str(obj)}},
                       owners={str(obj): {"_C"}}, configure_inputs={str(cmake_lists)})
    pause = WholeBuild("x", 1, (str(cmake_lists), str(header)))
    assert watched.still_pending(pause)
    time.sleep(0.02)
    (build / "build.ninja").write_text("reconfigured")
    assert watched.still_pending(pause)  # the object is still older than the header
    obj.write_text("rebuilt")
    assert not watched.still_pending(pause)


# --- Ctrl-C while the tests run -----------------------------------------------------------------

_RUNNER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from vllm_dev.process.foreground import run_foreground
try:
    code = run_foreground([sys.executable, "-c",
                           "import os, time; open('child.pid', 'w').write(str(os.getpid())); "
                           "print('child up', flush=True); time.sleep(60)"],
                          cwd=Path('.'), grace=2.0)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("code", code, flush=True)
"""


def test_ctrl_c_on_vllm_dev_alone_stops_the_test_run_and_exits_130(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, str(SRC)], stdout=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "child up"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)  # to vllm-dev only: it must forward it
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in out
    assert time.monotonic() - started < 5, "the child was not stopped at once"
    from vllm_dev.process.interrupts import pid_alive

    assert not pid_alive(int((tmp_path / "child.pid").read_text()))  # no test run left behind


def test_a_foreground_run_gives_the_commands_status(tmp_path: Path) -> None:
    from vllm_dev.process.foreground import run_foreground

    assert run_foreground([sys.executable, "-c", "raise SystemExit(3)"], cwd=tmp_path) == 3
    assert run_foreground([sys.executable, "-c", "import os; os.kill(os.getpid(), 15)"],
                          cwd=tmp_path) == 128 + 15
    env_seen = tmp_path / "env.txt"
    run_foreground([sys.executable, "-c",
                    f"import os; open({str(env_seen)!r}, 'w').write(os.environ['X_T'])"],
                   cwd=tmp_path, env={"X_T": "yes"})
    assert env_seen.read_text() == "yes"
    assert os.environ.get("X_T") is None


def test_the_watched_set_follows_a_new_include_of_a_recompiled_object(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a save, only the recompiled objects' deps are read again (ninja -t deps OBJ)."""
    from vllm_dev.commands.testloop import watchset

    root, build = tmp_path, tmp_path / "build"
    build.mkdir()
    obj, source = str(build / "a.o"), str(root / "a.cpp")
    old_h, new_h = str(root / "old.h"), str(root / "new.h")
    watched = WatchSet(root, build, ["_C"], reaches={source: {obj}, old_h: {obj}},
                       owners={obj: {"_C"}}, _units={obj: {source}})
    calls = []

    def deps(build_dir: Path, objects: list[str]) -> dict[str, list[str]]:
        calls.append(objects)
        return {obj: [source, new_h, "/usr/include/stdio.h"]}

    monkeypatch.setattr(watchset, "ninja_deps", deps)
    watched.update({obj})
    assert calls == [["a.o"]]
    assert watched.files == {source, new_h}  # old.h dropped, new.h in, system headers never
