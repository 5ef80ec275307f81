"""Ctrl-C (SIGINT) and SIGTERM during configure, compile and install: every child stops, vllm-dev
exits 130 or 143 without a traceback, and the next build completes and imports.

Real ``vllm-dev build`` runs; the phase is held open by a slow step (fault_tools.py) so the signal
lands where the test says. Survivors are looked for in /proc by an environment tag every process
of the run inherits (ninja moves its jobs into process groups of their own, so a process-group
check alone would miss exactly the orphans this is about).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import fault_tools as ft

from conftest import Project, make_project, requires_nvcc

# The sleep lengths tell the phases apart in /proc (see _in_phase).
PHASES = {
    "configure": ({"VD_CONFIGURE_SLEEP": "31"}, "31"),
    "compile": ({"VD_COMPILE_SLEEP": "32"}, "32"),
    "install": ({"VD_INSTALL_SLEEP": "33"}, "33"),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """One project for the phase x signal cases: each case ends with a good build, so the next
    case starts from a configured, installed tree (what a developer has)."""
    project = make_project(tmp_path_factory.mktemp("interrupts"))
    ft.add_hooks(project)
    project.run("build")
    return project


def _cmdlines(token: str) -> list[list[str]]:
    lines = []
    for pid, _ in ft.tagged_processes(token):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        lines.append(raw.decode(errors="replace").split("\0"))
    return lines


def _in_phase(token: str, marker: str) -> bool:
    return any("sleep" in " ".join(c) and marker in c for c in _cmdlines(token))


def _set_value(project: Project, value: int) -> None:
    source = project.root / "csrc" / "module_C.cpp"
    text = source.read_text()
    source.write_text(re.sub(r"#define MINIVLLM_C_KNOWN_VALUE \d+\n#endif",
                             f"#define MINIVLLM_C_KNOWN_VALUE {value}\n#endif", text, count=1))


@pytest.mark.flow
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", ["configure", "compile", "install"])
def test_signal_stops_every_child_and_next_build_works(shared: Project, phase: str,
                                                       signame: str) -> None:
    signum, code = ft.SIGNALS[signame]
    env, marker = PHASES[phase]
    if phase == "configure":
        # A configured tree skips configure; without vllm-dev's record the build configures.
        (shared.build_dir / "vllm-dev-build.json").unlink()
    if phase == "install":
        # An unchanged tree installs nothing; a missing installed file makes its component install.
        (shared.root / "vllm" / "_fast_C.abi3.so").unlink()
    bg = ft.spawn(shared, "build", env=env)
    ft.wait_for(lambda: _in_phase(bg.token, marker), what=f"{phase} to start")
    assert ft.tagged_processes(bg.token)
    sent = time.monotonic()
    ft.interrupt(bg, signum)
    rc, _, err = bg.finish(timeout=60)
    took = time.monotonic() - sent
    assert rc == code, err
    assert took < 10, f"stopping took {took:.1f} s"
    print(f"\n{phase} {signame}: exit {rc} {took:.2f} s after the signal")
    assert "Traceback" not in err
    assert err.rstrip().splitlines()[-1] == ("vllm-dev: interrupted" if signame == "SIGINT"
                                             else "vllm-dev: terminated"), err
    survivors = ft.tagged_processes(bg.token)
    assert not survivors, f"children outlived vllm-dev: {survivors}"
    assert not (shared.build_dir / ".vllm-dev.lock.json").exists()  # lock released
    shared.run("build")
    assert shared.value("_C") == 42 and shared.value("_fast_C") == 7


def test_install_interrupted_at_many_moments_never_leaves_a_broken_extension(
        project: Project) -> None:
    """16 builds, each of a new ``_C``, each interrupted at a later moment of its install (the
    install pauses 0.3 s after staging ``_C``, where an in-place install would already have
    written the new ``_C``). After each, every extension in vllm/ must import and
    hold a value some complete build produced."""
    ft.add_hooks(project)
    project.run("build")
    installed_value = 42
    outcomes: dict[str, int] = {}
    for run in range(16):
        new_value = 100 + run
        _set_value(project, new_value)
        signame = "SIGINT" if run % 2 else "SIGTERM"
        signum, code = ft.SIGNALS[signame]
        bg = ft.spawn(project, "build", env={"VD_INSTALL_SLEEP": "0.3"})
        ft.wait_for(lambda bg=bg: bg.proc.poll() is not None
                    or any("--install" in c for c in _cmdlines(bg.token)),
                    what="the install to start")
        time.sleep(run * 0.035)  # not a wait for a state: each run interrupts a moment later
        if bg.proc.poll() is None:
            ft.interrupt(bg, signum)
        rc, _, err = bg.finish(timeout=60)
        assert rc in (0, code), err
        assert "Traceback" not in err
        assert not ft.tagged_processes(bg.token)
        value = project.value("_C")
        assert value in (installed_value, new_value), (run, value)
        assert project.value("_fast_C") == 7
        outcome = ("completed" if rc == 0 else
                   "interrupted, vllm/ kept the previous _C" if value == installed_value else
                   "interrupted after _C was moved in")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        installed_value = value
        leftovers = list((project.root / "vllm").glob(".*.tmp"))
        assert not leftovers, leftovers
    print(f"install interrupt outcomes over 16 runs: {outcomes}")
    assert outcomes.get("interrupted, vllm/ kept the previous _C", 0) >= 4, outcomes
    project.run("build")
    assert project.value("_C") == 115 and project.value("_fast_C") == 7


def _staged_tree(tmp: Path, files: dict[str, bytes]) -> tuple[Path, Path, dict[str, list[Path]]]:
    stage, prefix = tmp / "build" / "vllm-dev-stage", tmp / "checkout"
    staged = []
    for name, data in files.items():
        path = stage / "vllm" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        staged.append(path.relative_to(stage))
    return stage, prefix, {"_x": staged}


def _commit_with_stop(tmp: Path, stop_at: int | None, monkeypatch: pytest.MonkeyPatch,
                      old: dict[str, bytes], new: dict[str, bytes]) -> int:
    """Commit ``new`` over ``old`` in ``tmp``, raising KeyboardInterrupt instead of the
    ``stop_at``-th rename (None: stop nowhere); returns how many renames went through."""
    from vllm_dev.installs import staged_install as si
    from vllm_dev.installs.install_record import InstallRecord

    (tmp / "checkout" / "vllm").mkdir(parents=True)
    for name, data in old.items():
        (tmp / "checkout" / "vllm" / name).write_bytes(data)
    stage, prefix, staged = _staged_tree(tmp, new)
    calls = {"n": 0}
    real_replace = si.os.replace

    def replace(src, dst):  # noqa: ANN001
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(si.os, "replace", replace)
        if stop_at is None:
            si.commit_stage(stage, prefix, staged, InstallRecord.load(stage.parent))
        else:
            with pytest.raises(KeyboardInterrupt):
                si.commit_stage(stage, prefix, staged, InstallRecord.load(stage.parent))
    return calls["n"]


@pytest.mark.unit
def test_commit_stage_stopped_at_each_point_leaves_only_whole_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C at each syscall of the commit (every rename, the record's write): each file in
    vllm/ is the complete old or the complete new one, and the next install completes it. The
    points are counted on an uninterrupted commit, so each one really interrupts something."""
    from vllm_dev.installs import staged_install as si
    from vllm_dev.installs.install_record import InstallRecord

    old = {f"_{i}.so": bytes([i]) * 50_000 for i in range(3)}
    new = {name: b"N" + data[1:] for name, data in old.items()}
    renames = _commit_with_stop(tmp_path / "count", None, monkeypatch, old, new)
    assert renames >= len(new) + 1  # one per file and the install record's write
    for stop_at in range(renames):
        tmp = tmp_path / f"stop-{stop_at}"
        assert _commit_with_stop(tmp, stop_at, monkeypatch, old, new) == stop_at
        prefix = tmp / "checkout"
        for name in old:
            data = (prefix / "vllm" / name).read_bytes()
            assert data in (old[name], new[name]), (stop_at, name)
        stage, prefix, staged = _staged_tree(tmp, new)  # what the next install stages again
        result = si.commit_stage(stage, prefix, staged, InstallRecord.load(stage.parent))
        assert sorted(p.name for p in result.files) == sorted(new)
        for name in new:
            assert (prefix / "vllm" / name).read_bytes() == new[name]
        record = InstallRecord.load(stage.parent)
        assert sorted(record.files()) == sorted(prefix / "vllm" / n for n in new)


