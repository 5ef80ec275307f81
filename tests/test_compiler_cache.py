"""The compiler cache: correct for CUDA (depend mode), shared across checkouts (base_dir) and
machines (remote storage), and never leaking a credentialed remote URL.

The builds are real (vllm-dev, cmake, ninja, ccache, nvcc when present); the remote is a real
redis-server on 127.0.0.1 at a free port, stopped by PID.
"""

from __future__ import annotations

import json
import resource
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vllm_dev.caching import compiler_cache as cc
from vllm_dev.caching.cache_stats import CacheStats, read_stats
from vllm_dev.caching.remote_check import check_remote
from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.presets.render import PresetInputs, PresetTemplate, render
from vllm_dev.process.runner import SubprocessRunner

import minivllm_tools as mv
from conftest import BIN_DIR, NVCC, Project, clean_env, make_project, requires_nvcc

CCACHE = str(BIN_DIR / "ccache")
REDIS_SERVER = shutil.which("redis-server")
requires_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server not found: apt-get install redis-server")
HOST_VALUE_FILE = Path("csrc/cuda/host_value.cu")


# ----------------------------------------------------------------------------- helpers


def stats(ccache_dir: Path) -> CacheStats:
    return read_stats(CCACHE, runner=SubprocessRunner(),
                         env={"CCACHE_DIR": str(ccache_dir)})


def set_host_value(root: Path, value: int) -> None:
    path = root / HOST_VALUE_FILE
    text = path.read_text()
    new = "\n".join(
        f"#define MINIVLLM_HOST_VALUE {value}" if ln.startswith("#define MINIVLLM_HOST_VALUE")
        else ln for ln in text.splitlines()) + "\n"
    assert new != text or f"MINIVLLM_HOST_VALUE {value}" in text
    path.write_text(new)


def module_value(python: Path, so_file: Path) -> int:
    """known_value() of an extension loaded straight from a build dir."""
    code = ("import importlib.util as u, sys\n"
            f"s = u.spec_from_file_location({so_file.name.split('.')[0]!r}, {str(so_file)!r})\n"
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.known_value())\n")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@dataclass
class Timed:
    wall_s: float
    cpu_s: float
    done: subprocess.CompletedProcess[str]


def timed(run: Callable[[], subprocess.CompletedProcess[str]]) -> Timed:
    """Wall seconds and CPU seconds of every process the call waited for (nvcc, cc1plus, ...)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = run()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(wall, cpu, done)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Redis:
    process: subprocess.Popen[bytes]
    port: int
    url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., Redis]]:
    """Start redis-server instances on free 127.0.0.1 ports; every one is stopped by PID."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server not found: apt-get install redis-server")
    started: list[Redis] = []

    def start(*, user: str | None = None, password: str | None = None) -> Redis:
        port = free_port()
        argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(tmp_path)]
        if user and password:
            argv += ["--user", "default", "off", "--user", user, "on", f">{password}", "~*",
                     "&*", "+@all"]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        auth = f"{user}:{password}@" if user and password else ""
        server = Redis(process, port, f"redis://{auth}127.0.0.1:{port}")
        started.append(server)
        deadline = time.monotonic() + 10
        while not check_remote(server.url, timeout=1).ok:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.1)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


# ----------------------------------------------------------------------------- settings/render


@pytest.mark.unit
def test_settings_validate_cache_options() -> None:
    s = Settings.resolve(flags={"cache_remote": "redis://127.0.0.1:6379"},
                         environ={"VLLM_DEV_CACHE_MAX_SIZE": "20G"}, config={})
    assert (s.cache_remote, s.cache_remote_mode, s.cache_max_size) == (
        "redis://127.0.0.1:6379", "read-only", "20G")
    with pytest.raises(VllmDevError, match=r"VLLM_DEV_CACHE_REMOTE must be a redis://"):
        Settings.resolve(flags={}, environ={"VLLM_DEV_CACHE_REMOTE": "ftp://u:pw@h/x"})
    with pytest.raises(VllmDevError) as bad:
        Settings.resolve(flags={"cache_remote": "gopher://user:hunter2@h"}, environ={})
    assert "hunter2" not in str(bad.value)
    with pytest.raises(VllmDevError, match="--cache-remote-mode must be one of"):
        Settings.resolve(flags={"cache_remote": "file:///srv/cc", "cache_remote_mode": "rw"},
                         environ={})
    with pytest.raises(VllmDevError, match="needs the ccache compiler cache"):
        Settings.resolve(flags={"cache": "sccache", "cache_remote": "redis://h"}, environ={})
    with pytest.raises(VllmDevError, match="must be a size like"):
        Settings.resolve(flags={"cache_max_size": "lots"}, environ={})


