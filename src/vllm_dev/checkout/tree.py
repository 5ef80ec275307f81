"""Which directory is the vLLM checkout, and what its build expects.

A checkout is recognised by the three things vLLM's build cannot work without: a top-level
``CMakeLists.txt`` declaring ``project(vllm_extensions ...)``, a Python build entry point
(``setup.py`` or ``pyproject.toml``) and the ``vllm/`` package the kernels are installed into.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.errors import VllmDevError
from vllm_dev.state import layout

_PROJECT_RE = re.compile(r"^\s*project\s*\(\s*vllm_extensions\b", re.IGNORECASE | re.MULTILINE)
_MINIMUM_RE = re.compile(
    r"cmake_minimum_required\s*\(\s*VERSION\s+([0-9]+(?:\.[0-9]+)*)", re.IGNORECASE
)
DEVICES = ("cuda", "cpu", "rocm")
_NO_CSRC = "csrc/ (the kernel sources)"


@dataclass(frozen=True)
class Checkout:
    """A vLLM source tree; every path vllm-dev touches in it is derived here."""

    root: Path

    @property
    def package_dir(self) -> Path:
        return self.root / "vllm"

    @property
    def user_presets(self) -> Path:
        return self.root / layout.USER_PRESETS

    @property
    def state_dir(self) -> Path:
        """vllm-dev's own files inside the checkout (ignored by git through its own .gitignore)."""
        return self.root / layout.STATE_DIR

    def cmake_minimum(self) -> tuple[int, ...]:
        """The ``cmake_minimum_required`` version of the top-level CMakeLists.txt."""
        from packaging.version import Version  # here: `invoke --list` needs no packaging

        text = (self.root / "CMakeLists.txt").read_text(errors="replace")
        match = _MINIMUM_RE.search(text)
        if not match:
            return (3, 26)
        return Version(match.group(1)).release

    def build_requirements(self, device: str) -> Path:
        """The requirement file for ``device`` in whichever layout this checkout uses.

        vLLM moved from one ``requirements/build.txt`` to ``requirements/build/<device>.txt``;
        both are in the wild, so both are accepted.
        """
        new = self.root / "requirements" / "build" / f"{device}.txt"
        old = self.root / "requirements" / "build.txt"
        if new.is_file():
            return new
        if old.is_file():
            return old
        raise VllmDevError(
            f"no build requirements in {self.root}: expected requirements/build/{device}.txt "
            "or requirements/build.txt"
        )


    def test_requirements(self, device: str) -> Path | None:
        """The test requirements (``vllm-dev setup --tests``), in either layout:
        ``requirements/test/<device>.txt`` (vLLM since its requirements moved into folders) or
        ``requirements/test.txt``; None when the checkout has none."""
        for path in (self.root / "requirements" / "test" / f"{device}.txt",
                     self.root / "requirements" / "test.txt"):
            if path.is_file():
                return path
        return None


def missing_parts(path: Path) -> list[str]:
    """What keeps ``path`` from being a vLLM checkout (empty when it is one)."""
    missing: list[str] = []
    cmake_lists = path / "CMakeLists.txt"
    if not cmake_lists.is_file():
        missing.append("CMakeLists.txt")
    elif not _PROJECT_RE.search(cmake_lists.read_text(errors="replace")):
        missing.append("project(vllm_extensions) in CMakeLists.txt")
    if not ((path / "setup.py").is_file() or (path / "pyproject.toml").is_file()):
        missing.append("setup.py or pyproject.toml")
    if not (path / "vllm").is_dir():
        missing.append("the vllm/ package")
    if not (path / "csrc").is_dir():  # the kernels vllm-dev builds
        missing.append(_NO_CSRC)
    return missing


def find_checkout(explicit: Path | str | None, *, cwd: Path, origin: str = "--source") -> Checkout:
    """The checkout named by the user, or the nearest one at or above ``cwd``."""
    if explicit:
        path = Path(explicit).expanduser()
        path = (cwd / path) if not path.is_absolute() else path
        if not path.is_dir():
            raise VllmDevError(f"{origin} {path} does not exist: pass the root of a vLLM checkout")
        missing = missing_parts(path)
        if missing:
            raise VllmDevError(
                f"{origin} {path} is not a vLLM checkout: missing {', '.join(missing)}"
            )
        return Checkout(path.resolve())
    for candidate in (cwd, *cwd.parents):
        missing = missing_parts(candidate)
        if not missing:
            return Checkout(candidate.resolve())
        if missing == [_NO_CSRC]:  # vLLM's tree without its kernels: say so, not "no checkout"
            raise VllmDevError(f"{candidate} has no csrc/ (the kernel sources vllm-dev builds): "
                               "use a full source checkout (`git clone` of vLLM, or its sdist)")
    raise VllmDevError(
        f"no vLLM checkout at or above {cwd}: run inside one, pass --source PATH "
        "or set VLLM_DEV_SOURCE"
    )
