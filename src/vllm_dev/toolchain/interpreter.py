"""The target interpreter: the Python that gets the editable install and builds the kernels.

It is never the interpreter that happens to run vllm-dev: a kernel built against one venv's torch
and imported from another dies with ``undefined symbol``. Facts about it are read in a subprocess
with a timeout, without importing torch (which takes seconds), by reading ``torch/version.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from vllm_dev.checkout.tree import Checkout
from vllm_dev.errors import VllmDevError
from vllm_dev.process.runner import Runner

PROBE_TIMEOUT_S = 30.0

# Runs inside the target interpreter. Kept dependency-free and torch-import-free on purpose.
_PROBE = r"""
import json, os, re, sys, sysconfig
from importlib import metadata, util
names = json.loads(sys.argv[1])
inc = sysconfig.get_paths().get("include") or ""
out = {
    "version": list(sys.version_info[:3]),
    "executable": sys.executable,
    "prefix": sys.prefix,
    "include": inc,
    "has_headers": os.path.isfile(os.path.join(inc, "Python.h")),
    "torch": None, "torch_cuda": None, "torch_hip": None, "vllm_path": None,
    "packages": {},
}
spec = util.find_spec("torch")
if spec is not None and spec.origin:
    try:
        out["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pass
    vfile = os.path.join(os.path.dirname(spec.origin), "version.py")
    if os.path.isfile(vfile):
        text = open(vfile, encoding="utf-8", errors="replace").read()
        for key in ("cuda", "hip"):
            m = re.search(r"^%s\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]" % key, text, re.M)
            out["torch_" + key] = m.group(1) if m else None
vspec = util.find_spec("vllm")
if vspec is not None and vspec.submodule_search_locations:
    out["vllm_path"] = list(vspec.submodule_search_locations)[0]
for name in names:
    try:
        out["packages"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out["packages"][name] = None
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Interpreter:
    """An interpreter path (never symlink-resolved: a venv's python is a link to its base)."""

    path: Path
    origin: str

    @property
    def bin_dir(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class InterpreterFacts:
    """What the probe learned; ``packages`` maps requirement names to versions (None: absent)."""

    version: tuple[int, int, int]
    prefix: str
    include: str
    has_headers: bool
    torch: str | None
    torch_cuda: str | None
    torch_hip: str | None
    vllm_path: str | None
    packages: dict[str, str | None] = field(default_factory=dict)

    @property
    def torch_device(self) -> str:
        """The device vLLM's setup.py would build for with this torch (HIP, CUDA, else CPU)."""
        if self.torch_hip:
            return "rocm"
        if self.torch_cuda:
            return "cuda"
        return "cpu"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def find_interpreter(
    explicit: str | os.PathLike[str] | None,
    *,
    checkout: Checkout,
    environ: Mapping[str, str],
    origin: str = "--python",
) -> Interpreter:
    """``--python`` > the active virtual environment > the checkout's ``.venv/`` > an error."""
    if explicit:
        # Normalized, not resolved: `../venv/bin/python` and `/abs/venv/bin/python` are one
        # interpreter (no reconfigure), and a venv's python stays the venv's, not its base's.
        path = Path(os.path.abspath(Path(explicit).expanduser()))
        if path.is_dir():
            if not _venv_python(path).exists():
                raise VllmDevError(
                    f"{origin} {explicit} is a directory but not a virtual environment (no "
                    f"{_venv_python(Path('.'))} in it): give a venv or its python (create one "
                    f"with `uv venv {explicit}`)")
            path = _venv_python(path)
        if not path.exists():
            raise VllmDevError(
                f"{origin} {explicit} does not exist: give the python of the venv that holds "
                f"vLLM's editable install (e.g. {checkout.root}/.venv/bin/python)"
            )
        return Interpreter(path, origin)
    active = environ.get("VIRTUAL_ENV")
    if active:
        path = _venv_python(Path(os.path.abspath(active)))
        if path.exists():
            return Interpreter(path, "the active virtual environment")
        raise VllmDevError(
            f"the active virtual environment {active} has no {path.name}: "
            "re-create it or deactivate it"
        )
    path = _venv_python(checkout.root / ".venv")
    if path.exists():
        return Interpreter(path, "the checkout's .venv")
    raise VllmDevError(
        f"no target interpreter: activate a virtual environment, pass --python, or create one "
        f"with `uv venv --python 3.12 {checkout.root / '.venv'}`"
    )


def probe(
    interpreter: Interpreter, *, runner: Runner, packages: Iterable[str] = ()
) -> InterpreterFacts:
    """Ask the interpreter about itself; a broken interpreter is a one-line error."""
    names = sorted(set(packages))
    done = runner.query(
        [interpreter.path, "-I", "-c", _PROBE, json.dumps(names)],
        timeout=PROBE_TIMEOUT_S,
    )
    not_python = VllmDevError(
        f"{interpreter.origin} {interpreter.path} is not a Python interpreter (it did not answer "
        "vllm-dev's probe): give the python of a venv, e.g. .venv/bin/python")
    if not done.ok:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if not re.match(r"^[A-Za-z_.]*(Error|Exception|Exit)\b", last):  # not Python's words
            raise not_python
        raise VllmDevError(f"target interpreter {interpreter.path} does not run: {last[:200]}")
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
        if not isinstance(data, dict) or "version" not in data:
            raise ValueError("not the probe's answer")
    except (ValueError, IndexError):
        raise not_python from None
    return InterpreterFacts(
        version=tuple(data["version"]),  # type: ignore[arg-type]
        prefix=data["prefix"],
        include=data["include"],
        has_headers=bool(data["has_headers"]),
        torch=data["torch"],
        torch_cuda=data["torch_cuda"],
        torch_hip=data["torch_hip"],
        vllm_path=data["vllm_path"],
        packages=dict(data["packages"]),
    )


def requirements(path: Path) -> list[Requirement]:
    """The requirements of a requirements file that apply on this machine (markers evaluated),
    each name once (vLLM lists torch twice, for x86 and for the rest, under markers)."""
    found: dict[str, Requirement] = {}
    # The file's lines are split here by hand: packaging parses one requirement, not a
    # requirements file (pip's parser is not a public API); options and URLs are skipped.
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split(" #", 1)[0].split("#", 1)[0].strip() if not raw.lstrip().startswith(
            "#") else ""
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue  # a URL or option line pip understands; not ours to check
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        found.setdefault(canonicalize_name(requirement.name), requirement)
    return list(found.values())


def requirement_names(path: Path) -> list[str]:
    """Distribution names in a requirements file (enough to check they are installed)."""
    return [r.name for r in requirements(path)]


def meets(specifier: SpecifierSet | str, installed: str) -> bool:
    """Whether version ``installed`` meets ``specifier`` by PEP 440: a local label the pin names
    must match (``torch==2.14.0+cpu`` is not met by 2.14.0+cu130), one it leaves out need not
    (``==2.14.0`` accepts 2.14.0+cu130); 2.13.0 never meets ``==2.14.0``; a nightly (pre-release)
    is compared like any version. A pin or version that does not parse is not evidence of a
    mismatch: True."""
    try:
        return SpecifierSet(str(specifier)).contains(Version(installed), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True
