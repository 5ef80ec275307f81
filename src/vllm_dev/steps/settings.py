"""The ``settings`` task: every setting's value for this checkout and preset, where it came from,
and forgetting what vllm-dev remembered (config/store.py, config/remember.py).

Where a value came from is said in words: ``given to build, 2026-12-03 14:02`` (remembered),
``environment MAX_JOBS``, ``invoke.yaml at /home/me/vllm/invoke.yaml``, ``flag --python`` or
``default: ...``. A default vllm-dev computes (the interpreter, the device, the job counts, the
arches) is computed here as a build would, so the value shown is the one a build would use; one
that cannot be computed now (no interpreter yet, say) shows why instead of failing the task.
Secrets are masked.

Forgetting is explicit: ``--forget NAME`` for a setting (flag or key spelling: ``--python``,
``cache-remote``, ``cache_remote``) or a remembered define by its name; ``--forget-all`` for
everything the preset remembers; ``-U NAME`` on prime and build for a define.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any

from vllm_dev.config import remember, store
from vllm_dev.config.declarations import SETTINGS, Setting
from vllm_dev.errors import VllmDevError
from vllm_dev.planning.workspace import Workspace


def _computed(ws: Workspace, name: str) -> tuple[Any, str] | None:
    """A default vllm-dev computes, as a build would: (value, words); None when not computed
    here."""
    if name == "source":
        return str(ws.checkout.root), "default: the checkout around the working directory"
    if name == "python":
        found = ws.interpreter
        return str(found.path), f"default: {found.origin}"
    if name == "device":
        return ws.device, "default: what the target interpreter's torch was built for"
    if name in ("jobs", "max_jobs", "nvcc_threads"):
        par = ws.parallelism
        if name == "max_jobs":
            return par.jobs * par.nvcc_threads, f"default: computed: {par.why}"
        return getattr(par, name), f"default: computed: {par.why}"
    if name == "arch":
        if ws.device != "cuda":
            return None, f"default: none (device {ws.device})"
        return ws.arch.env_value or "vLLM's default list", "default: this machine's GPUs"
    return None


def rows(ws: Workspace) -> list[dict[str, Any]]:
    """One row per setting: name, flag, value, source (words), kind, remembered (bool)."""
    settings = ws.settings
    found: list[dict[str, Any]] = []
    for s in SETTINGS:
        if s.repeatable:
            continue
        value: Any = getattr(settings, s.name)
        source = settings.source_of(s.name)
        words, kind = source.words, source.kind
        if kind == "default":
            words = f"default: {s.shown_default}"
            if value in (None, ()):
                try:
                    computed = _computed(ws, s.name)
                except VllmDevError as exc:
                    computed = None
                    words += f" (not computed here: {exc})"[:300]
                if computed is not None:
                    value, words = computed
        found.append({"name": s.name, "flag": s.flag, "value": _masked(s, value),
                      "source": words, "kind": kind, "remembers": s.remember})
    return found


def define_rows(ws: Workspace) -> list[dict[str, Any]]:
    by_name = dict(ws.settings.define_sources)
    found = []
    for item in ws.settings.defines:
        name = item.partition("=")[0].partition(":")[0].strip()
        source = by_name.get(name)
        found.append({"name": name, "value": item.partition("=")[2], "define": item,
                      "source": source.words if source else "?",
                      "kind": source.kind if source else "?"})
    return found


def _masked(s: Setting, value: Any) -> Any:
    return remember.shown(s.name, value) if isinstance(value, str) else value


def run_settings(ws: Workspace, *, as_json: bool = False, forget: Sequence[str] = (),
                 forget_all: bool = False) -> None:
    """Show the settings, or forget some (then show nothing else)."""
    if forget or forget_all:
        _forget(ws, forget, every=forget_all)
        return
    state = store.store_path(ws.checkout.state_dir)
    settings, defines = rows(ws), define_rows(ws)
    if as_json:
        print(json.dumps({"checkout": str(ws.checkout.root), "preset": ws.settings.preset,
                          "store": str(state), "remembering": not ws.settings.no_remember,
                          "settings": settings, "defines": defines}, indent=2))
        return
    memory = "off (--no-remember)" if ws.settings.no_remember else str(state)
    print(f"settings of preset {ws.settings.preset} in {ws.checkout.root} (remembered: "
          f"{memory})")
    table = [(row["flag"] or f"({row['name']})", _text(row["value"]), row["source"])
             for row in settings]
    table += [(f"-D {row['name']}", row["value"], row["source"]) for row in defines]
    width = [max(len(r[i]) for r in table) for i in (0, 1)]
    for flag, value, words in table:
        print(f"  {flag:<{width[0]}}  {value:<{min(width[1], 48)}}  {words}")
    print("precedence: flag > environment (-f FILE too) > remembered > invoke.yaml > default; "
          "forget with `vllm-dev settings --forget NAME`, -U NAME (a define) or --forget-all")


def _text(value: Any) -> str:
    if value is None or value == ():
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _forget(ws: Workspace, names: Sequence[str], *, every: bool) -> None:
    preset = ws.settings.preset
    state_dir = ws.checkout.state_dir
    memory = remember.read(state_dir, say=ws.say)
    settings_kept = memory.preset(preset)
    defines_kept = memory.defines(preset)
    wanted_settings: list[str] = []
    wanted_defines: list[str] = []
    said: list[str] = []
    for raw in names:
        key = raw.strip().lstrip("-").replace("-", "_")
        declared = next((s for s in SETTINGS if s.name == key or (s.flag and s.param == key)),
                        None)
        if declared is not None and declared.repeatable:
            wanted_defines += list(defines_kept)
            if not defines_kept:
                said.append(f"no define is remembered for preset {preset}")
        elif declared is not None:
            if declared.name in settings_kept:
                wanted_settings.append(declared.name)
            elif declared.remember:
                said.append(f"nothing remembered for {declared.flag or declared.name} in preset "
                            f"{preset}")
            else:
                said.append(f"{declared.flag or declared.name} is never remembered (it is for "
                            "one run): nothing to forget")
        elif raw.strip() in defines_kept:
            wanted_defines.append(raw.strip())
        else:
            raise VllmDevError(_unknown(raw, memory, preset))
    if every:
        wanted_settings, wanted_defines = list(settings_kept), list(defines_kept)
        if not wanted_settings and not wanted_defines:
            said.append(f"nothing is remembered for preset {preset}")
    for line in said:
        ws.say(line)
    if not wanted_settings and not wanted_defines:
        return
    shown = [remember.spelled(n, settings_kept[n].value) for n in wanted_settings]
    shown += [f"-D {defines_kept[n].value}" for n in dict.fromkeys(wanted_defines)]
    if ws.dry:
        ws.say(f"would forget for preset {preset}: {', '.join(shown)}")
        return

    def change(stored: store.Memory) -> bool:
        section = stored.presets.get(preset, {})
        gone = [section.pop(n, None) for n in wanted_settings]
        kept = section.get(store.DEFINES, {})
        gone += [kept.pop(n, None) for n in wanted_defines]
        return any(g is not None for g in gone)

    if store.update(state_dir, change, say=ws.say, validate=remember.validate):
        ws.say(f"forgot for preset {preset}: {', '.join(shown)}")
    others = sorted(p for p in memory.presets if p != preset and memory.presets[p])
    if every and others:
        ws.say(f"other presets keep theirs ({', '.join(others)}): vllm-dev settings --preset "
               "NAME --forget-all")


def _unknown(raw: str, memory: store.Memory, preset: str) -> str:
    candidates = [s.flag for s in SETTINGS if s.flag]
    candidates += [s.name for s in SETTINGS]
    candidates += list(memory.defines(preset))
    word = raw.strip()
    close = difflib.get_close_matches(word if word.startswith("-") or word in candidates
                                      else word.replace("-", "_"), [str(c) for c in candidates],
                                      n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else \
        " (settings: " + ", ".join(str(s.flag) for s in SETTINGS if s.flag and s.remember) + ")"
    return f"--forget {raw}: not a setting nor a define remembered for preset {preset}{hint}"
