"""The presets document vllm-dev writes into ``CMakeUserPresets.json``, from templates and inputs.

Which templates exist (vllm-dev's, then the checkout's ``.vllm-dev/presets/``, then the
``presets_dir`` setting), which one a command uses, the shared dependency sources of a pip build,
and the rendering itself: whole (every template, the developer's presets) or one layered preset
beside the presets already in the file (the Nox sessions' ``nox-<template>``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_dev.errors import VllmDevError
from vllm_dev.presets.render import (
    PresetInputs,
    PresetTemplate,
    TemplateSet,
    bundled_presets_dir,
    layered,
    load_template_set,
    render,
    render_standalone,
    resolve_binary_dir,
)
from vllm_dev.presets.user_presets import beside_owned

if TYPE_CHECKING:
    from vllm_dev.toolchain.fact_cache import FactCache


def template_dirs(state_dir: Path, presets_dir: str | None) -> list[Path]:
    """vllm-dev's templates, then ``<checkout>/.vllm-dev/presets/``, then ``presets_dir``: the
    user's add to (or replace by name) the bundled ones."""
    directories = [bundled_presets_dir()]
    local = state_dir / "presets"
    if local.is_dir():
        directories.append(local)
    if presets_dir:
        directories.append(Path(presets_dir).expanduser())
    return directories


def find_templates(state_dir: Path, presets_dir: str | None, *, preset: str,
                   say: Callable[[str], None], cache: FactCache | None = None) -> TemplateSet:
    """Every template this checkout sees. A broken one is reported here, once per command
    (unless it is ``preset``: that one raises its own error when used, see :func:`choose`).
    ``cache`` remembers the valid ones (see render.load_template_set)."""
    found = load_template_set(template_dirs(state_dir, presets_dir), cache=cache)
    for name, error in found.broken.items():
        if name != preset:
            say(f"preset template {name!r} skipped: {error}")
    return found


def templates_in_use(found: TemplateSet, layer: str) -> dict[str, PresetTemplate]:
    """The templates as rendered: as they are, or renamed ``<layer><name>`` for a layer."""
    return layered(found.templates, layer) if layer else found.templates


def choose(found: TemplateSet, preset: str, *, layer: str, state_dir: Path) -> PresetTemplate:
    """The template of ``preset`` (its layered copy for a layer), or one line saying why not."""
    broken = found.broken.get(preset)
    if broken:
        raise VllmDevError(broken)
    templates = templates_in_use(found, layer)
    name = layer + preset
    if name not in templates:
        raise VllmDevError(
            f"unknown preset {name!r}; known presets: {', '.join(templates)} "
            f"(add one as {state_dir / 'presets'}/<name>.json)"
        )
    return templates[name]


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


def check_binary_dirs(found: TemplateSet, template: PresetTemplate, *, layer: str,
                      source_dir: Path) -> None:
    """Resolve the ``binaryDir`` of every template that will be rendered: one that escapes the
    checkout fails here, before anything is probed for the document or written."""
    for each in [template] if layer else templates_in_use(found, layer).values():
        resolve_binary_dir(each, source_dir=source_dir)


def render_document(found: TemplateSet, template: PresetTemplate, inputs: PresetInputs, *,
                    layer: str, user_presets: Path) -> dict[str, Any]:
    """The presets document vllm-dev would write now: every template (the developer's presets),
    or, for a layer, its one standalone preset beside the presets already in ``user_presets``."""
    if layer:
        return beside_owned(user_presets, render_standalone(template, inputs))
    return render(templates_in_use(found, layer), inputs)
