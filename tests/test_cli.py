"""The command line itself, through the real ``vllm-dev`` console script: help, short flags, usage
errors, configuration mistakes, completion, broken pipes, path spellings and the demo."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import NVCC, VLLM_DEV, Project, clean_env

# The real console script in a subprocess (the demo builds the test project).
pytestmark = pytest.mark.flow

INVOKE_ONLY_FLAGS = ("--pty", "--prompt-for-sudo-password", "--hide", "--echo", "--warn-only",
                     "--command-timeout", "--write-pyc", "--list-format", "--list-depth",
                     "--debug")
# "  -j STRING, --jobs=STRING   help..." / "  -h [STRING], --help[=STRING]" / "  -D, --define"
OPTION_LINE = re.compile(r"^\s+(-\w)(?: \[?\w+\]?)?, (--[\w-]+)")


def vllm_dev(*args: str, cwd: Path, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VLLM_DEV, *args], cwd=cwd, text=True, capture_output=True,
                          env=clean_env(env), stdin=subprocess.DEVNULL, timeout=600, check=False)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("vllm-dev: "), lines
    return lines[0]


def task_names(tmp_path: Path) -> list[str]:
    done = vllm_dev("--list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = re.findall(r"^\s{2}(\w+)\s{2,}", done.stdout, re.M)
    assert {"setup", "prime", "build", "doctor", "demo"} <= set(names), done.stdout
    return names


def test_every_short_flag_means_one_option_and_h_is_help_everywhere(tmp_path: Path) -> None:
    meaning: dict[str, dict[str, str]] = {}  # letter -> long option -> where it was seen

    def record(text: str, where: str) -> None:
        assert "--=" not in text, f"{where}: an option without a name:\n{text}"
        for line in text.splitlines():
            found = OPTION_LINE.match(line)
            if found:
                meaning.setdefault(found.group(1), {})[found.group(2)] = where

    top = vllm_dev("--help", cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    record(top.stdout, "vllm-dev --help")
    for name in task_names(tmp_path):
        long = vllm_dev(name, "--help", cwd=tmp_path)
        short = vllm_dev(name, "-h", cwd=tmp_path)
        assert long.returncode == 0 and short.returncode == 0, (long.stderr, short.stderr)
        assert short.stdout == long.stdout
        assert long.stdout.startswith(f"Usage: vllm-dev {name} "), long.stdout
        before = vllm_dev("-h", name, cwd=tmp_path)
        assert before.returncode == 0 and before.stdout == long.stdout, before.stderr
        record(long.stdout, f"vllm-dev {name} --help")
    clashes = {letter: longs for letter, longs in meaning.items() if len(longs) > 1}
    assert not clashes, f"short flags with two meanings: {clashes}"
    assert set(meaning["-h"]) == {"--help"}
    # the fixed map, as the README lists it
    for letter, long in {"-p": "--preset", "-j": "--jobs", "-s": "--source", "-d": "--device",
                         "-t": "--target", "-a": "--arch", "-D": "--define"}.items():
        assert set(meaning[letter]) == {long}, (letter, meaning.get(letter))
    assert not any(long in ("--python", "--json") for longs in meaning.values() for long in longs)


def test_top_level_help_shows_vllm_devs_options_and_tasks_only(tmp_path: Path) -> None:
    done = vllm_dev("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for flag in INVOKE_ONLY_FLAGS:
        assert flag not in done.stdout, f"{flag} in:\n{done.stdout}"
    for flag in ("--dry", "--version", "--list", "--config", "--print-completion-script"):
        assert flag in done.stdout
    for name in ("setup", "prime", "build", "install", "clean", "doctor", "verify", "report",
                 "demo", "settings"):
        assert re.search(rf"^\s+{name}\s", done.stdout, re.M), name
    assert "core-opts" not in done.stdout
    # an Invoke-only core flag is not silently accepted either
    assert "unknown option '--pty'" in one_line_error(vllm_dev("--pty", "build", cwd=tmp_path))


@pytest.mark.parametrize(("argv", "expected"), [
    (["bulid"], "vllm-dev: unknown task 'bulid' (did you mean 'build'?)"),
    (["-h", "bulid"], "vllm-dev: unknown task 'bulid' (did you mean 'build'?)"),
    (["xyzzy"], "vllm-dev: unknown task 'xyzzy' (tasks: build, clean, demo, doctor, install, "
                "prime, report, settings, setup, test, verify)"),
    (["build", "--jbos", "4"], "vllm-dev: unknown option '--jbos' for build (did you mean "
                               "'--jobs'?); see vllm-dev build --help"),
    (["prime", "--presett", "debug"], "vllm-dev: unknown option '--presett' for prime (did you "
                                      "mean '--preset'?)"),
    (["build", "--jobs"], "vllm-dev: --jobs needs a value (see vllm-dev build --help)"),
    (["build", "--merge=yes"], "vllm-dev: --merge takes no value"),
])
def test_usage_errors_are_one_line_with_a_suggestion_exit_2(
    tmp_path: Path, argv: list[str], expected: str
) -> None:
    done = vllm_dev(*argv, cwd=tmp_path)
    assert one_line_error(done).startswith(expected)
    assert done.returncode == 2


@pytest.mark.parametrize(("yaml", "expected"), [
    ("vllm_dev:\n  jbos: 4\n", "config vllm_dev.jbos is not a setting (did you mean jobs?)"),
    ("vllm_dev:\n  preset: debug\n  cahce: none\n", "vllm_dev.cahce is not a setting (did you "
                                                    "mean cache?)"),
    ("vllm_dev: [\n", "cannot use the invoke configuration"),
    ("vllm_dev:\n  jobs: 4\n bad indent: [\n", "cannot use the invoke configuration"),
])
def test_invoke_yaml_mistakes_are_reported_in_one_line(
    tmp_path: Path, yaml: str, expected: str
) -> None:
    (tmp_path / "invoke.yaml").write_text(yaml)
    for task in ("doctor", "build"):
        assert expected in one_line_error(vllm_dev(task, cwd=tmp_path))


@pytest.mark.parametrize(("argv", "expected"), [
    (["build", "--jobs", ""], "vllm-dev: --jobs needs a value, got an empty one"),
    (["build", "-j", " "], "vllm-dev: --jobs needs a value, got an empty one"),
    (["prime", "--arch", ""], "vllm-dev: --arch needs a value"),
    (["doctor", "--device", "cpu", "--arch", "8.x"], "vllm-dev: --arch '8.x' is not a list of "
                                                     "CUDA arches"),
    (["build", "-d", "cpu", "-a", "sm_90"], "vllm-dev: --arch 'sm_90' is not a list of CUDA "
                                           "arches"),
])
def test_bad_values_fail_before_anything_runs(
    tmp_path: Path, argv: list[str], expected: str
) -> None:
    assert one_line_error(vllm_dev(*argv, cwd=tmp_path)).startswith(expected)


def test_arch_from_the_environment_is_checked_on_a_cpu_build_too(tmp_path: Path) -> None:
    done = vllm_dev("build", "--device", "cpu", cwd=tmp_path,
                    env={"TORCH_CUDA_ARCH_LIST": "Hopper"})
    assert "TORCH_CUDA_ARCH_LIST 'Hopper' is not a list of CUDA arches" in one_line_error(done)


def test_help_into_a_closed_pipe_ends_without_a_traceback(tmp_path: Path) -> None:
    """`vllm-dev -h build | head -1`: the reader is gone before vllm-dev writes (closed here at
    once; the interpreter takes far longer to start), so the write meets EPIPE every time."""
    proc = subprocess.Popen([VLLM_DEV, "-h", "build"], cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr  # a SIGPIPE death's status, as a C tool's
    assert stderr == "", stderr


def test_the_same_interpreter_spelled_relatively_is_not_a_change(project: Project) -> None:
    """--python ../.venv/bin/python from csrc/ names the venv the first build used by its
    absolute path: no `python changed`, no configure (and the venv is not resolved to its base)."""
    first = project.run("build", "--python", str(project.python))
    assert "cmake --preset release" in first.stderr
    again = project.run("build", "--python", "../.venv/bin/python", cwd=project.root / "csrc")
    assert "python changed" not in again.stderr, again.stderr
    assert "cmake --preset" not in again.stderr, again.stderr
    assert "no configure needed" in again.stderr, again.stderr
    assert "/csrc/.." not in again.stderr
    # a venv's python is a link to its base interpreter: the venv is what must stay named
    assert project.python.is_symlink()
    assert str(project.python.resolve()) not in again.stderr + first.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_print(tmp_path: Path, shell: str) -> None:
    done = vllm_dev("--print-completion-script", shell, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"vllm-dev .*--complete -- ", done.stdout), done.stdout
    assert "-c" not in meaning_of_short_flags(tmp_path)  # zsh's script passes `-c X` on


def meaning_of_short_flags(tmp_path: Path) -> set[str]:
    return {found.group(1) for name in ("build", "prime", "doctor")
            for line in vllm_dev(name, "--help", cwd=tmp_path).stdout.splitlines()
            if (found := OPTION_LINE.match(line))}


def test_bash_completion_completes_tasks_and_options(tmp_path: Path) -> None:
    """The README's one-liner, in a real bash: Tab after `vllm-dev bu` and `vllm-dev build --ja`."""
    script = (
        'eval "$(vllm-dev --print-completion-script bash)"\n'
        'COMP_WORDS=(vllm-dev bu); _complete_vllm-dev vllm-dev bu; echo "tasks: ${COMPREPLY[*]}"\n'
        'COMP_WORDS=(vllm-dev build --jo); _complete_vllm-dev vllm-dev --jo; '
        'echo "options: ${COMPREPLY[*]}"\n')
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, text=True, capture_output=True,
                          env=clean_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "tasks: build" in done.stdout, done.stdout
    assert "options: --jobs --job-memory-gib" in done.stdout or \
        "options: --job-memory-gib --jobs" in done.stdout, done.stdout