@pytest.mark.unit
def test_render_puts_correctness_settings_in_presets() -> None:
    config = cc.CacheConfig(directory="/srv/ccache", max_size="10G",
                            remote="redis://ci:tok3n@cache:6379", remote_mode="read-only")
    templates = {"release": PresetTemplate("release", "", "Release"),
                 "debug": PresetTemplate("debug", "", "Debug"),
                 "rwdi": PresetTemplate("rwdi", "", "RelWithDebInfo",
                                        environment={"CCACHE_NOHASHDIR": "false"})}
    inputs = PresetInputs(
        python="/p", device="cpu", jobs=2, nvcc_threads=1,
        build_environment=cc.base_environment(config),
        build_type_environment={bt: cc.preset_environment(config, build_type=bt)
                                for bt in cc.DEBUG_INFO_BUILD_TYPES})
    doc = render(templates, inputs)
    # The cache's settings reach the compiles through the build presets (so changing them
    # never reconfigures: issue 19); the configure presets hold none of them.
    configure = {p["name"]: p for p in doc["configurePresets"]}
    assert "environment" not in configure["vllm-dev-base"]
    assert "environment" not in configure["release"]
    assert configure["rwdi"]["environment"] == {"CCACHE_NOHASHDIR": "false"}  # the template's
    build = {p["name"]: p["environment"] for p in doc["buildPresets"]}
    for name in ("release", "debug", "rwdi"):
        env = build[name]
        assert env["CCACHE_DEPEND"] == "true"
        assert env["CCACHE_BASEDIR"] == "${sourceDir}"
        assert env["CCACHE_DIR"] == "/srv/ccache" and env["CCACHE_MAXSIZE"] == "10G"
        assert env["CCACHE_REMOTE_STORAGE"] == "$penv{VLLM_DEV_CACHE_REMOTE}|read-only"
    assert "CCACHE_NOHASHDIR" not in build["release"]
    assert build["debug"]["CCACHE_NOHASHDIR"] == "true"
    assert "CCACHE_NOHASHDIR" not in build["rwdi"]  # the template's own wins (a build
    # preset's environment would override the configure preset's)
    assert "tok3n" not in json.dumps(doc)
    plain = cc.CacheConfig(remote="https://cache.example.com/cc", remote_mode="read-write")
    assert cc.base_environment(plain)["CCACHE_REMOTE_STORAGE"] == (
        "https://cache.example.com/cc|layout=subdirs")
    assert cc.command_environment(plain) == {}
    assert cc.base_environment(cc.CacheConfig(kind="none")) == {}


@pytest.mark.unit
def test_stats_are_read_without_zeroing(tmp_path: Path) -> None:
    source = tmp_path / "t.c"
    source.write_text("int f(void) { return 1; }\n")
    env = clean_env({"CCACHE_DIR": str(tmp_path / "cc")})

    def compile_once() -> None:
        subprocess.run([CCACHE, "gcc", "-c", str(source), "-o", str(tmp_path / "t.o")],
                       env=env, check=True)

    first = stats(tmp_path / "cc")
    compile_once()
    second = stats(tmp_path / "cc")
    compile_once()
    third = stats(tmp_path / "cc")
    assert (second - first).misses == 1 and (second - first).hits == 0
    assert (third - second).hits == 1 and (third - second).misses == 0
    assert third.cacheable == 2  # reading the counters left them alone


@pytest.mark.services
@requires_redis
def test_check_remote_answers_and_refuses(redis_server: Callable[..., Redis],
                                          tmp_path: Path) -> None:
    server = redis_server(user="vdev", password="pw-" + uuid.uuid4().hex[:8])
    assert check_remote(server.url, timeout=2).ok
    wrong = server.url.replace("pw-", "nope-")
    refused = check_remote(wrong, timeout=2)
    assert not refused.ok and "authentication" in refused.detail and "nope-" not in refused.detail
    assert check_remote(f"file://{tmp_path}").ok
    server.stop()
    down = check_remote(server.url, timeout=1)
    assert not down.ok and "does not answer" in down.detail
    assert "pw-" not in down.detail


# ----------------------------------------------------------------------------- real builds


