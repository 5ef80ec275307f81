"""Whether a remote compiler cache answers: the ``remote cache`` row of ``vllm-dev doctor``.

ccache itself never says why a remote is unused (it counts ``remote_storage_error`` and compiles
locally), so doctor asks the remote directly, within a few seconds, and names no secret.
"""

from __future__ import annotations

import base64
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from vllm_dev.caching.compiler_cache import redact


@dataclass(frozen=True)
class RemoteCheck:
    """The answer (or its absence), as a doctor row: ``detail`` has the URL redacted."""

    ok: bool
    detail: str


def check_remote(url: str, *, timeout: float = 3.0) -> RemoteCheck:
    """Whether the remote cache answers within ``timeout`` seconds (redis: AUTH + PING; http:
    any HTTP answer; file: the directory exists). Never raises; the detail names no secret."""
    parts = urlsplit(url)
    shown = redact(url)
    try:
        if parts.scheme == "redis":
            return _check_redis(parts.hostname or "localhost", parts.port or 6379,
                                unquote(parts.username or ""), unquote(parts.password or ""),
                                timeout=timeout, shown=shown)
        if parts.scheme in ("http", "https"):
            return _check_http(url, timeout=timeout, shown=shown)
        if parts.scheme == "file":
            path = Path(unquote(parts.path))
            if path.is_dir():
                return RemoteCheck(True, f"{shown}: directory exists")
            return RemoteCheck(False, f"{shown}: no such directory (create it or fix the URL)")
    except OSError as exc:
        return RemoteCheck(False, f"{shown} does not answer: {exc.strerror or exc}")
    return RemoteCheck(False, f"{shown}: unsupported scheme {parts.scheme!r}")


# Hand-written on purpose: doctor sends two fixed commands (AUTH, PING) and reads one status line
# each, which is all of RESP it needs. redis-py would be a runtime dependency of every install for
# one doctor row (ccache talks to redis through its own built-in client, not through Python), and
# `redis-cli` is rarely installed where ccache runs. tests/test_compiler_cache.py checks this
# against a real redis-server (marker: services), with and without credentials.
def _redis_command(*words: str) -> bytes:
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _check_redis(host: str, port: int, user: str, password: str, *, timeout: float,
                 shown: str) -> RemoteCheck:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        reader = sock.makefile("rb")
        if password:
            auth = ("AUTH", user, password) if user else ("AUTH", password)
            sock.sendall(_redis_command(*auth))
            answer = reader.readline().strip()
            if answer != b"+OK":
                return RemoteCheck(False, f"{shown}: authentication refused (check the "
                                          "user and password)")
        sock.sendall(_redis_command("PING"))
        answer = reader.readline().strip()
    if answer == b"+PONG":
        return RemoteCheck(True, f"{shown}: redis answered PING")
    return RemoteCheck(False, f"{shown}: unexpected redis answer {answer[:40]!r}")


def _check_http(url: str, *, timeout: float, shown: str) -> RemoteCheck:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    request = urllib.request.Request(urlunsplit((parts.scheme, netloc, parts.path or "/", "", "")),
                                     method="HEAD")
    if parts.username or parts.password:
        token = base64.b64encode(
            f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except urllib.error.URLError as exc:
        return RemoteCheck(False, f"{shown} does not answer: {exc.reason}")
    if status in (401, 403):
        return RemoteCheck(False, f"{shown}: HTTP {status} (check the credentials)")
    return RemoteCheck(True, f"{shown}: HTTP {status}")
