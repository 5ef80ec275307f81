"""Invoke tasks: argument parsing and error reporting only; the work is in :mod:`vllm_dev`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from invoke import Collection, Context, Exit, Task, task

from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.flow.workspace import Workspace
from vllm_dev.process.interrupts import Terminated, sigterm_raises
from vllm_dev.process.runner import SubprocessRunner

# Every tunable, so `invoke.yaml` (key vllm_dev) and INVOKE_VLLM_DEV_* variables can set it.
DEFAULTS: dict[str, Any] = {
    "source": None,
    "python": None,
    "device": None,
    "preset": "release",
    "jobs": None,
    "max_jobs": None,
    "nvcc_threads": None,
    "arch": None,
    "job_memory_gib": None,
    "cache": "ccache",
    "cache_dir": None,
    "cache_max_size": None,
    "cache_remote": None,
    "cache_remote_mode": None,
    "presets_dir": None,
    "defines": None,
    "no_wait": False,
    "dist": None,
}

COMMON_HELP = {
    "source": "vLLM checkout (default: VLLM_DEV_SOURCE, config, or the checkout around the "
              "working directory)",
    "python": "target interpreter or venv (default: the active venv, else <checkout>/.venv)",
    "device": "cuda, cpu or rocm (default: VLLM_TARGET_DEVICE, else what the target's torch "
              "was built for)",
    "preset": "preset name, one per presets/*.json (default: release)",
    "jobs": "parallel compile jobs (default: computed from CPUs and memory)",
    "nvcc_threads": "nvcc --threads per compile job (default: computed; NVCC_THREADS)",
    "arch": "CUDA arches for TORCH_CUDA_ARCH_LIST, e.g. 8.0,9.0 or all (default: this "
            "machine's GPUs; TORCH_CUDA_ARCH_LIST)",
    "job_memory_gib": "memory one compile job needs, in GiB, to size jobs by available memory "
                      "(default: per device, see parallelism.py; VLLM_DEV_JOB_MEMORY_GIB)",
    "cache": "compiler cache: ccache, sccache or none (default: ccache)",
    "define": "extra CMake cache variable NAME=VALUE or NAME:TYPE=VALUE for every preset "
              "(repeatable; config key defines, env VLLM_DEV_DEFINES)",
    "no_wait": "fail at once if another vllm-dev is building in this build dir, instead of "
               "waiting for it (VLLM_DEV_NO_WAIT)",
    "cache_dir": "compiler cache directory (default: the cache's own, e.g. ~/.cache/ccache; "
                 "VLLM_DEV_CACHE_DIR)",
    "cache_max_size": "compiler cache size limit, e.g. 20G (VLLM_DEV_CACHE_MAX_SIZE)",
    "cache_remote": "shared ccache storage: redis://host:port, http(s)://host/path or "
                    "file:///dir (VLLM_DEV_CACHE_REMOTE; a URL with credentials stays out of "
                    "files and logs)",
    "cache_remote_mode": "read-only (developers, the default) or read-write (CI fills the "
                         "shared cache)",
    "dist": "sccache-dist scheduler URL: compile on the build farm (VLLM_DEV_DIST; token in "
            "VLLM_DEV_DIST_TOKEN or the file VLLM_DEV_DIST_TOKEN_FILE names)",
}
CONFIGURE_HELP = {
    **COMMON_HELP,
    "merge": "add vllm-dev's presets beside those of a CMakeUserPresets.json it did not write",
    "force": "replace a CMakeUserPresets.json vllm-dev did not write (a backup is kept)",
}


# One short flag per option, the same letter in every task (Invoke would take each option's first
# free letter, so `-p` was --preset in one task and --python in another, `-h` --cache-dir).
# The rest are long only: rare, or (--force, --all) better spelled out.
# No -c: Invoke's zsh completion script reads `-c X` as its --collection and passes it on.
SHORT_FLAGS = {"preset": "p", "source": "s", "device": "d", "jobs": "j", "target": "t",
               "arch": "a", "define": "D"}
# vllm-dev's own options before the task (program.py); no task option may take these letters.
CORE_SHORT_FLAGS = {"h": "help", "V": "version", "l": "list", "R": "dry", "f": "config"}


class VllmDevTask(Task):
    """A task whose options take their short flags from :data:`SHORT_FLAGS`, never by chance."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["auto_shortflags"] = False
        super().__init__(*args, **kwargs)

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        if name in SHORT_FLAGS:
            opts["names"] = [*opts["names"], SHORT_FLAGS[name]]
        return opts


