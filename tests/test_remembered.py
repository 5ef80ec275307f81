"""Remembered settings end to end on the test project (real cmake, ninja, ccache, uv): what is
given once is used by the later commands, dropped only when asked (``-U`` on the kept cache, never
``--fresh``), and what does not change a compile command never touches ``build.ninja`` (the cache,
its remote, directory and size, another install of vllm-dev)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import minivllm_tools as mv
from conftest import Project, clean_env

REPO = Path(__file__).resolve().parents[1]
CONFIGURE_RE = re.compile(r"^vllm-dev: \$ .*cmake --preset ", re.MULTILINE)


def cache_lines(build_dir: Path, name: str) -> list[str]:
    text = (build_dir / "CMakeCache.txt").read_text()
    return [ln for ln in text.splitlines() if ln.startswith(name + ":")]


def stamp(path: Path) -> tuple[bytes, int, int]:
    """A file's bytes, mtime and inode: 'untouched' means all three are the same."""
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, st.st_ino


def objects(project: Project, mark: int) -> list[str]:
    return [e for e in project.ninja_log_entries(since=mark) if e.endswith(".o")]


def settings_json(project: Project, *args: str, cwd: Path | None = None) -> dict:
    return json.loads(project.run("settings", "--json", *args, cwd=cwd).stdout)


def test_a_define_given_once_stays_and_minus_u_drops_it_on_the_kept_cache(
        project: Project) -> None:
    project.run("prime", "-D", "VLLM_DEV_PROBE=1")
    assert cache_lines(project.build_dir, "VLLM_DEV_PROBE") == ["VLLM_DEV_PROBE:UNINITIALIZED=1"]
    built = project.run("build")
    assert not CONFIGURE_RE.search(built.stderr), built.stderr
    assert ("using remembered settings of preset release: -D VLLM_DEV_PROBE=1 (`vllm-dev "
            "settings` shows them; --no-remember ignores them)") in built.stderr
    assert cache_lines(project.build_dir, "VLLM_DEV_PROBE") == ["VLLM_DEV_PROBE:UNINITIALIZED=1"]
    (define,) = settings_json(project)["defines"]
    assert (define["define"], define["kind"]) == ("VLLM_DEV_PROBE=1", "remembered")
    assert re.fullmatch(r"given to prime, \d{4}-\d\d-\d\d \d\d:\d\d", define["source"])

    mark = project.ninja_log_mark()
    dropped = project.run("build", "-U", "VLLM_DEV_PROBE")
    assert ("reconfiguring release: VLLM_DEV_PROBE: 1 -> unset (cmake -U VLLM_DEV_PROBE, the "
            "cache is kept)") in dropped.stderr
    assert re.search(r"cmake --preset release -U VLLM_DEV_PROBE$", dropped.stderr, re.M)
    assert "--fresh" not in dropped.stderr and "fresh CMake cache" not in dropped.stderr
    assert cache_lines(project.build_dir, "VLLM_DEV_PROBE") == []
    assert objects(project, mark) == []  # no source reads it: nothing recompiled
    assert "forgot for preset release: -D VLLM_DEV_PROBE" in dropped.stderr
    again = project.run("build")
    assert not CONFIGURE_RE.search(again.stderr) and "remembered" not in again.stderr
    assert settings_json(project)["defines"] == []
    # A variable set by hand (`cmake --preset release -D ...`): -U removes it the same way.
    subprocess.run([str(project.python.parent / "cmake"), "--preset", "release", "-DBY_HAND=1"],
                   cwd=project.root, env=clean_env(project.env), check=True,
                   capture_output=True)
    assert cache_lines(project.build_dir, "BY_HAND")
    by_hand = project.run("prime", "-U", "BY_HAND")
    assert ("reconfiguring release: -U BY_HAND (cmake -U BY_HAND, the cache is kept)"
            in by_hand.stderr)
    assert cache_lines(project.build_dir, "BY_HAND") == []
    # -D Y adds to what is remembered; a later -U of a name never set is one quiet no-op
    project.run("prime", "-D", "A_ONE=1")
    project.run("prime", "-D", "A_TWO=2")
    assert sorted(d["define"] for d in settings_json(project)["defines"]) == ["A_ONE=1",
                                                                             "A_TWO=2"]
    assert not CONFIGURE_RE.search(project.run("prime", "-U", "NEVER_SET").stderr)


