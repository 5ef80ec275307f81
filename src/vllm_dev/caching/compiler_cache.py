"""The compiler cache (ccache by default) set up so that it is correct for CUDA and shareable.

Why each setting exists (all verified on the test project, see docs/team-cache.md):

- ccache's default (preprocessor) mode hashes ``nvcc -E`` output, which is the *device* pass: an
  edit to host-only code of a ``.cu`` file (``#ifndef __CUDA_ARCH__``) leaves that output
  unchanged and ccache returns the stale object. Depend mode hashes the source and the headers the
  compiler reports instead, and is correct.
- Two checkouts at different paths share nothing unless ``base_dir`` is the checkout (absolute
  paths become relative) and, with debug info, ``hash_dir`` is off (``-g`` embeds the cwd).
- Remote storage (redis, http, file) lets CI fill a cache that every developer reads.

Everything is passed as ``CCACHE_*`` variables in the *build* presets' ``environment`` block, so a
plain ``cmake --build --preset`` typed by the user behaves like vllm-dev's own builds, the user's
global ccache configuration is never touched, and changing any of it never reconfigures: the
configure presets (whose values are the configure fingerprint) name only the stable launcher of
:mod:`vllm_dev.caching.launcher`, which runs the cache the build preset names. A remote URL with
credentials never goes into a file: the preset refers to it as ``$penv{VLLM_DEV_CACHE_REMOTE}``.

This module holds the configuration and the environment it becomes; reading ccache's counters is
:mod:`vllm_dev.caching.cache_stats`, asking whether a remote cache answers is
:mod:`vllm_dev.caching.remote_check`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from vllm_dev.errors import VllmDevError

KINDS = ("ccache", "sccache", "none")
REMOTE_MODES = ("read-only", "read-write")
REMOTE_SCHEMES = ("redis", "http", "https", "file")
#: The variable a credentialed remote URL travels in (vllm-dev sets it for its own commands).
REMOTE_ENV = "VLLM_DEV_CACHE_REMOTE"
DEBUG_INFO_BUILD_TYPES = ("Debug", "RelWithDebInfo")
_SIZE_RE = re.compile(r"^\d+(\.\d+)?\s*([kKMGT]i?B?)?$")


@dataclass(frozen=True)
class CacheConfig:
    """The user's choices for the compiler cache (from :class:`~vllm_dev.config.settings.Settings`).
    """

    kind: str = "ccache"
    directory: str | None = None
    max_size: str | None = None
    remote: str | None = None
    remote_mode: str = "read-only"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never be printed: the remote URL when it carries credentials,
        and the password itself (it may show up URL-decoded)."""
        if not self.remote or not has_credentials(self.remote):
            return ()
        parts = urlsplit(self.remote)
        found = [self.remote]
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        elif parts.username:
            found += [parts.username, unquote(parts.username)]
        return tuple(dict.fromkeys(s for s in found if s))

    @property
    def remote_in_environment(self) -> bool:
        """A credentialed URL stays in the environment; presets only name the variable."""
        return bool(self.remote) and has_credentials(self.remote or "")


def config_from(settings: object) -> CacheConfig:
    """The cache part of the resolved settings (duck-typed to keep settings.py import-free)."""
    return CacheConfig(
        kind=getattr(settings, "cache", "ccache"),
        directory=getattr(settings, "cache_dir", None),
        max_size=getattr(settings, "cache_max_size", None),
        remote=getattr(settings, "cache_remote", None),
        remote_mode=getattr(settings, "cache_remote_mode", None) or "read-only",
    )


# ----------------------------------------------------------------------------- validation


def has_credentials(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.username or parts.password)


def redact(url: str) -> str:
    """``redis://user:secret@host:6379`` -> ``redis://***@host:6379``: safe to print."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def validate_remote(url: str, *, origin: str) -> str:
    """A URL ccache's remote storage understands, or one line naming what is wrong."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in REMOTE_SCHEMES:
        raise VllmDevError(
            f"{origin} must be a redis://, http(s):// or file:// URL, got {redact(text)!r} "
            "(e.g. redis://cache.example.com:6379)"
        )
    if parts.scheme == "file":
        if not parts.path.startswith("/"):
            raise VllmDevError(f"{origin}: a file:// URL needs an absolute path, e.g. "
                               "file:///srv/ccache")
    elif not parts.hostname:
        raise VllmDevError(f"{origin}: {redact(text)!r} names no host")
    if "|" in text or " " in text:
        raise VllmDevError(f"{origin}: give the bare URL; vllm-dev adds ccache's attributes "
                           "(use --cache-remote-mode for read-only/read-write)")
    return text


def validate_size(value: str, *, origin: str) -> str:
    text = str(value).strip()
    if not _SIZE_RE.match(text):
        raise VllmDevError(f"{origin} must be a size like 20G, 500M or 1.5T, got {value!r}")
    return text


# ----------------------------------------------------------------------------- environment


