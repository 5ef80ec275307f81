"""Whether a remote compiler cache answers: ``vllm-dev doctor``'s row, and a build's first line.

ccache itself never says why a remote is unused (it counts ``remote_storage_error`` and compiles
locally), so vllm-dev asks the remote directly and names no secret:

* ``doctor`` (and ``doctor --cache-remote URL``): reachable, readable, and, in ``read-write``
  mode, writable (redis: PING, GET, then SET of a probe key that expires in a minute; http: a
  HEAD, then a PUT of a small probe object; file: the directory, then a probe file), within a
  few seconds;
* every build with a remote: :func:`start_probe` asks in a thread of its own (reachable only,
  about 200 ms at most) while the build resolves its plan; :meth:`Probe.warn` then waits for
  whatever is left of those 200 ms and says, in one line, when the remote does not answer. A
  no-op build is not slowed: the answer of a remote that answers is there before it is needed.
"""

from __future__ import annotations

import base64
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from vllm_dev.caching.compiler_cache import redact


@dataclass(frozen=True)
class RemoteCheck:
    """The answer (or its absence), as a doctor row: ``detail`` has the URL redacted."""

    ok: bool
    detail: str


PROBE_KEY = "vllm-dev-probe"


def check_remote(url: str, *, timeout: float = 3.0, mode: str | None = None) -> RemoteCheck:
    """Whether the remote cache answers within ``timeout`` seconds (redis: AUTH + PING; http:
    any HTTP answer; file: the directory exists); with ``mode`` (``read-only``/``read-write``)
    also whether it can be read and, in ``read-write`` mode, written. Never raises; the detail
    names no secret."""
    parts = urlsplit(url)
    shown = redact(url)
    try:
        if parts.scheme == "redis":
            return _check_redis(parts.hostname or "localhost", parts.port or 6379,
                                unquote(parts.username or ""), unquote(parts.password or ""),
                                timeout=timeout, shown=shown, mode=mode)
        if parts.scheme in ("http", "https"):
            return _check_http(url, timeout=timeout, shown=shown, mode=mode)
        if parts.scheme == "file":
            return _check_directory(Path(unquote(parts.path)), shown=shown, mode=mode)
    except OSError as exc:
        return RemoteCheck(False, f"{shown} does not answer: {exc.strerror or exc}")
    return RemoteCheck(False, f"{shown}: unsupported scheme {parts.scheme!r}")


def _check_directory(path: Path, *, shown: str, mode: str | None) -> RemoteCheck:
    if not path.is_dir():
        return RemoteCheck(False, f"{shown}: no such directory (create it or fix the URL)")
    if mode is None:
        return RemoteCheck(True, f"{shown}: directory exists")
    if not os.access(path, os.R_OK | os.X_OK):
        return RemoteCheck(False, f"{shown}: directory exists, not readable by this user")
    if mode != "read-write":
        return RemoteCheck(True, f"{shown}: directory exists and is readable (read-only mode: "
                                 "writing not checked)")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=f".{PROBE_KEY}-"):
            pass
    except OSError as exc:
        return RemoteCheck(False, f"{shown}: readable, not writable ({exc.strerror}); "
                                  "read-write mode needs to write there")
    return RemoteCheck(True, f"{shown}: directory exists, readable and writable")


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
                 shown: str, mode: str | None = None) -> RemoteCheck:
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
        if answer != b"+PONG":
            return RemoteCheck(False, f"{shown}: unexpected redis answer {answer[:40]!r}")
        if mode is None:
            return RemoteCheck(True, f"{shown}: redis answered PING")
        sock.sendall(_redis_command("GET", PROBE_KEY))
        answer = reader.readline().strip()
        if answer.startswith(b"$") and answer != b"$-1":
            reader.read(int(answer[1:]) + 2)  # the value and its CRLF
        if answer.startswith(b"-"):
            return RemoteCheck(False, f"{shown}: reachable, not readable (redis: "
                                      f"{answer[1:80].decode(errors='replace')})")
        if mode != "read-write":
            return RemoteCheck(True, f"{shown}: reachable and readable (read-only mode: writing "
                                     "not checked)")
        sock.sendall(_redis_command("SET", PROBE_KEY, "1", "EX", "60"))
        answer = reader.readline().strip()
    if answer != b"+OK":
        return RemoteCheck(False, f"{shown}: reachable and readable, not writable (redis: "
                                  f"{answer[1:80].decode(errors='replace')}); read-write mode "
                                  "needs a user that may SET")
    return RemoteCheck(True, f"{shown}: reachable, readable and writable")


def _check_http(url: str, *, timeout: float, shown: str, mode: str | None = None
                ) -> RemoteCheck:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
    headers = {}
    if parts.username or parts.password:
        token = base64.b64encode(
            f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"

    def ask(method: str, target: str, data: bytes | None = None) -> int | str:
        request = urllib.request.Request(target, method=method, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except urllib.error.URLError as exc:
            return str(exc.reason)

    status = ask("HEAD", base)
    if isinstance(status, str):
        return RemoteCheck(False, f"{shown} does not answer: {status}")
    if status in (401, 403):
        return RemoteCheck(False, f"{shown}: HTTP {status} (check the credentials)")
    if mode is None:
        return RemoteCheck(True, f"{shown}: HTTP {status}")
    if mode != "read-write":
        return RemoteCheck(True, f"{shown}: reachable and readable, HTTP {status} (read-only "
                                 "mode: writing not checked)")
    put = ask("PUT", base.rstrip("/") + f"/{PROBE_KEY}", b"vllm-dev probe\n")
    if isinstance(put, str) or not 200 <= put < 300:
        return RemoteCheck(False, f"{shown}: reachable and readable (HTTP {status}), not "
                                  f"writable (PUT: {put}); read-write mode needs PUT")
    return RemoteCheck(True, f"{shown}: reachable, readable and writable (HTTP {status}, PUT "
                             f"{put})")


PROBE_SECONDS = 0.2


class Probe:
    """A build's look at its remote cache, in a thread of its own (see the module docstring)."""

    def __init__(self, url: str, *, timeout: float = PROBE_SECONDS) -> None:
        self.url = url
        self.timeout = timeout
        self.started = time.monotonic()
        self.answer: RemoteCheck | None = None
        self._thread = threading.Thread(target=self._ask, name="vllm-dev remote probe",
                                        daemon=True)
        self._thread.start()

    @property
    def shown(self) -> str:
        """The URL as it may be printed (credentials hidden)."""
        return redact(self.url)

    def _ask(self) -> None:
        self.answer = check_remote(self.url, timeout=self.timeout)

    def warn(self, say: Callable[[str], None], *, check_command: str) -> RemoteCheck | None:
        """Wait for what is left of the probe's time, then one line when the remote does not
        answer (None: no answer in time, which is one too)."""
        self._thread.join(max(0.0, self.started + self.timeout + 0.05 - time.monotonic()))
        answer = self.answer
        if answer is None or not answer.ok:
            why = answer.detail if answer else f"{redact(self.url)} gave no answer within " \
                f"{self.timeout * 1000:.0f} ms"
            say(f"warning: remote cache unused: {why}; this build uses the local cache only "
                f"(check it with `{check_command}`)")
        return answer


def start_probe(url: str | None) -> Probe | None:
    """A :class:`Probe` of ``url`` started now (None without a remote)."""
    return Probe(url) if url else None
