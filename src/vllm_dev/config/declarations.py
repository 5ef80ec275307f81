"""Every setting of vllm-dev, declared once: :data:`SETTINGS`.

A setting was once spelled in six places (the Settings fields, a table of environment variables,
Invoke's defaults, help tables and task signatures, the Nox option parser, the README) and they
drifted apart. Now each is one :class:`Setting` here, and everything else is derived from it:

- :class:`~vllm_dev.config.settings.Settings` (its fields' defaults, and ``resolve``: precedence,
  parsing, error messages naming the origin, unknown config keys);
- the Invoke tasks' options, their help and short flags, and the ``vllm_dev`` config defaults
  (:mod:`vllm_dev_frontends.invoke_tasks`);
- the Nox build sessions' options after ``--`` (:mod:`vllm_dev_frontends.nox_options`);
- the README's settings table (:mod:`vllm_dev.config.table`).

A setting names the steps that read it (:data:`STEPS`): a task offers exactly the options of the
settings of its step, so every task that uses a setting takes the same flag with the same help.
Choices come from the modules that own them (devices from the checkout model, cache kinds and
remote modes from the compiler-cache module), and values are checked by those modules' validators.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vllm_dev.caching.compiler_cache import KINDS, REMOTE_MODES, validate_remote, validate_size
from vllm_dev.checkout.tree import DEVICES
from vllm_dev.config import values
from vllm_dev.config.values import Parser

#: The steps of vllm-dev (each has an Invoke task of the same name). ``settings`` shows and
#: forgets the remembered settings (config/store.py): it reads only which checkout and preset.
STEPS = ("setup", "prime", "build", "install", "clean", "doctor", "verify", "report", "settings")


@dataclass(frozen=True)
class Setting:
    """One tunable: where it can be given, how it is parsed, what it means.

    Precedence is the same for all: ``flag`` > ``env`` (first one set wins; a ``-f`` file and
    ``INVOKE_VLLM_DEV_*`` rank here too) > remembered (a flag given to an earlier command, see
    :attr:`remember`) > the configuration files' key (``vllm_dev.<name>``) > ``default``.
    """

    #: The field of Settings and the key under ``vllm_dev:`` in ``invoke.yaml``.
    name: str
    #: What it is, for ``--help`` and the README (the default and sources are added to it).
    help: str
    #: ``(value, origin) -> typed value``; raises VllmDevError naming ``origin``. The result is
    #: then checked against ``choices``, if any (see :meth:`convert`).
    parse: Parser
    #: Environment variables, in order: the first one set (non-empty) wins.
    env: tuple[str, ...] = ()
    #: The long command-line flag; None: environment and configuration only.
    flag: str | None = None
    #: One letter, the same in every task (see invoke_tasks.CORE_SHORT_FLAGS for those taken).
    short: str | None = None
    #: The value when nothing sets it; None means "vllm-dev decides" (see ``default_help``).
    default: Any = None
    #: How vllm-dev decides when ``default`` is None (shown as the default in help and README).
    default_help: str = ""
    #: The allowed values, when they are a fixed set (owned by the module that uses them).
    choices: tuple[str, ...] = ()
    #: The flag may be given more than once; the values form a list.
    repeatable: bool = False
    #: The steps (:data:`STEPS`) that read it: their tasks offer its flag.
    steps: frozenset[str] = frozenset()
    #: Given as a flag, it is remembered for the checkout and preset (config/store.py): what
    #: shapes the configure or the compile. Not the checkout and preset (they pick where memory
    #: is kept), the job counts (for this run, like ``make -j``) nor what shapes output only.
    remember: bool = False

    @property
    def config_key(self) -> str:
        """The key under ``vllm_dev:`` in the configuration (the field name, always)."""
        return self.name

    @property
    def param(self) -> str | None:
        """The Python name of the flag's value (task parameter, argparse dest): ``define``."""
        return self.flag.removeprefix("--").replace("-", "_") if self.flag else None

    @property
    def switch(self) -> bool:
        """An on/off flag (no value on the command line)."""
        return isinstance(self.default, bool)

    @property
    def origin(self) -> str:
        """How a message names a value given on the command line (or its config key, when the
        setting has no flag)."""
        return self.flag or f"config vllm_dev.{self.name}"

    @property
    def shown_default(self) -> str:
        """The default as a user reads it: a value, or how vllm-dev decides."""
        if self.switch:
            return "on" if self.default else "off"
        if self.default in (None, ()):
            return self.default_help or "none"
        return str(self.default)

    def convert(self, value: Any, origin: str) -> Any:
        """The typed value of a raw one (from a flag, a variable or the configuration), or a
        one-line error naming ``origin``."""
        parsed = self.parse(value, origin)
        return values.choice(parsed, self.choices, origin) if self.choices else parsed

    def describe(self) -> str:
        """The one-line help: what it is, its choices, default and environment variables."""
        choices = f", one of {', '.join(self.choices)}" if self.choices else ""
        where = [*(["repeatable"] if self.repeatable else []), f"default: {self.shown_default}",
                 *([f"env {', '.join(self.env)}"] if self.env else [])]
        return f"{self.help}{choices} ({'; '.join(where)})"


