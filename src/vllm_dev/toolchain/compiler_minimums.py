"""The GCC versions a checkout's own CMake files refuse to build with.

vLLM states its minimums as ``if(... CMAKE_CXX_COMPILER_VERSION VERSION_LESS "X") message(
FATAL_ERROR ...)`` (or ``NOT (... VERSION_GREATER_EQUAL X)``), and they differ by version and
device: 0.33.0 needs 11.3 everywhere, 13 for CUDA (DeepGEMM's ``<format>``) and 12.3 for the x86
CPU backend (``cmake/cpu_extension.cmake``). Reading them from the checkout keeps doctor right for
old and new trees alike, instead of a table that is wrong for one of them. Hand-written (a few
regular expressions): no CMake parser is available as a library, and only these checks matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

# if(<condition>) <body up to the matching endif/else>: the condition may hold one level of
# parentheses, as in `if (NOT (GNU AND VERSION_GREATER_EQUAL 12.3))`. The body is a lookahead,
# so an `if` nested in another one's body is found too.
_IF_RE = re.compile(
    r"\bif\s*\((?P<cond>(?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)(?=(?P<body>.*?)\b(?:endif|else))",
    re.IGNORECASE | re.DOTALL)
_VERSION_RE = re.compile(
    r"CMAKE_CXX_COMPILER_VERSION\s+(?P<op>VERSION_LESS|VERSION_GREATER_EQUAL)\s+\"?"
    r"(?P<version>\d+(?:\.\d+)*)\"?", re.IGNORECASE)


@dataclass(frozen=True)
class GccMinimum:
    """One refusal: the version, the device it applies to (None: every device) and where."""

    version: tuple[int, ...]
    device: str | None
    where: str


def _device_of(condition: str, path: Path) -> str | None:
    if re.search(r"\bCUDA\b", condition):
        return "cuda"
    if re.search(r"\bHIP\b|\brocm\b", condition, re.IGNORECASE):
        return "rocm"
    if path.name.startswith("cpu"):
        return "cpu"  # cpu_extension.cmake is included for the CPU device only
    return None


def find_minimums(root: Path) -> list[GccMinimum]:
    """Every GCC minimum in ``CMakeLists.txt`` and ``cmake/*.cmake`` that stops the configure."""
    found: list[GccMinimum] = []
    files = [root / "CMakeLists.txt", *sorted((root / "cmake").glob("*.cmake"))]
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for block in _IF_RE.finditer(text):
            condition, body = block.group("cond"), block.group("body")
            version = _VERSION_RE.search(condition)
            if not version or "FATAL_ERROR" not in body or "GNU" not in condition:
                continue
            negated = version.group("op").upper() == "VERSION_GREATER_EQUAL"
            if negated != bool(re.match(r"\s*NOT\b", condition, re.IGNORECASE)):
                continue  # not a refusal below a version (e.g. a flag for GCC 15 and newer)
            line = text.count("\n", 0, block.start()) + 1
            found.append(GccMinimum(
                Version(version.group("version")).release,
                _device_of(condition, path), f"{path.relative_to(root)}:{line}"))
    return found


def gcc_minimum(root: Path, device: str, *, x86: bool) -> GccMinimum | None:
    """The highest minimum that applies to a ``device`` build (the CPU backend's only on x86:
    vLLM's check sits in its x86 branch)."""
    applies = [m for m in find_minimums(root)
               if m.device is None or (m.device == device and (device != "cpu" or x86))]
    return max(applies, key=lambda m: m.version, default=None)
