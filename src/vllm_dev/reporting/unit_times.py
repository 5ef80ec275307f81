"""Past compile times per object, kept per preset in the checkout's state dir.

The per-object split (host/split_launcher.py) gives threads to the objects that took longest
before. A build dir's ``.ninja_log`` holds those times, but ``vllm-dev clean`` removes it with the
build dir, and a cold build is where the times matter most. So each build adds its objects' times
to ``<checkout>/.vllm-dev/unit-times-<preset>.json`` (the latest time of each object wins), and
the plan reads that file and the build dir's log (which wins where both know an object).
"""

from __future__ import annotations

from pathlib import Path

from vllm_dev.reporting.ninja_log import NINJA_LOG, NinjaEntry, parse_ninja_log

KIND = "vllm-dev unit times"


def _path(state_dir: Path, preset: str) -> Path:
    return state_dir / f"unit-times-{preset}.json"


def _last_times(entries: list[NinjaEntry]) -> dict[str, float]:
    return {e.output: e.seconds for e in entries if e.is_object}


def remember(state_dir: Path, preset: str, entries: list[NinjaEntry]) -> None:
    """Add a build's object times (no file written when it compiled none)."""
    times = _last_times(entries)
    if not times:
        return
    from vllm_dev.checkout.state import ensure_state_dir, read_json, write_json

    path = _path(state_dir, preset)
    old = read_json(path) if path.is_file() else None
    known = dict(old.get("objects", {})) if old and old.get("kind") == KIND else {}
    known.update({k: round(v, 3) for k, v in times.items()})
    ensure_state_dir(state_dir)
    write_json(path, {"kind": KIND, "objects": known})


def past_times(state_dir: Path, preset: str, build_dir: Path) -> dict[str, float]:
    """Object -> seconds of its last compile: the kept file, then the build dir's log."""
    from vllm_dev.checkout.state import read_json

    path = _path(state_dir, preset)
    data = read_json(path) if path.is_file() else None
    times: dict[str, float] = {}
    if data and data.get("kind") == KIND and isinstance(data.get("objects"), dict):
        times = {str(k): float(v) for k, v in data["objects"].items()
                 if isinstance(v, (int, float))}
    try:
        text = (build_dir / NINJA_LOG).read_text(errors="replace")
    except OSError:
        return times
    times.update(_last_times(parse_ninja_log(text)))
    return times
