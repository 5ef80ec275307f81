"""A real sccache-dist build farm for tests and benchmarks: one scheduler and N build servers
(builder ``overlay``: bubblewrap sandboxes), each a process of its own, stopped by PID.

Plain functions and a dataclass (no pytest), so ``bench/gpu_dist.sh`` can start the same farm.
On loopback by default (127.0.0.1, ports the kernel says are free). With ``netns=True`` (root,
iproute2) each build server runs in a network namespace of its own, reached over a veth pair
with its own /30 subnet, as a server on another host is: the scheduler listens on the host side
of every pair, clients send the servers' jobs to their namespace addresses, and nothing of a
server is on the host's loopback. The namespaces and links are named after the farm and removed
with it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Farm:
    """A running farm. ``token`` is the client token the scheduler accepts."""

    root: Path
    url: str
    token: str
    scheduler: subprocess.Popen[bytes]
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    server_addrs: list[str] = field(default_factory=list)
    bin_dir: Path | None = None  # where sccache/sccache-dist came from (for the caller)
    namespaces: list[str] = field(default_factory=list)  # netns of the servers (netns=True)

    @property
    def logs(self) -> list[Path]:
        return sorted(self.root.glob("*.log"))

    def status(self) -> dict[str, int]:
        request = urllib.request.Request(f"{self.url}/api/v1/scheduler/status",
                                         headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return dict(json.loads(answer.read()))

    def stop_scheduler(self) -> None:
        _stop(self.scheduler)

    def stop(self) -> None:
        for proc in [*self.servers, self.scheduler]:
            _stop(proc)
        for name in self.namespaces:  # removing a namespace removes its end of the veth pair
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.namespaces.clear()

    def toolchains_used(self, index: int) -> set[str]:
        """Toolchains server ``index`` ran jobs with (from its debug log): one per compiler
        (g++; nvcc's cudafe++/cicc/ptxas), so two or more mean it built for both languages."""
        text = (self.root / f"server{index}.log").read_text(errors="replace")
        found = set()
        for line in text.splitlines():
            if "Performing build in" in line and "toolchain_dir:" in line:
                found.add(line.rsplit("toolchains/", 1)[-1].split('"')[0])
        return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


def make_namespace(name: str, index: int, subnet: int) -> tuple[str, str]:
    """Network namespace ``name`` joined to the host by a veth pair on 10.<subnet>.<4i>/30:
    (host side address, namespace side address)."""
    host, inside = f"10.{subnet}.0.{4 * index + 1}", f"10.{subnet}.0.{4 * index + 2}"
    outer, inner = f"{name[:10]}h", f"{name[:10]}n"
    _ip("netns", "add", name)
    _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
    _ip("link", "set", inner, "netns", name)
    _ip("addr", "add", f"{host}/30", "dev", outer)
    _ip("link", "set", outer, "up")
    _ip("-n", name, "addr", "add", f"{inside}/30", "dev", inner)
    _ip("-n", name, "link", "set", inner, "up")
    _ip("-n", name, "link", "set", "lo", "up")
    return host, inside


def start_farm(root: Path, *, sccache_dist: str, servers: int = 2,
               bwrap: str | None = None, netns: bool = False) -> Farm:
    """Scheduler (client auth: token; server auth: jwt_hs256) and ``servers`` build servers;
    ``netns``: each server in a network namespace of its own (see the module docstring)."""
    bwrap = bwrap or shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError("bwrap not found: `apt-get install -y bubblewrap`")
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    key = subprocess.run([sccache_dist, "auth", "generate-jwt-hs256-key"], check=True,
                         capture_output=True, text=True).stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tag = secrets.token_hex(3)
    subnet = 200 + int(tag, 16) % 50  # 10.200-249.0.0/24: one per farm, unlikely to clash
    links: list[tuple[str, str, str]] = []  # (namespace, host address, namespace address)
    if netns:
        try:
            for index in range(servers):
                name = f"vdf{tag}{index}"
                links.append((name, *make_namespace(name, index, subnet)))
        except RuntimeError:
            for name, _, _ in links:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            raise
    config = root / "scheduler.toml"
    bind = "0.0.0.0" if netns else "127.0.0.1"  # the servers reach it on their veth's host side
    config.write_text(f'public_addr = "{bind}:{port}"\n\n[client_auth]\ntype = "token"\n'
                      f'token = "{token}"\n\n[server_auth]\ntype = "jwt_hs256"\n'
                      f'secret_key = "{key}"\n')
    env = {**os.environ, "SCCACHE_NO_DAEMON": "1", "SCCACHE_LOG": "debug"}
    # sccache-dist 0.16's scheduler logs the offered AND the expected client token at WARN when
    # they differ: run it at "error", as the README tells farm admins to.
    scheduler = _spawn([sccache_dist, "scheduler", "--config", str(config)],
                       root / "scheduler.log", {**env, "SCCACHE_LOG": "error"})
    farm = Farm(root=root, url=url, token=token, scheduler=scheduler,
                namespaces=[name for name, _, _ in links])
    try:
        _wait(lambda: farm.status() is not None, "the scheduler to answer")
        for index in range(servers):
            addr = f"{links[index][2]}:{free_port()}" if netns else f"127.0.0.1:{free_port()}"
            scheduler_url = f"http://{links[index][1]}:{port}" if netns else url
            server_token = subprocess.run(
                [sccache_dist, "auth", "generate-jwt-hs256-server-token", "--config",
                 str(config), "--server", addr], check=True, capture_output=True,
                text=True).stdout.strip()
            work = root / f"server{index}"
            (work / "toolchains").mkdir(parents=True, exist_ok=True)
            (work / "build").mkdir(parents=True, exist_ok=True)
            server_config = root / f"server{index}.toml"
            server_config.write_text(
                f'cache_dir = "{work / "toolchains"}"\npublic_addr = "{addr}"\n'
                f'scheduler_url = "{scheduler_url}"\n\n[builder]\ntype = "overlay"\n'
                f'build_dir = "{work / "build"}"\nbwrap_path = "{bwrap}"\n\n'
                f'[scheduler_auth]\ntype = "jwt_token"\ntoken = "{server_token}"\n')
            argv = [sccache_dist, "server", "--config", str(server_config)]
            if netns:  # `ip netns exec` execs the server: its PID is the server's
                argv = ["ip", "netns", "exec", links[index][0], *argv]
            farm.servers.append(_spawn(argv, root / f"server{index}.log", env))
            farm.server_addrs.append(addr)
        def registered() -> bool:
            gone = [i for i, proc in enumerate(farm.servers) if proc.poll() is not None]
            if gone:
                raise RuntimeError(f"build server(s) {gone} exited at start")
            return farm.status().get("num_servers") == servers

        _wait(registered, f"{servers} build servers to register")
    except RuntimeError as exc:  # say why: a server that cannot sandbox logs it and exits
        farm.stop()
        tails = "\n".join(f"--- {log.name}:\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-15:]) for log in farm.logs)
        raise RuntimeError(f"{exc}\n{tails}") from None
    except BaseException:
        farm.stop()
        raise
    return farm


def _wait(ready: object, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if ready():  # type: ignore[operator]
                return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what} ({last})")


def files_containing(needle: str, *roots: Path, skip: tuple[Path, ...] = ()) -> list[Path]:
    """Every regular file under ``roots`` whose bytes contain ``needle``."""
    data = needle.encode()
    found = []
    for root in roots:
        if root.is_file():
            candidates = [root]
        else:
            candidates = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        for path in candidates:
            if any(path == s or s in path.parents for s in skip):
                continue
            try:
                if data in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found