def test_python_given_once_is_used_by_every_later_command(project: Project,
                                                          tmp_path: Path) -> None:
    venv_b = mv.make_venv(tmp_path / "venv-b")
    project.run("setup", "--python", str(venv_b))
    shutil.rmtree(project.root / ".venv")  # the default is gone: only memory can find venv-b
    built = project.run("build")
    assert f"using remembered settings of preset release: --python {venv_b}" in built.stderr
    assert cache_lines(project.build_dir, "VLLM_PYTHON_EXECUTABLE") == [
        f"VLLM_PYTHON_EXECUTABLE:FILEPATH={venv_b}"]
    assert mv.import_value(str(venv_b), "_C", cwd=project.root) == 42
    verified = project.run("verify")
    assert str(venv_b) in verified.stdout + verified.stderr
    project.run("install")
    row = next(r for r in settings_json(project)["settings"] if r["name"] == "python")
    assert (row["value"], row["kind"]) == (str(venv_b), "remembered")
    assert row["source"].startswith("given to setup, ")
    text = project.run("settings").stdout
    assert re.search(rf"--python +{re.escape(str(venv_b))} +given to setup, ", text), text
    cleaned = project.run("clean")
    assert not project.build_dir.exists()
    assert "--python" not in cleaned.stderr  # clean reads no interpreter: nothing to name

    # The remembered interpreter removed: one line naming it, how, and the forgetting command.
    shutil.rmtree(venv_b.parent.parent)
    gone = project.run("build", check=False)
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
    last = gone.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"vllm-dev: the remembered --python {re.escape(str(venv_b))} \(given "
                        r"to setup, [\d :-]+\) no longer exists: pass --python, or forget it "
                        r"with `vllm-dev settings --forget python`", last), last
    forgot = project.run("settings", "--forget", "python")
    assert forgot.stderr.startswith("vllm-dev: forgot for preset release: --python ")
    never = project.run("settings", "--forget", "python")
    assert never.returncode == 0
    assert never.stderr == "vllm-dev: nothing remembered for --python in preset release\n"


def test_cache_settings_given_changed_and_dropped_leave_build_ninja_untouched(
        project: Project, tmp_path: Path) -> None:
    project.run("build")
    ninja = project.build_dir / "build.ninja"
    before = stamp(ninja)
    remote_a, remote_b = tmp_path / "remote-a", tmp_path / "remote-b"
    edited = project.root / "csrc" / "ops" / "add.cpp"
    for n, args in enumerate([
            ("--cache-remote", f"file://{remote_a}", "--cache-remote-mode", "read-write"),
            ("--cache-remote", f"file://{remote_b}"),
            ("--cache-dir", str(tmp_path / "other-ccache"), "--cache-max-size", "2G"),
            ("--cache", "none"), ("--cache", "ccache")]):
        edited.write_text(edited.read_text() + f"\n// edit {n}\n")  # one compile each time
        done = project.run("build", *args)
        assert not CONFIGURE_RE.search(done.stderr), (args, done.stderr)
        assert "reconfiguring" not in done.stderr
        assert stamp(ninja) == before, args
    # The build presets carried them to the compiles: the read-write remote got the object.
    assert any(p.is_file() for p in remote_a.rglob("*"))
    assert (tmp_path / "other-ccache").is_dir()
    remembered = {r["name"]: r for r in settings_json(project)["settings"]}
    assert remembered["cache_dir"]["kind"] == "remembered"
    assert remembered["cache_remote"]["kind"] == "default"  # --cache none ended the remote
    dropped = project.run("settings", "--forget-all")
    assert dropped.stderr.startswith("vllm-dev: forgot for preset release: ")
    done = project.run("build")
    assert not CONFIGURE_RE.search(done.stderr) and stamp(ninja) == before
    presets = json.loads((project.root / "CMakeUserPresets.json").read_text())
    release = next(p for p in presets["buildPresets"] if p["name"] == "release")
    assert Path(release["environment"]["VLLM_DEV_COMPILER_CACHE"]).name == "ccache"
    base = presets["configurePresets"][0]["cacheVariables"]
    assert base["CMAKE_CXX_COMPILER_LAUNCHER"] == "${sourceDir}/.vllm-dev/compiler-launcher"