def remote_storage_spec(config: CacheConfig) -> str | None:
    """The ``CCACHE_REMOTE_STORAGE`` value as it goes into a preset (no secret in it)."""
    if not config.remote:
        return None
    url = f"$penv{{{REMOTE_ENV}}}" if config.remote_in_environment else config.remote
    attributes = []
    if urlsplit(config.remote).scheme in ("http", "https"):
        attributes.append("layout=subdirs")
    if config.remote_mode == "read-only":
        attributes.append("read-only")
    return "|".join([url, *attributes])


def base_environment(config: CacheConfig) -> dict[str, str]:
    """Variables every build preset gets in its ``environment`` (see the module's doc)."""
    env: dict[str, str] = {}
    if config.kind == "ccache":
        env["CCACHE_DEPEND"] = "true"
        env["CCACHE_BASEDIR"] = "${sourceDir}"
        if config.directory:
            env["CCACHE_DIR"] = str(Path(config.directory).expanduser().absolute())
        if config.max_size:
            env["CCACHE_MAXSIZE"] = config.max_size
        spec = remote_storage_spec(config)
        if spec:
            env["CCACHE_REMOTE_STORAGE"] = spec
    elif config.kind == "sccache":
        if config.directory:
            env["SCCACHE_DIR"] = str(Path(config.directory).expanduser().absolute())
        if config.max_size:
            env["SCCACHE_CACHE_SIZE"] = config.max_size
    return env


def preset_environment(config: CacheConfig, *, build_type: str) -> dict[str, str]:
    """Variables one preset needs beyond the base: with debug info, ``-g`` records the working
    directory, so ccache hashes it unless ``hash_dir`` is off; other checkouts would then miss."""
    if config.kind == "ccache" and build_type in DEBUG_INFO_BUILD_TYPES:
        return {"CCACHE_NOHASHDIR": "true"}
    return {}


def command_environment(config: CacheConfig) -> dict[str, str]:
    """What vllm-dev adds to its own commands' environment: the secret URL the presets name."""
    if config.remote_in_environment and config.remote:
        return {REMOTE_ENV: config.remote}
    return {}


def presets_note(settings: object) -> str | None:
    """What a user must know when the presets refer to a secret they do not hold: a plain
    ``cmake --build --preset`` needs ``VLLM_DEV_CACHE_REMOTE`` exported (ccache refuses an empty
    remote URL), unless the URL already came from that variable."""
    config = config_from(settings)
    origin = getattr(settings, "origin", lambda name: "")("cache_remote")
    if not config.remote_in_environment or origin == REMOTE_ENV:
        return None
    return (f"the remote cache URL has credentials, so CMakeUserPresets.json names "
            f"$penv{{{REMOTE_ENV}}} instead: export {REMOTE_ENV}=<url> before a plain "
            "`cmake --build --preset`")


def describe_settings(config: CacheConfig) -> str:
    """The settings vllm-dev gives the cache, as one printable ``doctor`` detail (the remote URL
    redacted); empty when there is nothing to say."""
    settings: dict[str, str] = {}
    if config.kind == "ccache":
        settings = {"depend_mode": "true", "base_dir": "<checkout>",
                    "hash_dir": "false with debug info"}
    if config.directory:
        settings["dir"] = config.directory
    if config.max_size:
        settings["max_size"] = config.max_size
    if config.remote:
        settings["remote"] = f"{redact(config.remote)} ({config.remote_mode})"
    return ", ".join(f"{k}={v}" for k, v in settings.items())


# ----------------------------------------------------------------------------- nvcc's own flags

#: What vllm-dev adds to nvcc's command line for one build (the split, host/parallelism.py),
#: composed after the user's ``NVCC_APPEND_FLAGS`` by the presets (see :func:`nvcc_environment`).
NVCC_EXTRA_ENV = "VLLM_DEV_NVCC_APPEND_FLAGS"


def nvcc_environment(config: CacheConfig) -> dict[str, str]:
    """Preset variables for nvcc's environment flags (CUDA presets).

    nvcc adds ``NVCC_PREPEND_FLAGS``/``NVCC_APPEND_FLAGS`` to every command it runs, and ccache
    never sees them: its key is the command line. A user's ``NVCC_APPEND_FLAGS=-G`` was served the
    non-debug object of the same command (tests/test_compiler_cache.py). So the key gets both
    variables, through ccache's ``namespace`` (a string hashed into every key; the user's own
    ``CCACHE_NAMESPACE`` is kept in front), read by cmake from the environment of each
    ``cmake --build`` (``$penv``: a plain build typed by the user gets it too).

    vllm-dev's own addition, ``-split-compile=N``, travels in :data:`NVCC_EXTRA_ENV` and is appended
    here, after the user's flags (never replacing them), and stays *out* of the key: the split
    changes how long nvcc takes, not what it means, so a clean rebuild after split edits hits.
    """
    env = {"NVCC_APPEND_FLAGS": f"$penv{{NVCC_APPEND_FLAGS}} $penv{{{NVCC_EXTRA_ENV}}}"}
    if config.kind == "ccache":
        env["CCACHE_NAMESPACE"] = ("$penv{CCACHE_NAMESPACE}|nvcc:$penv{NVCC_PREPEND_FLAGS}|"
                                   "$penv{NVCC_APPEND_FLAGS}")
    return env