def test_bash_completion_offers_presets_targets_and_choices(project: Project) -> None:
    """In a real bash, inside a built checkout: Tab after --preset, --target and --device."""
    project.run("build")
    script = (
        'eval "$(vllm-dev --print-completion-script bash)"\n'
        'COMP_WORDS=(vllm-dev build --preset ""); COMP_CWORD=3; '
        '_complete_vllm-dev vllm-dev ""; echo "presets: ${COMPREPLY[*]}"\n'
        'COMP_WORDS=(vllm-dev build --target _f); COMP_CWORD=3; '
        '_complete_vllm-dev vllm-dev _f; echo "targets: ${COMPREPLY[*]}"\n'
        'COMP_WORDS=(vllm-dev build --device c); COMP_CWORD=3; '
        '_complete_vllm-dev vllm-dev c; echo "devices: ${COMPREPLY[*]}"\n')
    done = subprocess.run(["bash", "-c", script], cwd=project.root, text=True,
                          capture_output=True, env=clean_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "presets: debug release" in done.stdout, done.stdout
    assert "targets: _fast_C" in done.stdout, done.stdout
    assert "devices: cuda cpu" in done.stdout, done.stdout


def test_help_shows_numbers_as_numbers(tmp_path: Path) -> None:
    text = vllm_dev("build", "--help", cwd=tmp_path).stdout
    assert "-j INT, --jobs=INT" in text and "--max-jobs=INT" in text
    assert "--nvcc-threads=INT" in text and "--job-memory-gib=NUMBER" in text
    assert "--confirm-minutes=NUMBER" in text and "--preset=STRING" in text


def test_demo_with_a_bad_device_leaves_nothing_behind(tmp_path: Path) -> None:
    done = vllm_dev("demo", "--device", "tpu", cwd=tmp_path, env={"TMPDIR": str(tmp_path)})
    assert "--device must be one of cuda, cpu, got 'tpu'" in one_line_error(done)
    assert list(tmp_path.iterdir()) == []


def test_demo_shows_a_prime_step_and_one_arch_list(tmp_path: Path) -> None:
    """What the README says: setup, prime, build, a one-file rebuild; with CUDA, vllm-dev's arch
    line and CMake's name the same arches."""
    done = vllm_dev("demo", cwd=tmp_path, env={"TMPDIR": str(tmp_path),
                                               "CCACHE_DIR": str(tmp_path / "ccache")})
    assert done.returncode == 0, done.stderr
    steps = re.findall(r"^==> (\w+)", done.stderr, re.M)
    assert steps.index("setup") < steps.index("prime") < steps.index("build"), steps
    # the edit changes what a function returns: the value before and after, one object
    # recompiled, one file installed
    assert "vllm._C.add(2, 3): 5 before the edit, 6 after it" in done.stderr, done.stderr
    assert ("recompiled: CMakeFiles/_C.dir/csrc/ops/add.cpp.o (1 object(s)); installed: "
            "vllm/_C.abi3.so (1 file(s))") in done.stderr, done.stderr
    if NVCC:
        ours = re.search(r"TORCH_CUDA_ARCH_LIST=(\S+):", done.stderr)
        cmake = re.search(r"CUDA architectures: (\S+) \(from TORCH_CUDA_ARCH_LIST='([^']*)'\)",
                          done.stdout + done.stderr)  # cmake's own output goes to stdout
        assert ours and cmake, done.stderr
        assert ours.group(1) == cmake.group(2), (ours.group(0), cmake.group(0))
        arches = ours.group(1).split(";")
        assert cmake.group(1).split(";") == [a.replace(".", "") for a in arches]
        count = len(arches)
        assert re.search(rf"; {count} arch(es)?\b", done.stderr), done.stderr
    assert not list(tmp_path.glob("vllm-dev-demo-*"))