def test_a_second_install_of_vllm_dev_builds_the_same_checkout_without_configuring(
        project: Project, tmp_path: Path) -> None:
    """Two installs (say `uv tool install` and a `pip install -e` clone) bring two ccaches:
    the presets name neither by path, so neither reconfigures the other's build dir."""
    project.run("build")
    other = mv.make_venv(tmp_path / "other-install")
    subprocess.run([mv.find_uv(), "pip", "install", "-q", "-p", str(other), "-e", str(REPO)],
                   check=True, env=clean_env())
    env = clean_env({**project.env, "PATH": f"{other.parent}{os.pathsep}{os.environ['PATH']}"})
    ninja = project.build_dir / "build.ninja"
    before = stamp(ninja)
    for _ in range(2):
        done = subprocess.run([str(other.parent / "vllm-dev"), "build"], cwd=project.root,
                              env=env, text=True, capture_output=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=600)
        assert done.returncode == 0, done.stderr
        assert not CONFIGURE_RE.search(done.stderr), done.stderr
        presets = json.loads((project.root / "CMakeUserPresets.json").read_text())
        release = next(p for p in presets["buildPresets"] if p["name"] == "release")
        assert release["environment"]["VLLM_DEV_COMPILER_CACHE"] == str(other.parent / "ccache")
        mine = project.run("build")
        assert not CONFIGURE_RE.search(mine.stderr), mine.stderr
    assert stamp(ninja) == before


def test_invoke_yaml_at_the_checkout_root_is_read_from_a_subdirectory(project: Project) -> None:
    root = project.root
    (root / "invoke.yaml").write_text("vllm_dev:\n  defines:\n    MINIVLLM_FROM_YAML: 7\n")
    csrc = root / "csrc"
    project.run("prime", cwd=csrc)
    assert cache_lines(project.build_dir, "MINIVLLM_FROM_YAML") == [
        "MINIVLLM_FROM_YAML:UNINITIALIZED=7"]
    (define,) = settings_json(project, cwd=csrc)["defines"]
    assert define["source"] == f"invoke.yaml at {root}/invoke.yaml"
    still = project.run("prime", "-U", "MINIVLLM_FROM_YAML", cwd=csrc)
    assert (f"-U MINIVLLM_FROM_YAML: MINIVLLM_FROM_YAML is still set by invoke.yaml at "
            f"{root}/invoke.yaml; remove it there to drop it") in still.stderr
    assert cache_lines(project.build_dir, "MINIVLLM_FROM_YAML")


def test_only_a_command_that_reached_its_configure_remembers(project: Project) -> None:
    state = project.root / ".vllm-dev" / "settings.json"
    project.run("--dry", "prime", "-D", "DRY_ONE=1")
    project.run("doctor", "--arch", "8.0", check=False)
    failed = project.run("prime", "--preset", "nope", "-D", "BAD_ONE=1", check=False)
    assert failed.returncode != 0
    assert not state.exists() or "ONE" not in state.read_text()
    project.run("prime", "-D", "GOOD_ONE=1", "--jobs", "1", "--no-wait")
    data = json.loads(state.read_text())
    assert set(data["presets"]["release"]) == {"defines"}  # not the job count, not --no-wait
    assert set(data["presets"]["release"]["defines"]) == {"GOOD_ONE"}
    project.run("prime", "--no-remember", "-D", "NOT_KEPT=1")
    assert "NOT_KEPT" not in state.read_text()
    off = project.run("prime", env={"VLLM_DEV_NO_REMEMBER": "1"})
    assert "remembered" not in off.stderr
    assert cache_lines(project.build_dir, "GOOD_ONE") == []  # not used: -U'd from the cache


def test_a_credentialed_remote_is_used_never_written(project: Project) -> None:
    secret = "s3cret-pw-7"
    done = project.run("prime", "--cache-remote", f"redis://dev:{secret}@127.0.0.1:9")
    assert ("--cache-remote holds credentials: used for this run, not remembered (a secret is "
            "never written to a file); to keep it, export VLLM_DEV_CACHE_REMOTE=<url>"
            ) in done.stderr
    for path in (project.root / ".vllm-dev").rglob("*"):
        assert not path.is_file() or secret not in path.read_text(errors="replace"), path
    assert secret not in (project.root / "CMakeUserPresets.json").read_text()
    assert secret not in done.stdout + done.stderr
