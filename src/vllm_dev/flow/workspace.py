"""One invocation's view of the world, looked up lazily: settings, checkout, interpreter, tools.

Every fact is looked up at most once and only when asked for, so a task only pays for what it
uses (``clean`` never probes the interpreter, ``verify`` never looks for cmake). The commands that
build (prime, build, install, the Nox sessions) do not work from this lazy view: the pipeline
resolves it once into a frozen :class:`~vllm_dev.flow.plan.BuildPlan` (an install of what is
built: its :class:`~vllm_dev.flow.plan.BuildDirPlan` part; see plan.py), which the steps take.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_dev.checkout.tree import Checkout, find_checkout
from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.host.parallelism import DEFAULT_ARCH_COUNT, Parallelism, choose
from vllm_dev.presets import document as presets_doc
from vllm_dev.presets.render import PresetTemplate, TemplateSet, resolve_binary_dir
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
    require_nvcc,
)

if TYPE_CHECKING:
    from vllm_dev.caching.dist import DistPlan
    from vllm_dev.toolchain.fact_cache import FactCache


def _stderr(message: str) -> None:
    print(f"vllm-dev: {message}", file=sys.stderr, flush=True)


@dataclass
class Workspace:
    """Lazily resolved context: what setup, clean, verify, report and doctor read directly, and
    what :func:`vllm_dev.flow.plan.resolve_plan` turns into a build's plan."""

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
        return self.probe_facts()

    def probe_facts(self) -> InterpreterFacts:
        """The target interpreter's facts as they are now: remembered across commands while its
        files are unchanged (see fact_cache.py), but not by this workspace, so that a caller that
        just installed into the interpreter (a Nox session's setup) sees what arrived."""
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
    def template_set(self) -> TemplateSet:
        """Every template this checkout sees (see presets/document.py)."""
        return presets_doc.find_templates(self.checkout.state_dir, self.settings.presets_dir,
                                          preset=self.settings.preset, say=self.say,
                                          cache=self.fact_cache)

    @cached_property
    def templates(self) -> dict[str, PresetTemplate]:
        return presets_doc.templates_in_use(self.template_set, self.layer)

    @cached_property
    def template(self) -> PresetTemplate:
        return presets_doc.choose(self.template_set, self.settings.preset, layer=self.layer,
                                  state_dir=self.checkout.state_dir)

    @cached_property
    def build_dir(self) -> Path:
        return resolve_binary_dir(self.template, source_dir=self.checkout.root)

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
        if self.device != "cuda":  # an --arch given for it is refused there
            return select_arches(self.settings.arch, origin=self.settings.origin("arch"),
                                 device=self.device, gpus=None, supported=None)
        nvcc = self.nvcc
        supported = self.fact_cache.memo(
            f"nvcc-arches {nvcc.path}", [nvcc.path],
            lambda: nvcc_arches(nvcc.path, runner=self.runner),
            encode=lambda v: list(v) if v else None,
            decode=tuple) if nvcc else None
        gpus = None if self.settings.arch else probe_gpus(runner=self.runner)
        return select_arches(self.settings.arch, origin=self.settings.origin("arch"),
                             device=self.device, gpus=gpus, supported=supported)
