"""Preset templates (``presets/*.json``) and the ``CMakeUserPresets.json`` rendered from them.

One template file is one preset: ``presets/release.json`` becomes the ``release`` configure and
build presets, so a user adds ``relwithdebinfo`` by adding a file. Everything machine-specific
(interpreter, nvcc, launchers, jobs) is filled in by :func:`render`; the templates only say what
differs between presets.

Templates come from vllm-dev's own ``presets/`` (``release``, ``debug``) plus, on top, the user's:
``<checkout>/.vllm-dev/presets/`` and ``VLLM_DEV_PRESETS_DIR`` / config ``presets_dir``. A user
template of the same name replaces the bundled one; a broken one is set aside (see
:class:`TemplateSet`) so the others still work.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_dev.errors import VllmDevError
from vllm_dev.presets.template_schema import SCHEMA_STAMP, check_template

if TYPE_CHECKING:
    from vllm_dev.toolchain.fact_cache import FactCache

PRESETS_VERSION = 6  # CMake 3.25+: configure, build, test, package and workflow presets.
BASE_PRESET = "vllm-dev-base"
VENDOR_KEY = "vllm-dev"
DEFAULT_BINARY_DIR = "${sourceDir}/cmake-build-${presetName}"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEFINE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.+-]*$")
_CACHE_TYPES = ("BOOL", "FILEPATH", "PATH", "STRING", "INTERNAL")
# Cache variables whose value comes from a setting: a --define would fight that setting.
_RENDERED_ONLY = {"VLLM_PYTHON_EXECUTABLE": "--python", "VLLM_TARGET_DEVICE": "--device",
                  "NVCC_THREADS": "--nvcc-threads"}


@dataclass(frozen=True)
class PresetTemplate:
    """What one ``presets/<name>.json`` asks for."""

    name: str
    description: str
    build_type: str
    cache_variables: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    binary_dir: str = DEFAULT_BINARY_DIR
    display_name: str = ""


@dataclass(frozen=True)
class TemplateSet:
    """Usable templates, and the broken ones with their one-line errors (used by name, a broken
    template raises its error; otherwise it is only reported, once)."""

    templates: dict[str, PresetTemplate]
    broken: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PresetInputs:
    """Machine facts that go into every rendered preset."""

    python: str
    device: str
    jobs: int  # the build presets' jobs only: never a cache variable (no reconfigure)
    nvcc_threads: int
    make_program: str | None = None
    nvcc: str | None = None
    launcher: str | None = None
    # The configure presets' environment: what configure reads (TORCH_CUDA_ARCH_LIST).
    environment: dict[str, str] = field(default_factory=dict)
    # The build presets' environment: what reaches the compiles but no compile command (the
    # compiler cache to run and its settings, the build farm's client). Not part of the
    # configure fingerprint, so changing it never reconfigures; a plain `cmake --build
    # --preset` gets it too. A template's own environment wins.
    build_environment: dict[str, str] = field(default_factory=dict)
    # Extra build environment of the presets whose buildType is the key (e.g. ccache's hash_dir
    # off where -g records the working directory); a template's own environment wins.
    build_type_environment: dict[str, dict[str, str]] = field(default_factory=dict)
    # --define NAME[:TYPE]=VALUE: win over vllm-dev's and the templates' cache variables.
    defines: dict[str, Any] = field(default_factory=dict)
    # FETCHCONTENT_SOURCE_DIR_<NAME> for sources already fetched into <checkout>/.deps by a pip
    # build: shared (never fetched twice), while each build dir keeps its own -build dirs.
    shared_sources: dict[str, str] = field(default_factory=dict)


def bundled_presets_dir() -> Path:
    """``presets/`` of a source checkout of vllm-dev, else the copy shipped inside the wheel."""
    source_tree = Path(__file__).resolve().parents[3] / "presets"
    if source_tree.is_dir():
        return source_tree
    return Path(str(resources.files("vllm_dev") / "preset_templates"))


def load_templates(directory: Path) -> dict[str, PresetTemplate]:
    """Every ``*.json`` template in ``directory``, sorted by name; errors point at file:line:col."""
    found = load_template_set([directory])
    if found.broken:
        raise VllmDevError(next(iter(found.broken.values())))
    return found.templates


def load_template_set(directories: list[Path], *, cache: FactCache | None = None) -> TemplateSet:
    """The templates of ``directories`` in order, a later one replacing an earlier one of the
    same name. A template that does not load is set aside with its error instead of stopping
    the others: one typo in a personal preset must not block ``release``. ``cache`` remembers
    the valid ones (see :func:`_load_template`)."""
    templates: dict[str, PresetTemplate] = {}
    broken: dict[str, str] = {}
    for directory in directories:
        if not directory.is_dir():
            raise VllmDevError(f"preset template directory {directory} does not exist")
        for path in sorted(directory.glob("*.json")):
            try:
                templates[path.stem] = _load_template(path, cache)
                broken.pop(path.stem, None)
            except VllmDevError as exc:
                templates.pop(path.stem, None)
                broken[path.stem] = str(exc)
    if not templates and not broken:
        where = ", ".join(str(d) for d in directories)
        raise VllmDevError(f"no preset templates (*.json) in {where}")
    return TemplateSet(dict(sorted(templates.items())), broken)


def parse_define(text: str, origin: str) -> tuple[str, Any]:
    """``NAME=VALUE`` or ``NAME:TYPE=VALUE`` (CMake's ``-D`` syntax) as a cacheVariables entry."""
    name, sep, value = text.partition("=")
    name, _, kind = name.strip().partition(":")
    if not sep or not _DEFINE_RE.match(name) or (kind and kind.upper() not in _CACHE_TYPES):
        raise VllmDevError(
            f"{origin}: {text!r} is not NAME=VALUE or NAME:TYPE=VALUE (TYPE one of "
            f"{', '.join(_CACHE_TYPES)}), e.g. --define CMAKE_CXX_FLAGS=-O2")
    if name in _RENDERED_ONLY:
        raise VllmDevError(f"{origin}: {name} is set by vllm-dev itself; use "
                           f"{_RENDERED_ONLY[name]} instead")
    return name, ({"type": kind.upper(), "value": value} if kind else value)


def check_define_name(name: str, origin: str) -> str:
    """A cache variable's name as ``-U NAME`` takes it: no glob (CMake's ``-U`` would read
    ``*``, ``?`` and ``[`` as one and drop every match)."""
    if not _DEFINE_RE.match(name):
        raise VllmDevError(f"{origin} {name!r}: give a cache variable's name, e.g. -U "
                           "VLLM_X (no patterns)")
    return name


def _load_template(path: Path, cache: FactCache | None = None) -> PresetTemplate:
    """One template, checked against :data:`~vllm_dev.presets.template_schema.TEMPLATE_SCHEMA`;
    with ``cache``, a valid one is remembered until its file changes (the check's import of
    jsonschema costs more than the rest of a no-op build's start-up)."""
    name = path.stem
    if not _NAME_RE.match(name) or name == BASE_PRESET:
        raise VllmDevError(f"{path}: {name!r} is not a usable preset name (rename the file)")
    if cache is None:
        return _read_template(path)
    return cache.memo(f"preset template {path} {SCHEMA_STAMP}", [path],
                      lambda: _read_template(path), encode=asdict,
                      decode=lambda stored: PresetTemplate(**stored))


def _read_template(path: Path) -> PresetTemplate:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VllmDevError(
            f"{path}:{exc.lineno}:{exc.colno}: {exc.msg} (fix the template)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VllmDevError(f"{path}: cannot read preset template: {exc}") from None
    check_template(path, text, data)
    return PresetTemplate(
        name=path.stem,
        description=data.get("description", ""),
        display_name=data.get("displayName", path.stem),
        build_type=data.get("buildType", "Release"),
        cache_variables=dict(data.get("cacheVariables", {})),
        environment=dict(data.get("environment", {})),
        binary_dir=data.get("binaryDir", DEFAULT_BINARY_DIR),
    )


def expand_macros(text: str, *, source_dir: Path, preset: str) -> str:
    """The subset of CMake's preset macros that a ``binaryDir`` may use."""
    return (
        text.replace("${sourceDir}", str(source_dir))
        .replace("${sourceParentDir}", str(source_dir.parent))
        .replace("${sourceDirName}", source_dir.name)
        .replace("${presetName}", preset)
        .replace("${dollar}", "$")
    )


def resolve_binary_dir(template: PresetTemplate, *, source_dir: Path) -> Path:
    """The build directory a template names, refused unless it lies strictly inside the checkout
    (and outside ``vllm/``): ``clean`` deletes it, so it must never be the checkout, ``/`` or
    a place reached through ``..``."""
    raw = expand_macros(template.binary_dir, source_dir=source_dir, preset=template.name)
    path = Path(raw)
    if not path.is_absolute():
        path = source_dir / path
    resolved = Path(os.path.normpath(path))
    root = source_dir.resolve()
    if resolved == root or root not in resolved.parents:
        raise VllmDevError(
            f"preset {template.name!r}: binaryDir {template.binary_dir!r} resolves to {resolved}, "
            f"which is not inside the checkout {root}: use ${{sourceDir}}/cmake-build-<name>"
        )
    if resolved == root / "vllm" or (root / "vllm") in resolved.parents:
        raise VllmDevError(
            f"preset {template.name!r}: binaryDir {resolved} is inside the vllm/ package"
        )
    return resolved


def render(templates: dict[str, PresetTemplate], inputs: PresetInputs) -> dict[str, Any]:
    """The whole presets document vllm-dev owns, deterministic for identical inputs.

    What changes a compile command or what configure reads goes into the configure presets
    (their values are the configure fingerprint, see steps/prime.py); what only reaches the
    compiles (the compiler cache and its settings, the farm) into the build presets'
    ``environment``, which CMake gives ``cmake --build --preset`` on top of the configure
    preset's (``inheritConfigureEnvironment``, on by default)."""
    # No FETCHCONTENT_BASE_DIR: CMake's default, <binaryDir>/_deps, keeps each dependency's
    # -build dir per build dir (one base dir shared by presets made release rebuild oneDNN
    # objects that debug had built). Sources a pip build already fetched are shared instead.
    # No job pool: the job count is passed at build time (`cmake --build -j N`), so a change of
    # jobs or of free memory never reconfigures; a compile pool as large as -j limits nothing.
    cache: dict[str, Any] = {
        "VLLM_PYTHON_EXECUTABLE": inputs.python,
        "VLLM_TARGET_DEVICE": inputs.device,
        "CMAKE_INSTALL_PREFIX": "${sourceDir}",
        "CMAKE_EXPORT_COMPILE_COMMANDS": "ON",
        **dict(sorted(inputs.shared_sources.items())),
    }
    if inputs.make_program:
        cache["CMAKE_MAKE_PROGRAM"] = inputs.make_program
    if inputs.launcher:
        cache["CMAKE_C_COMPILER_LAUNCHER"] = inputs.launcher
        cache["CMAKE_CXX_COMPILER_LAUNCHER"] = inputs.launcher
    if inputs.device == "cuda":  # NVCC_THREADS is read by the CUDA part only (else "unused")
        cache["NVCC_THREADS"] = str(inputs.nvcc_threads)
        if inputs.nvcc:
            cache["CMAKE_CUDA_COMPILER"] = inputs.nvcc
        cache["CMAKE_CUDA_FLAGS"] = ""
        if inputs.launcher:
            cache["CMAKE_CUDA_COMPILER_LAUNCHER"] = inputs.launcher
    base: dict[str, Any] = {
        "name": BASE_PRESET,
        "hidden": True,
        "description": "Machine settings rendered by vllm-dev; edit presets/*.json, not this.",
        "generator": "Ninja",
        "binaryDir": DEFAULT_BINARY_DIR,
        "cacheVariables": cache,
    }
    if inputs.shared_sources:
        # A .deps/<name>-src of a dependency this configuration does not fetch (a CUDA pip
        # build's cutlass-src for a CPU preset) would warn "not used by the project".
        base["warnings"] = {"unusedCli": False}
    if inputs.environment:
        base["environment"] = dict(sorted(inputs.environment.items()))
    configure = [base]
    build = []
    for template in templates.values():
        preset: dict[str, Any] = {
            "name": template.name,
            "displayName": template.display_name or template.name,
            "description": template.description,
            "inherits": BASE_PRESET,
            "cacheVariables": {"CMAKE_BUILD_TYPE": template.build_type,
                               **template.cache_variables, **inputs.defines},
        }
        if template.binary_dir != DEFAULT_BINARY_DIR:
            preset["binaryDir"] = template.binary_dir
        if template.environment:
            preset["environment"] = dict(template.environment)
        configure.append(preset)
        build_preset: dict[str, Any] = {"name": template.name, "configurePreset": template.name,
                                        "jobs": inputs.jobs}
        # The build preset's environment would win over the configure preset's: a key the
        # template sets is left to the template.
        build_environment = {k: v for k, v in {
            **inputs.build_environment,
            **inputs.build_type_environment.get(template.build_type, {})}.items()
            if k not in template.environment}
        if build_environment:
            build_preset["environment"] = dict(sorted(build_environment.items()))
        build.append(build_preset)
    return {
        "version": PRESETS_VERSION,
        "cmakeMinimumRequired": {"major": 3, "minor": 25, "patch": 0},
        "configurePresets": configure,
        "buildPresets": build,
        "vendor": {VENDOR_KEY: {"generator": "vllm-dev", "owned": [p["name"] for p in configure]}},
    }


def layered(templates: dict[str, PresetTemplate], prefix: str) -> dict[str, PresetTemplate]:
    """The templates renamed ``<prefix><name>``, each in its own ``cmake-build-<prefix><name>``.

    For a second interpreter beside the developer's (the Nox sessions): a template's own
    ``binaryDir`` is dropped on purpose, since it may name the developer's build dir, and a CMake
    cache must never be shared between two interpreters.
    """
    return {prefix + t.name: replace(t, name=prefix + t.name, binary_dir=DEFAULT_BINARY_DIR)
            for t in templates.values()}


def render_standalone(template: PresetTemplate, inputs: PresetInputs) -> dict[str, Any]:
    """One preset that inherits nothing: the base's settings are folded into it.

    It can then sit beside presets rendered for another interpreter (the developer's, which
    own ``vllm-dev-base``) without either changing the other's fingerprint.
    """
    document = render({template.name: template}, inputs)
    base, preset = document["configurePresets"]
    flat = {k: v for k, v in preset.items() if k != "inherits"}
    flat["generator"] = base["generator"]
    if "warnings" in base:
        flat["warnings"] = base["warnings"]
    flat["binaryDir"] = preset.get("binaryDir", base["binaryDir"])
    flat["cacheVariables"] = {**base["cacheVariables"], **preset["cacheVariables"]}
    environment = {**base.get("environment", {}), **preset.get("environment", {})}
    if environment:
        flat["environment"] = environment
    document["configurePresets"] = [flat]
    document["vendor"][VENDOR_KEY]["owned"] = [flat["name"]]
    return document


def preset_fingerprint(document: dict[str, Any], name: str) -> str:
    """A stable text of everything that configures preset ``name``: itself and what it inherits
    (and nothing else, so presets beside it in the file never trigger a reconfigure)."""
    configure = {p["name"]: p for p in document.get("configurePresets", [])
                 if isinstance(p, dict)}
    parts: list[Any] = []
    pending = [name]
    while pending:
        preset = configure.get(pending.pop(0))
        if preset is None or preset in parts:
            continue
        parts.insert(0, preset)
        parents = preset.get("inherits", [])
        pending += [parents] if isinstance(parents, str) else list(parents)
    return json.dumps(parts, sort_keys=True)


def build_environment(document: dict[str, Any], name: str) -> dict[str, str]:
    """The environment ``cmake --build --preset name`` gives the compiles: the configure
    preset's (inherited) and the build preset's own on top."""
    merged = inherited_environment(document, name)
    for preset in document.get("buildPresets", []):
        if isinstance(preset, dict) and preset.get("name") == name:
            configure = preset.get("configurePreset", name)
            if configure != name:
                merged = inherited_environment(document, str(configure))
            for key, value in (preset.get("environment") or {}).items():
                if value is not None:
                    merged[str(key)] = str(value)
    return merged


def inherited_environment(document: dict[str, Any], name: str) -> dict[str, str]:
    """The ``environment`` a configure preset ends up with, following ``inherits`` (own wins)."""
    presets = {p.get("name"): p for p in document.get("configurePresets", [])
               if isinstance(p, dict)}
    merged: dict[str, str] = {}
    seen: set[str] = set()

    def visit(preset_name: str) -> None:
        preset = presets.get(preset_name)
        if preset is None or preset_name in seen:
            return
        seen.add(preset_name)
        parents = preset.get("inherits", [])
        for parent in reversed([parents] if isinstance(parents, str) else list(parents)):
            visit(parent)
        for key, value in (preset.get("environment") or {}).items():
            if value is not None:
                merged[str(key)] = str(value)

    visit(name)
    return merged


def cache_variable_names(fingerprint_text: str) -> set[str]:
    """Every cache variable a :func:`preset_fingerprint` sets (the union over its chain)."""
    try:
        parts = json.loads(fingerprint_text)
    except ValueError:
        return set()
    names: set[str] = set()
    for part in parts if isinstance(parts, list) else []:
        cache = part.get("cacheVariables") if isinstance(part, dict) else None
        if isinstance(cache, dict):
            names |= set(cache)
    return names


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"
