"""A build's timeline as one self-contained SVG: a lane per job slot, a bar per step.

Written by hand rather than with a plotting library: the picture is a few hundred rectangles and
labels, SVG says that directly, and the file must open in any browser offline, with no script
and no font or style sheet to fetch (each bar's full description is its ``<title>``, which
browsers show on hover). Colours follow the step's kind (CUDA, C++, link); a cache hit is drawn
pale and a farm compile outlined, as the legend says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from vllm_dev.reporting.trace import FARM, HIT, Step, summary

WIDTH = 1200
LEFT = 92  # lane labels
RIGHT = 24
TOP = 58  # title and caption
ROW = 22
BAR = 16
AXIS = 34
LEGEND = 30
CHAR_PX = 6.4  # an 11 px sans-serif character, about (labels are cut to fit their bar)
COLOURS = {"CUDA": "#5f9e2f", "C++": "#4e79a7", "link": "#9c755f", "other": "#9d9d9d"}


def _tick_step(span_s: float) -> float:
    """A round tick interval (1, 2 or 5 times a power of ten) giving 6 to 15 ticks."""
    if span_s <= 0:
        return 1.0
    raw = span_s / 10
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _label(text: str, width_px: float) -> str:
    """``text`` cut (from the left: the file name matters most) to fit ``width_px``."""
    room = int((width_px - 6) // CHAR_PX)
    if room < 4:
        return ""
    name = text.rsplit("/", 1)[-1] if len(text) > room else text
    return name if len(name) <= room else "…" + name[-(room - 1):]


def render_svg(steps: list[Step], *, title: str, details: Mapping[str, Any],
               span_ms: int | None = None) -> str:
    """The SVG document (see the module docstring); ``span_ms`` fixes the time axis (two
    pictures on one scale), else it ends with the last step."""
    info = summary(steps)
    lanes = max(1, info["lanes"])
    span_ms = max(1, span_ms or 0, max((s.end_ms for s in steps), default=1))
    plot = WIDTH - LEFT - RIGHT
    height = TOP + lanes * ROW + AXIS + LEGEND

    def x(ms: float) -> float:
        return LEFT + plot * ms / span_ms

    caption = (f"{info['objects']} objects, {info['steps']} steps on {info['lanes']} job "
               f"slot(s), {info['span_s']:.1f} s of ninja"
               + "".join(f"; {k}: {v}" for k, v in details.items() if v not in (None, "")))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT}" y="42" fill="#444444">{escape(caption)}</text>',
    ]
    for lane in range(lanes):
        y = TOP + lane * ROW
        if lane % 2:
            out.append(f'<rect x="{LEFT}" y="{y}" width="{plot}" height="{ROW}" '
                       'fill="#f4f4f4"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + ROW / 2 + 4:.1f}" text-anchor="end" '
                   f'fill="#555555">slot {lane + 1}</text>')
    step_s: float = _tick_step(span_ms / 1000)
    tick = 0.0
    axis_y = TOP + lanes * ROW
    while tick * 1000 <= span_ms + 1e-6:
        tx = x(tick * 1000)
        out.append(f'<line x1="{tx:.1f}" y1="{TOP}" x2="{tx:.1f}" y2="{axis_y + 4}" '
                   'stroke="#dddddd"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y + 17}" text-anchor="middle" '
                   f'fill="#555555">{tick:g} s</text>')
        tick += step_s
    for step in steps:
        x0, x1 = x(step.start_ms), x(step.end_ms)
        width = max(1.0, x1 - x0)
        top = TOP + step.lane * ROW + (ROW - BAR) / 2
        colour = COLOURS.get(step.kind, COLOURS["other"])
        style = f'fill="{colour}"'
        if step.mark == HIT:
            style += ' fill-opacity="0.35"'
        if step.mark == FARM:
            style += ' stroke="#6a3d9a" stroke-width="2"'
        tip = f"{step.name} ({step.kind}): {step.seconds:.2f} s" + (
            f", {step.mark}" if step.mark else "") + f"\n{step.output}"
        out.append(f'<g><title>{escape(tip)}</title><rect x="{x0:.1f}" y="{top:.1f}" '
                   f'width="{width:.1f}" height="{BAR}" rx="2" {style}/>')
        label = _label(step.name, width)
        if label:
            out.append(f'<text x="{x0 + 3:.1f}" y="{top + BAR - 4:.1f}" fill="#ffffff" '
                       f'font-size="10">{escape(label)}</text>')
        out.append("</g>")
    legend_y = axis_y + AXIS + 6
    lx = LEFT
    for name, colour in COLOURS.items():
        out.append(f'<rect x="{lx}" y="{legend_y}" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{lx + 16}" y="{legend_y + 10}">{escape(name)}</text>')
        lx += 70
    out.append(f'<rect x="{lx}" y="{legend_y}" width="12" height="12" fill="{COLOURS["CUDA"]}" '
               f'fill-opacity="0.35"/><text x="{lx + 16}" y="{legend_y + 10}">cache hit</text>')
    lx += 90
    out.append(f'<rect x="{lx}" y="{legend_y}" width="12" height="12" fill="#ffffff" '
               f'stroke="#6a3d9a" stroke-width="2"/><text x="{lx + 16}" y="{legend_y + 10}">'
               "build farm</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"

