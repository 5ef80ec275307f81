"""The build farm around one build (``--dist``): the session of this checkout's own sccache client.

A command-level piece, above the steps: the pipeline (pipeline.py) wraps a build's stages in
:func:`farm_session`, which takes the build's plan and its report's recorder. What it drives lives
below, in the caches' layer: the client, the token's path, the scheduler's checks and the
statistics (caching/dist.py), and the compilers packaged for the servers
(caching/farm_toolchains.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import TYPE_CHECKING

from vllm_dev.caching import compiler_cache as cc
from vllm_dev.caching.dist import DistClient, DistPlan
from vllm_dev.errors import VllmDevError
from vllm_dev.planning.plan import BuildPlan
from vllm_dev.reporting.recorder import Recorder
from vllm_dev.state import layout
from vllm_dev.state.records import ensure_state_dir

if TYPE_CHECKING:
    from vllm_dev.caching.farm_toolchains import Override


@contextmanager
def farm_session(plan: BuildPlan, recorder: Recorder) -> Iterator[None]:
    """Around one build with ``--dist``: say up front what the farm is, start this checkout's
    sccache server (with the farm when it is usable, local-only otherwise), and afterwards hand
    the recorder where the compiles ran, then stop the server (the token leaves with it)."""
    farm: DistPlan | None = plan.dist_plan
    if farm is None:
        yield
        return
    plan.say(farm.status.line())
    client = farm.client
    if plan.dry:
        plan.say(f"would start sccache on port {client.port} with {client.config_path}"
                 + (" and the build farm" if farm.status.ok else ""))
        yield
        return
    with ExitStack() as stack:
        with recorder.phase("configure"):  # a wait for the lock still adds up in the report
            stack.enter_context(_client_lock(client, plan))
        stack.enter_context(_running(client, farm, plan, recorder))
        yield


@contextmanager
def _client_lock(client: DistClient, plan: BuildPlan) -> Iterator[None]:
    """One farm build at a time per checkout: builds of two presets of one checkout share its
    sccache server (one port, named in the presets), and each build restarts it. (Not
    locking.build_lock: that one marks child processes for its own build dir.)"""
    from filelock import FileLock, Timeout  # lazy: tests/test_lazy_imports.py

    ensure_state_dir(client.state_dir)
    client.directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(client.state_dir / layout.DIST_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if plan.settings.no_wait:
            raise VllmDevError("another vllm-dev build of this checkout is using its sccache "
                               "client for the build farm; wait for it or run without --no-wait"
                               ) from None
        plan.say("waiting for another build of this checkout that uses its sccache client")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _running(client: DistClient, farm: DistPlan, plan: BuildPlan,
             recorder: Recorder) -> Iterator[None]:
    # The server's start counts as configure time and reading/stopping it as compile time, so
    # the report's phases still add up to the wall clock.
    with recorder.phase("configure"):
        toolchains = farm_compilers(client, plan) if farm.status.ok else []
        client.start(farm=farm.status.ok,
                     extra_env=cc.base_environment(cc.config_from(plan.settings)),
                     toolchains=toolchains)
    try:
        yield
    finally:
        with recorder.phase("compile"):
            recorder.dist = client.stats()
            with suppress(VllmDevError):
                client.stop()


def farm_compilers(client: DistClient, plan: BuildPlan) -> list[Override]:
    """The compilers this build may send to the farm, said at its start; wrapper scripts
    resolved to their real compilers and packaged (caching/farm_toolchains.py)."""
    from vllm_dev.caching import farm_toolchains as ft

    cache = plan.build_dir / "CMakeCache.txt"
    configured: list[str | None] = []
    if cache.is_file():
        text = cache.read_text(errors="replace")
        for name in ("CMAKE_CXX_COMPILER", "CMAKE_C_COMPILER", "CMAKE_CUDA_HOST_COMPILER"):
            found = re.search(rf"^{name}:[A-Z]+=(.+)$", text, re.MULTILINE)
            configured.append(found.group(1).strip() if found else None)
    compilers = ft.candidates(os.environ, configured)
    results = ft.overrides(compilers, directory=client.directory / "toolchains" / "wrapped",
                           sccache=client.sccache, env=os.environ)
    wrapped = {r.wrapper for r in results}
    plain = [str(c) for c in compilers if str(c) not in wrapped]
    plan.say("build farm: compilers for the servers: " + ", ".join(
        plain + [r.line() for r in results if isinstance(r, ft.Override)]))
    for refused in (r for r in results if isinstance(r, ft.Refused)):
        plan.say(f"build farm: {refused.line()}")
    return [r for r in results if isinstance(r, ft.Override)]
