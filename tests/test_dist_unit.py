"""--dist plumbing without a farm: settings, token sources, the scheduler check against a closed
port, sccache's statistics, the client configuration (the token only in the in-memory one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vllm_dev.caching import dist
from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError

from conftest import BIN_DIR, Project
from dist_farm import free_port


@pytest.mark.unit
def test_url_setting_and_its_conflicts() -> None:
    s = Settings.resolve(flags={}, environ={"VLLM_DEV_DIST": "http://127.0.0.1:10600/"},
                         config={"cache": "ccache"})
    assert s.dist == "http://127.0.0.1:10600" and s.cache == "sccache"
    assert Settings.resolve(flags={}, environ={}, config={"dist": "https://farm"}).dist
    for bad in ("farm.example.com", "ftp://farm", "https://user:secret@farm", "http://h:99999",
                "http://[::1", "http://h /x", 7, "ftp://u:secret@h"):
        with pytest.raises(VllmDevError, match="--dist") as err:
            Settings.resolve(flags={"dist": bad}, environ={})
        assert "secret" not in str(err.value)
    with pytest.raises(VllmDevError, match="VLLM_DEV_CACHE=ccache"):
        Settings.resolve(flags={"dist": "http://h"}, environ={"VLLM_DEV_CACHE": "ccache"})
    with pytest.raises(VllmDevError, match="ccache remote"):
        Settings.resolve(flags={"dist": "http://h", "cache_remote": "redis://h:1"}, environ={})


@pytest.mark.unit
def test_token_from_variable_or_file(tmp_path: Path) -> None:
    assert dist.read_token({"VLLM_DEV_DIST_TOKEN": " abc \n"}) == "abc"
    (tmp_path / "t").write_text("from-file\n")
    assert dist.read_token({"VLLM_DEV_DIST_TOKEN_FILE": str(tmp_path / "t")}) == "from-file"
    for environ, message in (({}, "VLLM_DEV_DIST_TOKEN="),
                             ({"VLLM_DEV_DIST_TOKEN_FILE": str(tmp_path / "none")}, "cannot read"),
                             ({"VLLM_DEV_DIST_TOKEN_FILE": "/dev/null"}, "is empty")):
        with pytest.raises(VllmDevError, match=message):
            dist.read_token(environ)


@pytest.mark.unit
def test_scheduler_down_is_a_problem_not_an_error() -> None:
    status = dist.check_farm(f"http://127.0.0.1:{free_port()}", "t", timeout=2)
    assert not status.ok and "does not answer" in status.line()
    assert status.line().endswith("compiling locally with local parallelism")


@pytest.mark.unit
def test_stats_say_where_compiles_ran() -> None:
    text = json.dumps({"stats": {
        "compilations": 9, "dist_errors": 1,
        "dist_compiles": {"10.0.0.1:10501": 3, "10.0.0.2:10501": 4},
        "cache_hits": {"counts": {"C/C++": 2}},
        "cache_misses": {"counts": {"C/C++": 1, "CUDA": 1, "PTX": 1, "CUBIN": 1,
                                    "CUDA (Device code)": 1},
                         "adv_counts": {"cuda [nvcc]": 1}}}})
    stats = dist.parse_stats(text)
    assert stats.distributed == 7 and stats.local == 1 and stats.errors == 1
    assert stats.hits == 2 and stats.misses == 5
    assert "10.0.0.1:10501 3" in stats.line() and "1 local, 1 error(s)" in stats.line()


@pytest.mark.unit
def test_token_only_in_the_in_memory_config(tmp_path: Path) -> None:
    client = dist.DistClient(sccache=BIN_DIR / "sccache", state_dir=tmp_path / ".vllm-dev",
                             url="http://127.0.0.1:1", token="s3cret", cache_dir=None)
    client.write_public_config()
    assert "s3cret" not in client.config_path.read_text()
    assert 'token = "s3cret"' in client.secret_config()
    assert "s3cret" not in repr(client)
    assert client.port == dist.port_for(tmp_path / ".vllm-dev") != 4226


def test_missing_token_is_one_line(project: Project) -> None:
    done = project.run("build", "--dist", f"http://127.0.0.1:{free_port()}", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "vllm-dev: --dist needs the scheduler's client token")
    if shutil.which("sccache") is None and not (BIN_DIR / "sccache").exists():
        done = project.run("build", "--dist", f"http://127.0.0.1:{free_port()}", check=False,
                           env={"VLLM_DEV_DIST_TOKEN": "t"})
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(
            "vllm-dev: --dist needs sccache 0.10 or newer"), done.stderr


# ----------------------------------------------------------------------------- wrapper compilers


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.mark.unit
def test_a_plain_wrapper_resolves_to_its_compiler(tmp_path: Path) -> None:
    import os

    from vllm_dev.caching import farm_toolchains as ft

    gxx = shutil.which("g++")
    assert gxx, "the unit tier needs g++"
    wrapper = _script(tmp_path / "bin" / "g++", f'exec {gxx} "$@"')
    assert not ft.is_elf(wrapper) and ft.is_elf(Path(gxx).resolve())
    env = dict(os.environ)
    work = tmp_path / "work"
    work.mkdir()
    real = ft.real_driver(wrapper, env, work)
    assert real == Path(gxx).resolve()
    assert ft.check_same(wrapper, real, env, work) is None
    # found by name on PATH, by CXX, and once only
    path_env = {"PATH": f"{wrapper.parent}:{os.environ['PATH']}", "CXX": str(wrapper)}
    found = ft.candidates(path_env, [str(wrapper)])
    assert found[0] == wrapper and found.count(wrapper) == 1


@pytest.mark.unit
@pytest.mark.parametrize(("body", "said"), [
    ('exec {gxx} -DVLLM_DEV_WRAPPED=1 "$@"', "VLLM_DEV_WRAPPED=1"),
    ('exec {gxx} --sysroot=/opt/sysroot "$@"', "/opt/sysroot"),
    ('COMPILER_PATH={extra} exec {gxx} "$@"', "COMPILER_PATH={extra}/"),  # an env variable
])
def test_a_wrapper_that_changes_the_compile_is_refused(tmp_path: Path, body: str,
                                                       said: str) -> None:
    import os

    from vllm_dev.caching import farm_toolchains as ft

    gxx = shutil.which("g++")
    assert gxx
    extra = tmp_path / "extra"
    extra.mkdir()
    wrapper = _script(tmp_path / "bin" / "g++", body.format(gxx=gxx, extra=extra))
    said = said.format(extra=extra)
    sccache = _script(tmp_path / "sccache", "exit 3")  # never reached: the check refuses first
    results = ft.overrides([wrapper], directory=tmp_path / "tc", sccache=sccache,
                           env=dict(os.environ))
    assert len(results) == 1 and isinstance(results[0], ft.Refused), results
    assert said in results[0].reason, results[0].reason
    assert not (tmp_path / "tc").exists()


@pytest.mark.unit
def test_overridden_toolchains_go_into_the_in_memory_config(tmp_path: Path) -> None:
    import tomllib

    from vllm_dev.caching.farm_toolchains import Override

    client = dist.DistClient(sccache=Path("/bin/true"), state_dir=tmp_path, url="http://h:1",
                             token="s3cret")
    override = Override("/opt/gcc/bin/g++", "/opt/gcc-13/bin/g++", tmp_path / "g++.tar.gz")
    config = tomllib.loads(client.secret_config([override]))
    assert config["dist"]["toolchains"] == [{
        "type": "path_override", "compiler_executable": "/opt/gcc/bin/g++",
        "archive": str(tmp_path / "g++.tar.gz"),
        "archive_compiler_executable": "/opt/gcc-13/bin/g++"}]
    assert tomllib.loads(client.secret_config())["dist"]["toolchains"] == []