def _arch(text: str, *, origin: str) -> object:
    # Checked whatever the device: a typo in the arch list is one on a CPU build too.
    from vllm_dev.toolchain.arch import parse_arch_setting  # lazy: tests/test_lazy_imports.py

    return parse_arch_setting(text, origin=origin)


def _dist_url(text: str, *, origin: str) -> str:
    from vllm_dev.caching.dist import validate_url  # lazy: tests/test_lazy_imports.py

    return validate_url(text, origin=origin)


_ALL = frozenset(STEPS)
_COMPILE = frozenset({"prime", "build"})  # the steps that configure or compile
_PRESET = _ALL - {"setup"}  # the steps that work in a preset's build dir (settings: its memory)

SETTINGS: tuple[Setting, ...] = (
    Setting("source", "vLLM checkout", values.text, env=("VLLM_DEV_SOURCE",),
            flag="--source", short="s",
            default_help="the checkout around the working directory", steps=_ALL),
    Setting("python", "target interpreter or venv", values.text, env=("VLLM_DEV_PYTHON",),
            flag="--python", default_help="the active venv, else <checkout>/.venv",
            steps=_ALL - {"clean", "report", "settings"}, remember=True),
    Setting("device", "target device", values.text, env=("VLLM_TARGET_DEVICE",),
            flag="--device", short="d", choices=DEVICES,
            default_help="what the target interpreter's torch was built for",
            steps=frozenset({"setup", "prime", "build", "doctor"}), remember=True),
    Setting("preset", "preset name, one per presets/*.json template", values.text,
            env=("VLLM_DEV_PRESET",), flag="--preset", short="p", default="release",
            steps=_PRESET),
    Setting("jobs", "parallel compile jobs", values.positive_int, env=("VLLM_DEV_JOBS",),
            flag="--jobs", short="j", default_help="computed from CPUs and memory",
            steps=_COMPILE),
    Setting("max_jobs", "vLLM's MAX_JOBS: compile threads in all, divided by the nvcc threads "
            "into jobs; --jobs wins",
            values.positive_int, env=("MAX_JOBS",), flag="--max-jobs",
            default_help="computed from CPUs and memory", steps=_COMPILE),
    Setting("nvcc_threads", "nvcc --threads per compile job", values.positive_int,
            env=("NVCC_THREADS",), flag="--nvcc-threads", default_help="computed",
            steps=_COMPILE, remember=True),
    Setting("job_memory_gib", "memory one compile job needs, in GiB, to size jobs by the "
            "memory available", values.positive_float, env=("VLLM_DEV_JOB_MEMORY_GIB",),
            flag="--job-memory-gib", default_help="per device, see parallelism.py",
            steps=_COMPILE),
    Setting("arch", "CUDA arches for TORCH_CUDA_ARCH_LIST, e.g. 8.0,9.0 or all",
            values.checked_text(_arch), env=("VLLM_DEV_ARCH", "TORCH_CUDA_ARCH_LIST"),
            flag="--arch", short="a", default_help="this machine's GPUs",
            steps=_COMPILE | {"doctor"}, remember=True),
    Setting("cache", "compiler cache", values.text, env=("VLLM_DEV_CACHE",),
            flag="--cache", default="ccache", choices=KINDS, steps=_COMPILE | {"doctor"},
            remember=True),
    Setting("cache_dir", "compiler cache directory", values.text, env=("VLLM_DEV_CACHE_DIR",),
            flag="--cache-dir", default_help="the cache's own, e.g. ~/.cache/ccache",
            steps=_COMPILE, remember=True),
    Setting("cache_max_size", "compiler cache size limit, e.g. 20G",
            values.checked_text(validate_size), env=("VLLM_DEV_CACHE_MAX_SIZE",),
            flag="--cache-max-size", default_help="the cache's own", steps=_COMPILE,
            remember=True),
    Setting("cache_remote", "shared ccache storage: redis://host:port, http(s)://host/path or "
            "file:///dir; a URL with credentials stays out of files and logs",
            values.checked_text(validate_remote), env=("VLLM_DEV_CACHE_REMOTE",),
            flag="--cache-remote", default_help="none, local cache only",
            steps=_COMPILE | {"doctor"}, remember=True),
    Setting("cache_remote_mode", "access to the shared cache (developers read, CI fills it)",
            values.text,
            env=("VLLM_DEV_CACHE_REMOTE_MODE",), flag="--cache-remote-mode",
            default="read-only", choices=REMOTE_MODES, steps=_COMPILE | {"doctor"},
            remember=True),
    Setting("dist", "sccache-dist scheduler URL, to compile on the build farm; its token goes "
            "in VLLM_DEV_DIST_TOKEN or the file VLLM_DEV_DIST_TOKEN_FILE names, never in config",
            values.checked_text(_dist_url), env=("VLLM_DEV_DIST",), flag="--dist",
            default_help="none, compile here", steps=_COMPILE | {"doctor"}, remember=True),
    Setting("defines", "extra CMake cache variable NAME=VALUE or NAME:TYPE=VALUE for every "
            "preset; env: shell words, config: a list or a NAME: VALUE map",
            values.defines, env=("VLLM_DEV_DEFINES",), flag="--define", short="D",
            default=(), repeatable=True, steps=_COMPILE, remember=True),
    Setting("presets_dir", "a directory of your preset templates, added to the bundled ones "
            "and <checkout>/.vllm-dev/presets/", values.text, env=("VLLM_DEV_PRESETS_DIR",),
            default_help="none", steps=_PRESET),
    Setting("no_wait", "fail at once if another vllm-dev is building in this build dir, "
            "instead of waiting for it", values.boolean, env=("VLLM_DEV_NO_WAIT",),
            flag="--no-wait", default=False, steps=_COMPILE | {"install", "clean"}),
    Setting("no_remember", "neither use nor write the settings remembered for this checkout "
            "(for CI workspaces that are reused)", values.boolean,
            env=("VLLM_DEV_NO_REMEMBER",), flag="--no-remember", default=False,
            steps=_ALL - {"settings"}),
    Setting("no_split", "never spread one CUDA unit's compile over idle cores (nvcc "
            "-split-compile, given when fewer CUDA units compile than jobs run)",
            values.boolean, env=("VLLM_DEV_NO_SPLIT",), flag="--no-split", default=False,
            steps=frozenset({"build"})),
    Setting("confirm_minutes", "a build whose targets vllm-dev chose and whose estimated "
            "compile time is over this many minutes first shows its cost and, in a terminal, "
            "asks [y/N] (--yes answers for one run); 0: never ask",
            values.non_negative_float, env=("VLLM_DEV_CONFIRM_MINUTES",),
            flag="--confirm-minutes", default_help="5", steps=frozenset({"build"})),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    """The declaration of one setting, by name (KeyError for a name that is none)."""
    return _BY_NAME[name]


def for_steps(*steps: str) -> tuple[Setting, ...]:
    """The settings any of ``steps`` reads that can be given on the command line, in
    declaration order."""
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise ValueError(f"not steps: {sorted(unknown)}")
    return tuple(s for s in SETTINGS if s.flag and s.steps & set(steps))


def config_defaults() -> dict[str, Any]:
    """Invoke's ``vllm_dev`` section: each setting's config key with its default, so that
    ``INVOKE_VLLM_DEV_<KEY>`` variables can set it. Repeatable settings are left out: their
    configured value may be a list or a map (``defines: {A: 1}``), and Invoke refuses to merge a
    map over any default that is not one (their variable is their own, ``VLLM_DEV_DEFINES``)."""
    return {s.config_key: s.default for s in SETTINGS if not s.repeatable}


def flags_from_options(options: Mapping[str, Any], settings: Iterable[Setting] = SETTINGS
                       ) -> dict[str, Any]:
    """The ``flags`` of :meth:`Settings.resolve` from parsed command-line options keyed by
    :attr:`Setting.param` (``define=[...]``, ``no_wait=False``). A switch that is off was not
    given: it must not hide the environment's or the configuration's value."""
    flags: dict[str, Any] = {}
    for s in settings:
        if s.param is None or s.param not in options:
            continue
        value = options[s.param]
        flags[s.name] = None if s.switch and not value else value
    return flags
