"""``setup``: the precompiled editable install plus the build requirements, into the target venv.

Skipped when nothing it depends on changed since it last succeeded (checkout commit, the files
that define the install and the requirements, the interpreter, the precompiled-wheel variables).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_dev.checkout.affected import remember_built
from vllm_dev.checkout.precompiled import base_moved, recorded, remember_setup
from vllm_dev.errors import CannotRun, CommandFailed, VllmDevError
from vllm_dev.installs.install_record import InstallRecord
from vllm_dev.planning.workspace import Workspace
from vllm_dev.process.runner import Runner
from vllm_dev.state import layout, records
from vllm_dev.state.build_record import is_marked_build_dir

PRECOMPILED_VARS = (
    "VLLM_PRECOMPILED_WHEEL_LOCATION",
    "VLLM_PRECOMPILED_WHEEL_COMMIT",
    "VLLM_PRECOMPILED_WHEEL_VARIANT",
)
SETUP_RECORD = layout.SETUP
# What each interpreter was last set up with. Version 1 was a bare object of interpreter -> key
# (no kind): read as version 2's "interpreters".
SETUP_FORMAT = records.Format("setup record", "vllm-dev setup record", 2,
                              legacy=lambda data: {"interpreters": data})


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


# What uv (and vLLM's setup.py fetching its wheel with urllib) says when the network is not there.
_NETWORK_RE = re.compile(r"dns error|failed to lookup address|name resolution|Name or service "
                         r"not known|Network is unreachable|Could not connect|tcp connect error|"
                         r"error sending request|Connection refused|timed out|Could not resolve",
                         re.IGNORECASE)
_URL_RE = re.compile(r"https?://([^/\s`'\"]+)")
OFFLINE_COMMAND = "vllm-dev setup -- --no-index --find-links DIR"


class NetworkWatch:
    """Passes an installer's output through, line by line, and remembers what it could not reach:
    a setup that fails for the network then says so in one line with the offline command."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.reason = ""

    def line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
        for host in _URL_RE.findall(text):
            if host not in self.hosts:
                self.hosts.append(host)
        if _NETWORK_RE.search(text):  # the innermost cause is the last one uv prints
            self.reason = text.strip().removeprefix("cause:").strip()[:120]

    def explain(self, exc: CommandFailed) -> VllmDevError:
        if not self.reason:
            return exc
        where = self.hosts[-1] if self.hosts else "the package index"
        return VllmDevError(
            f"setup could not reach {where} ({self.reason}): offline or behind a mirror, give "
            f"VLLM_PRECOMPILED_WHEEL_LOCATION a local wheel and run `{OFFLINE_COMMAND}` (README: "
            "Offline / mirror)")


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


def _commit(runner: Runner, root: Path) -> str:
    try:
        done = runner.query(["git", "-C", str(root), "rev-parse", "HEAD"], timeout=10)
    except CannotRun:
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
        "commit": _commit(ws.runner, root),
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
    loaded = records.load(SETUP_FORMAT, record_path, _interpreters)
    record = loaded.value or {}
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
        watch = NetworkWatch()
        try:
            ws.runner.run([uv, "pip", "install", "--python", python, *step.args,
                           *installer_args(extra_args)], cwd=root, env=step.env or None,
                          stream=watch.line)
        except CommandFailed as exc:
            raise watch.explain(exc) from None
    if not ws.dry:
        records.ensure_state_dir(ws.checkout.state_dir)
        record[key["interpreter"]] = key
        if loaded.writable:
            records.save(SETUP_FORMAT, record_path, {"interpreters": record}, guard=False)
        # W, while the wheel is at hand
        before = recorded_w(ws.checkout.state_dir)
        base = remember_setup(root, ws.checkout.state_dir, ws.environ)
        follow_new_w(ws, before, base.commit if base else None)
    return SetupResult(False, requirements)


def _interpreters(body: dict[str, Any]) -> dict[str, Any]:
    found = body.get("interpreters")
    if not isinstance(found, dict):
        raise records.Corrupt("interpreters", "must be an object")
    return found


def recorded_w(state_dir: Path) -> str | None:
    """W as the last setup recorded it (None: no record, or W unknown then)."""
    commit = (recorded(state_dir) or {}).get("commit")
    return str(commit) if commit else None


def follow_new_w(ws: Workspace, before: str | None, after: str | None) -> None:
    """The prebuilt kernels in ``vllm/`` are now another W's (a refresh after a ``git pull`` or
    a rebase, or a first known W): each vllm-dev build dir of the checkout starts its selection
    afresh (it builds only what changes since the new W reach, not what it built for the old
    one) and forgets the installs that setup's kernels replaced, so nothing built for the old
    base is put back. What the build dirs built stays (ninja reuses it). Without such a refresh
    while the base moved (a wheel of the old W named again), say so."""
    root = ws.checkout.root
    if after and after != before:
        for build_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                                and is_marked_build_dir(p)):
            record = InstallRecord.load(build_dir)
            replaced = sorted(name for name, entry in record.components.items()
                              if record.prefix is not None and any(
                                  f.installed_changed(record.prefix) for f in entry.files))
            for name in replaced:
                del record.components[name]
            if replaced:
                record.save()
            remember_built(build_dir, [])
            was = f"W {before[:12]}" if before else "an unknown W"
            ws.say(f"setup: the prebuilt kernels in vllm/ are now W {after[:12]}'s (were "
                   f"{was}'s): {build_dir.name} builds only what changes since {after[:12]} "
                   f"reach" + (f"; its installs of {', '.join(replaced)} were replaced and are "
                               "not put back" if replaced else ""))
    moved = base_moved(root, after)
    if moved is not None:
        ws.say(f"setup: the prebuilt kernels are still W {moved.w[:12]}'s, and the merge-base of "
               f"HEAD with {moved.upstream} is {moved.base[:12]} ({moved.kernel_files} upstream "
               f"kernel file(s) later): name a wheel of {moved.base[:12]} in "
               "VLLM_PRECOMPILED_WHEEL_LOCATION (or unset it and VLLM_PRECOMPILED_WHEEL_COMMIT) "
               "and run `vllm-dev setup` again")
