"""Install components: which ones a configured build dir knows, and where their files may land.

vLLM names each install component after its target (``install(TARGETS _C ... COMPONENT _C)``),
so a component is also what ``--target`` names. The list comes from CMake's generated
``cmake_install.cmake``: CMake has no query for it, and that script is what ``cmake --install
--component`` itself reads.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from vllm_dev.errors import VllmDevError

_COMPONENT_RE = re.compile(r'CMAKE_INSTALL_COMPONENT\s+STREQUAL\s+"([^"]+)"')


def components(build_dir: Path) -> list[str]:
    """Install components the build dir knows (vLLM names each after its target)."""
    script = build_dir / "cmake_install.cmake"
    if not script.is_file():
        return []
    return sorted(set(_COMPONENT_RE.findall(script.read_text(errors="replace"))))


def check_components(build_dir: Path, wanted: list[str] | None) -> None:
    """Refuse a ``--target``/``--component`` the configured build dir does not know."""
    if not wanted:
        return
    known = components(build_dir)
    unknown = [w for w in wanted if w not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise VllmDevError(
            f"unknown target {unknown[0]!r}{hint}; this build has: {', '.join(known) or 'none'}"
        )


def check_destinations(package_dir: Path, finals: list[Path]) -> None:
    """Refuse (before anything moves) files that would land outside the checkout's package."""
    package = package_dir.resolve()
    for path in finals:
        real = Path(os.path.realpath(path))
        if package not in real.parents or package / "vllm" in real.parents:
            raise VllmDevError(
                f"install would put {path} outside the checkout's vllm/ package: check the "
                "install(... DESTINATION ...) of that target (vLLM installs into `vllm`)")
