"""``setup``: the precompiled editable install plus the build requirements, into the target venv.

Skipped when nothing it depends on changed since it last succeeded (checkout commit, the files
that define the install and the requirements, the interpreter, the precompiled-wheel variables).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.checkout.state import ensure_state_dir, read_json, write_json
from vllm_dev.errors import VllmDevError
from vllm_dev.flow.workspace import Workspace

PRECOMPILED_VARS = (
    "VLLM_PRECOMPILED_WHEEL_LOCATION",
    "VLLM_PRECOMPILED_WHEEL_COMMIT",
    "VLLM_PRECOMPILED_WHEEL_VARIANT",
)
SETUP_RECORD = "setup.json"


# Lets uv pick torch's CUDA/ROCm/CPU wheel index for this machine; pip has no such option.
UV_ONLY_ARGS = ("--torch-backend=auto",)
# Extra installer arguments that take over index selection: with one of them, vllm-dev leaves
# out --torch-backend=auto (it asks download.pytorch.org, a DNS failure offline or behind a
# PyPI-only mirror).
_INDEX_ARGS = ("--torch-backend", "--offline", "--no-index", "--index-url", "-i",
               "--default-index", "--index")


def installer_args(extra: tuple[str, ...]) -> tuple[str, ...]:
    """uv's arguments after ours: ``--torch-backend=auto`` unless ``extra`` picks the indexes."""
    takes_over = any(a == flag or a.startswith(flag + "=") for a in extra for flag in _INDEX_ARGS)
    return (*(() if takes_over else UV_ONLY_ARGS), *extra)


@dataclass(frozen=True)
class InstallStep:
    """One install of setup, as the arguments after ``pip install``.

    Shared by :func:`run_setup` (through uv) and the Nox sessions (through ``session.install``,
    so ``nox -R`` skips them): both install exactly the same things the same way.
    """

    message: str
    args: tuple[str, ...]
    env: dict[str, str]


def editable_step(ws: Workspace) -> InstallStep:
    """The editable install with prebuilt kernels (needs no interpreter probe: runs first, and
    brings torch, which decides the device of the next step).

    ``--device``/``VLLM_TARGET_DEVICE`` goes to vLLM's setup.py as ``VLLM_TARGET_DEVICE``. For
    ``cpu`` the prebuilt kernels must be a CPU wheel's: vLLM's own lookup (no
    ``VLLM_PRECOMPILED_WHEEL_LOCATION``) picks a CUDA variant, whose CUDA-only ``.so`` files would
    land in ``vllm/`` (``verify`` then lists them as stale). The README ("Offline / mirror")
    shows the CPU way: a ``+cpu`` wheel in ``VLLM_PRECOMPILED_WHEEL_LOCATION``."""
    root = ws.checkout.root
    env = {"VLLM_USE_PRECOMPILED": "1"}
    if ws.settings.device:
        env["VLLM_TARGET_DEVICE"] = ws.settings.device
    env.update({var: ws.environ[var] for var in PRECOMPILED_VARS if ws.environ.get(var)})
    return InstallStep(f"editable install of {root} with prebuilt kernels",
                       ("-U", "-e", str(root)), env)


def requirements_step(ws: Workspace, requirements: Path) -> InstallStep:
    return InstallStep(f"build requirements from {requirements.relative_to(ws.checkout.root)}",
                       ("-r", str(requirements)), {})


@dataclass(frozen=True)
class SetupResult:
    skipped: bool
    requirements: Path


def find_uv() -> str:
    """uv from the ``uv`` package (a dependency of vllm-dev), else from PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise VllmDevError("uv is not installed: `pip install uv` (vllm-dev needs it)") \
                from None
        return found


def _commit(root: Path) -> str:
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def setup_key(ws: Workspace, requirements: Path) -> dict[str, str]:
    root = ws.checkout.root
    watched = [root / "setup.py", root / "pyproject.toml", requirements]
    watched += sorted((root / "requirements").glob("*.txt"))
    return {
        "interpreter": str(ws.interpreter.path),
        "interpreter_real": str(ws.interpreter.path.resolve()),
        "commit": _commit(root),
        "files": _digest(watched),
        "device": ws.device,
        **{var: ws.environ.get(var, "") for var in PRECOMPILED_VARS},
    }


def test_requirements_step(ws: Workspace) -> InstallStep:
    """``setup --tests``: the checkout's test requirements (what ``vllm-dev test`` runs with)."""
    found = ws.checkout.test_requirements(ws.device)
    if found is None:
        raise VllmDevError(f"--tests: {ws.checkout.root} has no test requirements (expected "
                           f"requirements/test/{ws.device}.txt or requirements/test.txt)")
    return InstallStep(f"test requirements from {found.relative_to(ws.checkout.root)}",
                       ("-r", str(found)), {})


def run_setup(ws: Workspace, *, force: bool = False,
              extra_args: tuple[str, ...] = (), tests: bool = False) -> SetupResult:
    root = ws.checkout.root
    requirements = ws.checkout.build_requirements(ws.device)
    tests_step = test_requirements_step(ws) if tests else None
    key = {**setup_key(ws, requirements), "installer_args": " ".join(extra_args)}
    if tests_step is not None:  # a setup without --tests did not install them
        key["tests"] = _digest([Path(tests_step.args[-1])])
    record_path = ws.checkout.state_dir / SETUP_RECORD
    record = read_json(record_path) or {}
    if not force and record.get(key["interpreter"]) == key:
        ws.say(f"setup: nothing changed since the last setup into {ws.interpreter.path} "
               "(same commit, requirements and interpreter); skipped, --force redoes it")
        return SetupResult(True, requirements)
    uv = find_uv()
    python = str(ws.interpreter.path)
    editable = editable_step(ws)
    steps = [editable, requirements_step(ws, requirements), *([tests_step] if tests_step else [])]
    for step in steps:
        ws.say(f"setup: {step.message} into {python}")
        ws.runner.run([uv, "pip", "install", "--python", python, *step.args,
                       *installer_args(extra_args)], cwd=root, env=step.env or None)
    if not ws.dry:
        ensure_state_dir(ws.checkout.state_dir)
        record[key["interpreter"]] = key
        write_json(record_path, record)
        from vllm_dev.checkout.precompiled import remember_setup  # W, while the wheel is at hand

        remember_setup(root, ws.checkout.state_dir, ws.environ)
    return SetupResult(False, requirements)