@requires_nvcc
def test_host_only_edit_in_cu_is_rebuilt_not_served_stale(cuda_project: Project,
                                                          tmp_path: Path) -> None:
    """The stale-object regression: ccache's default mode hashes nvcc's device-side
    preprocessor output, which an edit to host-only code does not change."""
    project = cuda_project
    ccache_dir = Path(project.env["CCACHE_DIR"])
    project.run("build")
    assert project.value("_cuda_C") == 1234
    set_host_value(project.root, 4321)
    project.run("build")
    assert project.value("_cuda_C") == 4321, "vllm-dev's ccache settings served a stale object"
    set_host_value(project.root, 1234)
    before = stats(ccache_dir)
    project.run("build")
    assert project.value("_cuda_C") == 1234
    assert (stats(ccache_dir) - before).hits >= 1, "the cache was not used at all"

    # Control: the same edit with plain default-mode ccache. ccache's behaviour is information,
    # not vllm-dev's result: it returned the stale object (1234) with the ccache of 2026-11; a
    # ccache that fixes it is reported, not a failure.
    raw = mv.copy_project(tmp_path / "raw")
    build = tmp_path / "raw-build"
    cmake = str(project.python.parent / "cmake")
    env = clean_env({"CCACHE_DIR": str(tmp_path / "raw-ccache")})
    subprocess.run([cmake, "-S", str(raw), "-B", str(build), "-G", "Ninja",
                    f"-DVLLM_PYTHON_EXECUTABLE={project.python}", "-DVLLM_TARGET_DEVICE=cuda",
                    "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_CUDA_COMPILER={NVCC}",
                    f"-DCMAKE_CUDA_COMPILER_LAUNCHER={CCACHE}"],
                   env=env, check=True, capture_output=True)
    subprocess.run([cmake, "--build", str(build), "--target", "_cuda_C"], env=env, check=True,
                   capture_output=True)
    so_file = build / "_cuda_C.abi3.so"
    assert module_value(project.python, so_file) == 1234
    set_host_value(raw, 4321)
    subprocess.run([cmake, "--build", str(build), "--target", "_cuda_C"], env=env, check=True,
                   capture_output=True)
    stale = module_value(project.python, so_file)
    print(f"\nstale-object case: vllm-dev (depend mode) -> 4321 (correct); "
          f"default-mode ccache -> {stale}")
    assert stale in (1234, 4321), stale
    if stale != 1234:
        warnings.warn("default-mode ccache no longer returns the stale object here: the control "
                      "no longer shows the case vllm-dev's depend mode guards against",
                      stacklevel=1)


@pytest.mark.flow
def test_second_checkout_at_another_path_hits(tmp_path: Path) -> None:
    """base_dir = checkout and hash_dir off under -g: a debug build of a second checkout at
    another path is served entirely from the first one's cache."""
    shared = tmp_path / "shared-ccache"
    first = make_project(tmp_path / "a")
    second = make_project(tmp_path / "b")
    for project in (first, second):
        project.env["CCACHE_DIR"] = str(shared)
    first.run("build", "--preset", "debug")
    before = stats(shared)
    second.run("build", "--preset", "debug")
    delta = stats(shared) - before
    assert delta.cacheable >= 4
    assert delta.hits == delta.cacheable and delta.misses == 0, delta.counters
    assert second.value("_C") == 42
    presets = json.loads((second.root / "CMakeUserPresets.json").read_text())
    debug = next(p for p in presets["buildPresets"] if p["name"] == "debug")
    assert debug["environment"]["CCACHE_NOHASHDIR"] == "true"


@pytest.mark.services
@requires_redis
def test_remote_cache_fills_and_serves_another_checkout(
        tmp_path: Path, redis_server: Callable[..., Redis]) -> None:
    device = "cuda" if NVCC else "cpu"
    module, expected = ("_cuda_C", 1234) if NVCC else ("_C", 42)
    server = redis_server()
    a = make_project(tmp_path / "a", device=device)
    b = make_project(tmp_path / "b", device=device)
    a_cache, b_cache = Path(a.env["CCACHE_DIR"]), Path(b.env["CCACHE_DIR"])
    assert a_cache != b_cache and a.root != b.root

    fill = ("--cache-remote", server.url, "--cache-remote-mode", "read-write")
    a.run("prime", *fill)  # configure is not part of the figures
    cold = timed(lambda: a.run("build", *fill))
    filled = stats(a_cache)
    assert filled.get("remote_storage_write") >= filled.cacheable > 0
    assert a.value(module) == expected

    b.run("prime", env={"VLLM_DEV_CACHE_REMOTE": server.url})
    before = stats(b_cache)
    warm = timed(lambda: b.run("build", env={"VLLM_DEV_CACHE_REMOTE": server.url}))
    delta = stats(b_cache) - before
    assert delta.cacheable == filled.cacheable
    assert delta.remote_hits == delta.cacheable and delta.misses == 0, delta.counters
    assert b.value(module) == expected
    print(f"\nremote cache ({device}, {delta.cacheable} compiles): cold build in A "
          f"{cold.wall_s:.1f} s wall / {cold.cpu_s:.1f} s CPU; checkout B with remote hits "
          f"{warm.wall_s:.1f} s wall / {warm.cpu_s:.1f} s CPU")

    server.stop()
    assert server.process.returncode is not None
    b.env["CCACHE_DIR"] = str(tmp_path / "b-empty-ccache")  # nothing local to fall back on
    b.run("clean")
    before = stats(tmp_path / "b-empty-ccache")
    b.run("build", env={"VLLM_DEV_CACHE_REMOTE": server.url})
    down = stats(tmp_path / "b-empty-ccache") - before
    assert b.value(module) == expected
    assert down.misses == delta.cacheable and down.remote_hits == 0


