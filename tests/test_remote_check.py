"""The remote cache looked at: ``doctor --cache-remote URL`` (reachable, readable, writable in
read-write mode) against a real redis-server with a reading and a writing user, and the short
probe at build start (one warning line, the build goes on, never more than about 200 ms)."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from test_compiler_cache import Redis, free_port, redis_server, requires_redis  # noqa: F401
from vllm_dev.caching.remote_check import PROBE_SECONDS, check_remote, start_probe

from conftest import Project


@pytest.mark.unit
def test_probe_of_a_closed_port_and_of_a_silent_host() -> None:
    said: list[str] = []
    closed = start_probe(f"redis://127.0.0.1:{free_port()}")
    assert closed is not None
    answer = closed.warn(said.append, check_command="vllm-dev doctor")
    assert answer is not None and not answer.ok
    assert len(said) == 1 and said[0].startswith("warning: remote cache unused: redis://127.0.0.1:")
    assert "does not answer" in said[0] and "`vllm-dev doctor`" in said[0]
    # a host that takes the connection and never answers: the probe gives up on time
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        said.clear()
        started = time.monotonic()
        probe = start_probe(f"redis://user:s3cret@127.0.0.1:{port}")
        assert probe is not None
        probe.warn(said.append, check_command="vllm-dev doctor")
        assert time.monotonic() - started < PROBE_SECONDS + 0.25
    assert len(said) == 1 and "s3cret" not in said[0] and "***@127.0.0.1" in said[0], said
    assert start_probe(None) is None


@pytest.mark.unit
def test_file_remote_modes(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    assert check_remote(url, mode="read-only").detail.endswith(
        "directory exists and is readable (read-only mode: writing not checked)")
    written = check_remote(url, mode="read-write")
    assert written.ok and written.detail.endswith("readable and writable"), written
    assert list(tmp_path.iterdir()) == []  # the probe file is gone again
    assert not check_remote(f"file://{tmp_path}/nope", mode="read-only").ok


@pytest.mark.services
@requires_redis
def test_doctor_checks_reading_and_writing(redis_server: Callable[..., Redis],  # noqa: F811
                                           tmp_path: Path) -> None:
    server = redis_server(user="ci", password="pw-" + uuid.uuid4().hex[:8])
    full = check_remote(server.url, mode="read-write")
    assert full.ok and full.detail.endswith("reachable, readable and writable"), full
    # the README's developer user: may GET, may not SET
    auth = server.url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    subprocess.run(["redis-cli", "-p", str(server.port), "--user", "ci", "--pass", auth,
                    "--no-auth-warning", "ACL", "SETUSER", "dev", "on", ">devpw", "~*", "-@all",
                    "+get", "+ping", "+auth", "+hello"], check=True, capture_output=True)
    dev = f"redis://dev:devpw@127.0.0.1:{server.port}"
    reading = check_remote(dev, mode="read-only")
    assert reading.ok and "reachable and readable" in reading.detail, reading
    writing = check_remote(dev, mode="read-write")
    assert not writing.ok and "not writable" in writing.detail and "devpw" not in \
        writing.detail, writing


@pytest.mark.flow
def test_build_with_an_unreachable_remote_warns_once_and_builds(project: Project) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    done = project.run("build", "--cache-remote", url)
    warned = [ln for ln in done.stderr.splitlines() if "remote cache unused" in ln]
    assert warned == [f"vllm-dev: warning: remote cache unused: {url} does not answer: "
                      "Connection refused; this build uses the local cache only (check it "
                      f"with `vllm-dev doctor --cache-remote {url}`)"], done.stderr
    assert project.value("_C") == 42
    remembered = project.run("build")  # the flag was remembered (issue 19): warned again
    assert [ln for ln in remembered.stderr.splitlines() if "remote cache unused" in ln]
    project.run("settings", "--forget", "cache_remote")
    quiet = project.run("build")  # no remote: no probe, no line
    assert "remote cache" not in quiet.stderr