@pytest.mark.flow
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_invoke_front_end_exits_130_143_without_traceback(shared: Project, signame: str) -> None:
    signum, code = ft.SIGNALS[signame]
    bg = ft.spawn(shared, "build", env={"VD_COMPILE_SLEEP": "32"}, program=ft.INVOKE)
    ft.wait_for(lambda: _in_phase(bg.token, "32"), what="compile to start")
    ft.interrupt(bg, signum)
    rc, _, err = bg.finish(timeout=60)
    assert rc == code and "Traceback" not in err, err
    assert not ft.tagged_processes(bg.token)
    shared.run("build")
    assert shared.value("_C") == 42


@pytest.mark.unit
@pytest.mark.parametrize("which", ["write", "copy"])
def test_interrupted_atomic_write_leaves_no_temporary_file(
        tmp_path: Path, which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_dev.process import files

    target = tmp_path / "_C.abi3.so"
    target.write_bytes(b"old")
    source = tmp_path / "src.so"
    source.write_bytes(b"new")

    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        if which == "write":
            files.atomic_write_bytes(target, b"new")
        else:
            files.copy_then_rename(source, target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_C.abi3.so", "src.so"]


@requires_nvcc
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_interrupt_during_nvcc_leaves_no_nvcc_cicc_or_ptxas(cuda_project: Project,
                                                            signame: str) -> None:
    """The real thing: Ctrl-C while nvcc (and its cicc/ptxas) compile the CUDA extension."""
    signum, code = ft.SIGNALS[signame]
    bg = ft.spawn(cuda_project, "build")
    # nvcc also runs during configure (compiler checks): wait for it on the project's sources.
    ft.wait_for(lambda: any(".cu" in arg and "/csrc/cuda/" in arg
                            for c in _cmdlines(bg.token) for arg in c),
                timeout=300, what="nvcc to compile csrc/cuda")
    running = sorted({n for _, n in ft.tagged_processes(bg.token)})
    ft.interrupt(bg, signum)
    rc, _, err = bg.finish(timeout=60)
    assert rc == code and "Traceback" not in err, err
    survivors = ft.tagged_processes(bg.token)
    assert not survivors, f"{survivors} outlived vllm-dev (running at the signal: {running})"
    print(f"\nnvcc interrupt: running at the signal {running}; exit {rc}; no survivors")


@pytest.mark.flow
def test_hangup_of_the_terminal_stops_the_compile_tree(shared: Project) -> None:
    """Children run in their own session, so a closing terminal's SIGHUP reaches only vllm-dev,
    which must stop them itself (exit 129)."""
    signum, code = ft.SIGNALS["SIGHUP"]
    bg = ft.spawn(shared, "build", env={"VD_COMPILE_SLEEP": "32"})
    ft.wait_for(lambda: _in_phase(bg.token, "32"), what="compile to start")
    ft.interrupt(bg, signum)
    rc, _, err = bg.finish(timeout=60)
    assert rc == code and "Traceback" not in err, err
    assert err.rstrip().splitlines()[-1] == "vllm-dev: hung up"
    assert not ft.tagged_processes(bg.token)
    shared.run("build")
    assert shared.value("_C") == 42