@pytest.mark.services
@requires_redis
def test_credentialed_remote_url_stays_secret(tmp_path: Path,
                                              redis_server: Callable[..., Redis]) -> None:
    token = "tok-" + uuid.uuid4().hex
    server = redis_server(user="vdev", password=token)
    project = make_project(tmp_path)
    flags = ("--cache-remote", server.url, "--cache-remote-mode", "read-write")
    dry = project.run("--dry", "build", *flags)
    done = project.run("build", *flags)
    assert project.value("_C") == 42
    after = stats(Path(project.env["CCACHE_DIR"]))
    assert after.get("remote_storage_write") > 0, "the credentialed remote was not used"
    assert after.remote_errors == 0
    for name, text in (("--dry output", dry.stdout + dry.stderr),
                       ("build output", done.stdout + done.stderr)):
        assert token not in text, f"the password appears in {name}"
    presets = (project.root / "CMakeUserPresets.json").read_text()
    assert "$penv{VLLM_DEV_CACHE_REMOTE}" in presets
    assert "export VLLM_DEV_CACHE_REMOTE=<url>" in dry.stderr
    leaked = [path for path in project.root.rglob("*")
              if path.is_file() and ".venv" not in path.parts
              and token.encode() in path.read_bytes()]
    assert leaked == [], f"the password was written to {leaked}"


def test_plain_cmake_build_preset_gets_the_same_cache_settings(project: Project,
                                                               tmp_path: Path) -> None:
    """The settings live in the presets' environment: a ``cmake --build --preset`` typed by the
    user, with no CCACHE_* variable in the shell, uses vllm-dev's cache dir and depend mode."""
    cache_dir = tmp_path / "team-cache-dir"
    project.run("build", "--cache-dir", str(cache_dir), "--cache-max-size", "2G")
    cmake = str(project.python.parent / "cmake")
    env = clean_env()
    assert not any(k.startswith("CCACHE_") for k in env)
    subprocess.run([cmake, "--build", "--preset", "release", "--target", "clean"],
                   cwd=project.root, env=env, check=True, capture_output=True)
    before = stats(cache_dir)
    subprocess.run([cmake, "--build", "--preset", "release"], cwd=project.root, env=env,
                   check=True, capture_output=True)
    delta = stats(cache_dir) - before
    assert delta.cacheable >= 4 and delta.hits == delta.cacheable, delta.counters
    assert delta.get("direct_cache_hit") == delta.hits  # depend mode: no preprocessor run
    presets = json.loads((project.root / "CMakeUserPresets.json").read_text())
    release = next(p for p in presets["buildPresets"] if p["name"] == "release")
    assert release["environment"]["CCACHE_MAXSIZE"] == "2G"
    assert release["environment"]["CCACHE_DIR"] == str(cache_dir)


def test_missing_compiler_cache_is_one_clear_line(project: Project) -> None:
    if shutil.which("sccache") or (BIN_DIR / "sccache").exists() or (
            project.python.parent / "sccache").exists():
        pytest.skip("sccache is installed here, so it cannot be missing")
    done = project.run("prime", "--cache", "sccache", check=False)
    assert done.returncode != 0
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("vllm-dev: compiler cache sccache not found"), done.stderr
    assert "Traceback" not in done.stderr


@requires_redis
def test_doctor_shows_cache_settings_and_checks_remote(project: Project,
                                                       redis_server: Callable[..., Redis]) -> None:
    token = "tok-" + uuid.uuid4().hex
    server = redis_server(user="vdev", password=token)
    env = {"VLLM_DEV_CACHE_REMOTE": server.url, "VLLM_DEV_CACHE_MAX_SIZE": "3G"}

    def doctor() -> dict[str, dict[str, str]]:
        done = project.run("doctor", "--json", check=False, env=env)
        assert token not in done.stdout + done.stderr
        return {c["name"]: c for c in json.loads(done.stdout)["checks"]}

    rows = doctor()
    assert "depend_mode=true" in rows["cache settings"]["detail"]
    assert "max_size=3G" in rows["cache settings"]["detail"]
    assert rows["remote cache"]["status"] == "ok", rows["remote cache"]
    server.stop()
    rows = doctor()
    assert rows["remote cache"]["status"] == "warn"
    assert "does not answer" in rows["remote cache"]["detail"]