def _help(*names: str, **extra: str) -> dict[str, str]:
    """Help texts for the named common arguments plus task-specific ones."""
    table = {**CONFIGURE_HELP, **extra}
    return {name: table[name] for name in (*names, *extra)}


def _echo(line: str) -> None:
    print(f"vllm-dev: $ {line}", file=sys.stderr, flush=True)


def workspace(c: Context, **flags: Any) -> Workspace:
    """A Workspace from task flags, the environment and the invoke config."""
    config = dict(c.config.get("vllm_dev", {}) or {})
    settings = Settings.resolve(flags=flags, environ=os.environ, config=config)
    dry = bool(c.config.run.dry)
    from vllm_dev.caching import compiler_cache as cc

    cache = cc.config_from(settings)
    runner = SubprocessRunner(dry=dry, echo=_echo, secrets=cache.secrets,
                              environment=cc.command_environment(cache))
    return Workspace(settings=settings, runner=runner)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turn vllm-dev's errors into one line and an exit code; no traceback. SIGTERM exits 143
    after the same clean-up as Ctrl-C (130): children stopped, lock released."""
    try:
        with sigterm_raises():
            yield
    except VllmDevError as exc:
        raise Exit(f"vllm-dev: {exc}", code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("vllm-dev: interrupted", code=130) from None
    except Terminated as exc:
        raise Exit(f"vllm-dev: {exc.message}", code=exc.exit_code) from None


def _remainder(c: Context) -> tuple[str, ...]:
    """What followed a standalone ``--``: exact words from argv when it is ours (invoke keeps
    only a space-joined string, which loses quoting), else that string split like a shell."""
    import shlex

    if not c.remainder:
        return ()
    if "--" in sys.argv:
        return tuple(sys.argv[sys.argv.index("--") + 1:])
    return tuple(shlex.split(c.remainder))


@task(klass=VllmDevTask, help=_help("source", "python", "device",
                 force="redo the install even when nothing changed"))
def setup(c, source=None, python=None, device=None, force=False):
    """Editable install with prebuilt kernels, plus the build requirements, into the target venv.

    Arguments after `--` go to `uv pip install` (e.g. `vllm-dev setup -- --offline --find-links
    DIR`); one that picks the indexes replaces vllm-dev's --torch-backend=auto."""
    from vllm_dev.steps.setup import run_setup

    with reported():
        run_setup(workspace(c, source=source, python=python, device=device), force=force,
                  extra_args=_remainder(c))


@task(klass=VllmDevTask, iterable=["define"],
      help=_help(*CONFIGURE_HELP, reconfigure="run cmake's configure even if nothing changed"))
def prime(c, preset=None, source=None, python=None, device=None, jobs=None, nvcc_threads=None,
          arch=None, cache=None, cache_dir=None, cache_max_size=None, cache_remote=None,
          cache_remote_mode=None, job_memory_gib=None, merge=False, force=False,
          reconfigure=False, no_wait=False, dist=None, define=None):
    """Write CMakeUserPresets.json and configure the preset's build dir (only when needed)."""
    from vllm_dev.steps.prime import run_prime

    with reported():
        ws = workspace(c, preset=preset, source=source, python=python, device=device, jobs=jobs,
                       nvcc_threads=nvcc_threads, arch=arch, cache=cache, cache_dir=cache_dir,
                       cache_max_size=cache_max_size, cache_remote=cache_remote,
                       cache_remote_mode=cache_remote_mode, job_memory_gib=job_memory_gib,
                       no_wait=no_wait or None, dist=dist, defines=define)
        run_prime(ws, merge=merge, force=force, reconfigure=reconfigure)


@task(
    klass=VllmDevTask,
    iterable=["target", "define"],
    help=_help(*CONFIGURE_HELP,
               target="build only this target and install only its component (repeatable)",
               verify="end by loading the extensions this build changed in the target "
                      "interpreter and looking for stale .so files (--no-verify: skip)",
               install="install into the checkout's vllm/ after compiling (--no-install: "
                       "compile only)",
               plain="plain output lines instead of the progress bar (automatic when stderr "
                     "is not a terminal)",
               json="also write the build report as JSON to this file (for CI)",
               since="compile only the targets affected by changes since this git ref (default: "
                     "the commit of the prebuilt kernels setup installed)",
               all="compile every target, not only the affected ones"),
)
def build(c, preset=None, target=None, install=True, source=None, python=None, device=None,
          jobs=None, nvcc_threads=None, arch=None, cache=None, cache_dir=None,
          cache_max_size=None, cache_remote=None, cache_remote_mode=None, merge=False,
          job_memory_gib=None, verify=True, force=False, plain=False, json=None, no_wait=False,
          dist=None, define=None, since=None, all=False):
    """Compile incrementally and install into the checkout (primes first when needed)."""
    with reported():
        ws = workspace(c, preset=preset, source=source, python=python, device=device, jobs=jobs,
                       nvcc_threads=nvcc_threads, arch=arch, cache=cache, cache_dir=cache_dir,
                       cache_max_size=cache_max_size, cache_remote=cache_remote,
                       cache_remote_mode=cache_remote_mode, job_memory_gib=job_memory_gib,
                       no_wait=no_wait or None, dist=dist, defines=define)
        from vllm_dev.reporting.recorder import process_started_at
        from vllm_dev.steps.build import run_build_and_verify

        run_build_and_verify(ws, verify=verify and install, targets=list(target or []),
                             started_at=process_started_at(),
                             install=install, merge=merge, force=force, plain=plain,
                             json_path=Path(json).expanduser().absolute() if json else None,
                             since=since, every=all)


