"""The compiler launcher every preset names: one small script in the checkout's ``.vllm-dev/``.

Why a script of our own rather than ccache's path: a configure preset's cache variables end up in
every compile command of ``build.ninja``, so the launcher's spelling must not depend on anything
but the checkout. ccache's absolute path differs between two installs of vllm-dev (a ``uv tool
install`` and a ``pip install -e`` clone each bring their own), and naming it made the two
reconfigure each other on every build; switching the cache (``--cache``) or the build farm
(``--dist``, which compiles through sccache) changed every compile command too. The presets now
name ``${sourceDir}/.vllm-dev/compiler-launcher``, and the build presets' ``environment`` says
which cache runs: ``VLLM_DEV_COMPILER_CACHE`` (an absolute path to ccache or sccache; empty: none).
So changing the cache, its remote, directory or size, or the farm rewrites the build presets only,
and ``build.ninja`` is untouched. A plain ``cmake --build --preset`` gets the same environment
from the build preset, so it compiles exactly as ``vllm-dev build`` does.

It is a POSIX shell script, not Python: it runs once per compile, and ``sh`` starts in about a
millisecond (see bench/launcher_overhead.py for the measured cost against calling ccache directly).
It is the one dispatch point of a compile: a later per-compile concern (e.g. a budget of nvcc
threads) belongs here, read from a variable of the build preset's environment like the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from vllm_dev.process.files import write_if_changed
from vllm_dev.state import layout
from vllm_dev.state.records import ensure_state_dir

NAME = layout.LAUNCHER
#: The variable of the build presets' environment that names the compiler cache to run.
CACHE_ENV = "VLLM_DEV_COMPILER_CACHE"
#: How the presets name the launcher: the same for every install of vllm-dev.
SPELLING = "${sourceDir}/" + layout.STATE_DIR + "/" + NAME

SCRIPT = f"""#!/bin/sh
# vllm-dev's compiler launcher (written by vllm-dev: see vllm_dev/caching/launcher.py).
# CMakeUserPresets.json names this file in every configure preset, so that compile commands are
# the same for every install of vllm-dev; the build preset's environment names the compiler
# cache to run in {CACHE_ENV} (empty or unset: the compiler alone).
if [ -n "${CACHE_ENV}" ]; then
  if [ ! -x "${CACHE_ENV}" ]; then
    echo "vllm-dev compiler launcher: {CACHE_ENV}=${CACHE_ENV} is not an executable; run" \\
      "vllm-dev build once (it renews CMakeUserPresets.json) or pass --cache none" >&2
    exit 127
  fi
  exec "${CACHE_ENV}" "$@"
fi
exec "$@"
"""


def path(state_dir: Path) -> Path:
    return state_dir / NAME


def write_launcher(state_dir: Path) -> Path:
    """Write the launcher when it is missing or not this version's (and make it executable)."""
    ensure_state_dir(state_dir)
    target = path(state_dir)
    write_if_changed(target, SCRIPT)
    mode = target.stat().st_mode
    if mode & 0o111 != 0o111:
        os.chmod(target, mode | 0o755)
    return target