@task(klass=VllmDevTask, help=_help("preset", "source",
                 slowest="rank the N slowest translation units of the build dir (from "
                         ".ninja_log) instead of showing the last report",
                 json="print the last report as JSON"))
def report(c, preset=None, source=None, slowest=None, json=False):
    """Show the last build's report again (time per phase, cache hits, slowest files)."""
    from vllm_dev.steps.report import run_report

    with reported():
        ws = workspace(c, preset=preset, source=source)
        run_report(ws, slowest=slowest, as_json=json)


@task(klass=VllmDevTask, help=_help("preset", "source", "python",
                 remove_stale="move stale .so files out of vllm/ (into .vllm-dev/stale/)",
                 json="print the result as JSON"))
def verify(c, preset=None, source=None, python=None, remove_stale=False, json=False):
    """Load every installed extension in the target interpreter; find stale .so files."""
    from vllm_dev.steps.verify import run_verify_task

    with reported():
        ws = workspace(c, preset=preset, source=source, python=python)
        run_verify_task(ws, remove=remove_stale, as_json=json)


@task(klass=VllmDevTask, help={"json": "print the checks as JSON (for tools)",
            **_help("source", "python", "device", "preset", "arch", "cache", "dist")})
def doctor(c, source=None, python=None, device=None, preset=None, arch=None, cache=None,
           json=False, dist=None):
    """Check every prerequisite of a build: status and the fix for each; non-zero on blockers."""
    from vllm_dev.steps.doctor import run_doctor

    with reported():
        ws = workspace(c, preset=preset, source=source, python=python, device=device, arch=arch,
                       cache=cache, dist=dist)
        run_doctor(ws, as_json=json)


@task(klass=VllmDevTask, iterable=["component"],
      help=_help("preset", "source", "python", "no_wait",
                 component="install only this component (= target name; repeatable)"))
def install(c, preset=None, component=None, source=None, python=None, no_wait=False):
    """Install what was built, without compiling, and check every installed file."""
    from vllm_dev.steps.install import run_install

    with reported():
        ws = workspace(c, preset=preset, source=source, python=python, no_wait=no_wait or None)
        run_install(ws, wanted=list(component or []))


@task(klass=VllmDevTask, name="clean", help=_help("preset", "source",
                               all="remove every build dir vllm-dev created in the checkout",
                               installed="also remove the files the last install wrote into "
                                         "vllm/",
                               deps="with --all: also remove the dependency sources shared "
                                    "with pip builds (<checkout>/.deps: fetched again next "
                                    "configure)"))
def clean_(c, preset=None, source=None, all=False, installed=False, deps=False):
    """Remove the preset's build dir (only dirs vllm-dev created, only inside the checkout)."""
    from vllm_dev.steps.clean import run_clean

    with reported():
        ws = workspace(c, preset=preset, source=source)
        run_clean(ws, every=all, installed=installed, deps=deps)


@task(klass=VllmDevTask,
      help={"keep": "keep the temporary copy of the example project and print its path",
            "device": "cuda or cpu (default: cuda when nvcc is found, else cpu)"})
def demo(c, keep=False, device=None):
    """Run setup, prime, build and a one-file rebuild on a copy of the bundled example project."""
    from vllm_dev.steps.demo import run_demo

    with reported():
        dry = bool(c.config.run.dry)
        run_demo(runner=SubprocessRunner(dry=dry, echo=_echo), keep=keep, device=device)


def namespace() -> Collection:
    """The task collection with every tunable declared, for tasks.py and the console script."""
    ns = Collection(setup, prime, build, install, clean_, demo, doctor, verify, report)
    ns.configure({"vllm_dev": dict(DEFAULTS)})
    return ns
