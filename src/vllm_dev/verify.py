"""``verify``: do the installed extensions import, and is anything stale lying in ``vllm/``?

Three things make a build "succeed" and still fail at ``import vllm``: an extension compiled
against another interpreter's torch (``undefined symbol``), a ``.so`` that a precompiled wheel left
and this build no longer produces (vLLM's wheel extraction never deletes, so an old ``_C.abi3.so``
can sit beside ``_C_stable_libtorch.abi3.so``), and an installed file older than its build output.
Imports run in the *target* interpreter, in a subprocess (a freshly built ``.so`` cannot be
re-imported in-process, and a crash on import must not take vllm-dev down), from the checkout root.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.errors import VllmDevError
from vllm_dev.install import build_outputs, components
from vllm_dev.state import ensure_state_dir
from vllm_dev.workspace import Workspace

IMPORT_TIMEOUT_S = 300.0
_EXTENSION_SUFFIXES = (".so", ".pyd")

# Runs in the target interpreter: torch first when present (the extensions link libtorch).
_IMPORTER = r"""
import importlib, json, os, sys
names = json.loads(sys.argv[1])
if sys.argv[2] == "1":
    try:
        import torch  # noqa: F401
    except Exception:
        pass
out = {}
for name in names:
    try:
        module = importlib.import_module(name)
        out[name] = {"ok": True, "file": os.path.realpath(getattr(module, "__file__", "") or "")}
    except BaseException as exc:
        text = (str(exc).strip().splitlines() or [""])[0]
        out[name] = {"ok": False, "error": f"{type(exc).__name__}: {text}"}
print("VLLM_DEV_VERIFY " + json.dumps(out))
"""


@dataclass(frozen=True)
class ImportResult:
    module: str
    path: Path
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class VerifyReport:
    imports: list[ImportResult] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)
    older: list[Path] = field(default_factory=list)
    removed_to: Path | None = None

    @property
    def failed(self) -> list[ImportResult]:
        return [r for r in self.imports if not r.ok]


def module_name(path: Path, *, root: Path) -> str:
    """``<root>/vllm/sub/_C.abi3.so`` -> ``vllm.sub._C``."""
    rel = path.relative_to(root)
    return ".".join([*rel.parent.parts, rel.name.split(".", 1)[0]])


def manifest_files(build_dir: Path) -> list[Path]:
    """Every file the installs of this build dir wrote (whole install and per-component)."""
    files: dict[str, Path] = {}
    for manifest in sorted(build_dir.glob("install_manifest*.txt")):
        for line in manifest.read_text(errors="replace").splitlines():
            if line.strip():
                files.setdefault(line.strip(), Path(line.strip()))
    return list(files.values())


def find_stale(package: Path, *, installed: list[Path], build_dir: Path) -> list[Path]:
    """Extensions in ``package`` that this build neither installed nor can produce."""
    installed_real = {os.path.realpath(p) for p in installed}
    produced = set(components(build_dir)) | {
        name.split(".", 1)[0] for name in build_outputs(build_dir)}
    stale = []
    for top, dirs, names in os.walk(package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in sorted(names):
            path = Path(top) / name
            if not name.endswith(_EXTENSION_SUFFIXES) and ".so." not in name:
                continue
            if os.path.realpath(path) in installed_real or name.split(".", 1)[0] in produced:
                continue
            stale.append(path)
    return sorted(stale)


def prebuilt_files(package: Path, *, installed: list[Path], build_dir: Path) -> list[Path]:
    """Extensions of this build's targets that it did not install: the prebuilt kernels an
    affected-targets build left in place (checked too: they must import beside the rebuilt)."""
    installed_real = {os.path.realpath(p) for p in installed}
    targets = set(components(build_dir))
    return sorted(p for p in package.glob("**/*") if p.name.endswith(_EXTENSION_SUFFIXES)
                  and p.name.split(".", 1)[0] in targets
                  and os.path.realpath(p) not in installed_real and "__pycache__" not in p.parts)


def find_older(installed: list[Path], *, build_dir: Path) -> list[Path]:
    """Installed files whose build output is newer: the last build was not installed."""
    outputs = build_outputs(build_dir)
    older = []
    for path in installed:
        built = outputs.get(path.name)
        if built is None or not path.is_file():
            continue
        if path.stat().st_mtime < built.stat().st_mtime:
            older.append(path)
    return older


def import_all(ws: Workspace, modules: dict[str, Path]) -> list[ImportResult]:
    """Import each module in the target interpreter; a crash is retried one module at a time."""
    if not modules:
        return []
    answer = _run_importer(ws, list(modules))
    if answer is None and len(modules) > 1:
        results: list[ImportResult] = []
        for name, path in modules.items():
            results += import_all(ws, {name: path})
        return results
    results = []
    for name, path in modules.items():
        entry = (answer or {}).get(name)
        if entry is None:
            results.append(ImportResult(name, path, "the importing interpreter crashed"))
        elif not entry["ok"]:
            results.append(ImportResult(name, path, str(entry["error"])))
        elif entry.get("file") and entry["file"] != os.path.realpath(path):
            results.append(ImportResult(
                name, path, f"imports {entry['file']}, not the installed {path}: the target "
                "interpreter's vllm is another checkout"))
        else:
            results.append(ImportResult(name, path))
    return results


def _run_importer(ws: Workspace, names: list[str]) -> dict[str, dict[str, object]] | None:
    done = ws.runner.run(
        [ws.interpreter.path, "-c", _IMPORTER, json.dumps(names), "1" if ws.facts.torch else "0"],
        cwd=ws.checkout.root, capture=True, check=False, mutates=False, timeout=IMPORT_TIMEOUT_S)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("VLLM_DEV_VERIFY "):
            data: dict[str, dict[str, object]] = json.loads(line.split(" ", 1)[1])
            return data
    return None


def remove_stale(ws: Workspace, stale: list[Path]) -> Path:
    """Move stale files under ``.vllm-dev/stale/<time>/`` (never deleted: they may be a user's)."""
    root = ws.checkout.root
    target = ensure_state_dir(ws.checkout.state_dir) / "stale" / time.strftime("%Y%m%d-%H%M%S")
    for path in stale:
        dest = target / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    return target


def run_verify(ws: Workspace, *, remove: bool = False) -> VerifyReport:
    build_dir = ws.build_dir
    root = ws.checkout.root
    package = ws.checkout.package_dir
    installed = [p for p in manifest_files(build_dir) if p.name.endswith(_EXTENSION_SUFFIXES)
                 or ".so." in p.name]
    prebuilt = prebuilt_files(package, installed=installed, build_dir=build_dir)
    if not installed and not prebuilt:
        raise VllmDevError(f"nothing installed from {build_dir} yet: run `vllm-dev build` first")
    report = VerifyReport()
    modules = {}
    for path in [*installed, *prebuilt]:
        try:
            modules[module_name(path, root=root)] = path
        except ValueError:
            continue  # outside the checkout: install.check_installed reports that
    report.imports = import_all(ws, modules)
    report.stale = find_stale(package, installed=installed, build_dir=build_dir)
    report.older = find_older(installed, build_dir=build_dir)
    if remove and report.stale and not ws.dry:
        report.removed_to = remove_stale(ws, report.stale)
    return report


def describe(report: VerifyReport, *, root: Path) -> list[str]:
    """Human lines: one per extension, then stale and older files with their fix."""
    lines = []
    for result in report.imports:
        lines.append(f"{result.module}: " + ("ok" if result.ok else f"FAILED: {result.error}"))
    for path in report.stale:
        rel = path.relative_to(root)
        if report.removed_to:
            lines.append(f"stale {rel}: moved to {report.removed_to / rel}")
        else:
            lines.append(f"stale {rel}: this build does not produce it (left by a precompiled "
                         "wheel?); remove with `vllm-dev verify --remove-stale`")
    for path in report.older:
        lines.append(f"{path.relative_to(root)} is older than its build output: run "
                     "`vllm-dev install`")
    return lines


def check(ws: Workspace, report: VerifyReport) -> None:
    """Raise one line naming every extension that fails to import."""
    if report.failed:
        first = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise VllmDevError(
            f"{first.module} does not import in {ws.interpreter.path}: {first.error}{more}; "
            "rebuild with that interpreter (`vllm-dev build --python ...`) or run "
            "`vllm-dev verify` for details"
        )


def verify_after_build(ws: Workspace) -> VerifyReport | None:
    """The last step of ``build``: stale/older files are warnings, an import failure an error."""
    if ws.dry:
        return None
    report = run_verify(ws)
    for line in describe(report, root=ws.checkout.root):
        if not line.endswith(": ok"):
            ws.say(line)
    ok = sum(1 for r in report.imports if r.ok)
    if not report.failed:
        ws.say(f"verified: {ok} extension(s) import in {ws.interpreter.path}")
    check(ws, report)
    return report


def run_verify_task(ws: Workspace, *, remove: bool = False, as_json: bool = False) -> VerifyReport:
    """``vllm-dev verify``: one line per extension on stdout (or JSON); non-zero on a failure."""
    report = run_verify(ws, remove=remove)
    root = ws.checkout.root
    if as_json:
        print(json.dumps({
            "imports": [{"module": r.module, "path": str(r.path), "ok": r.ok, "error": r.error}
                        for r in report.imports],
            "stale": [str(p) for p in report.stale],
            "moved_to": str(report.removed_to) if report.removed_to else None,
            "older_than_build": [str(p) for p in report.older],
        }, indent=2))
    else:
        for line in describe(report, root=root):
            print(line)
    check(ws, report)
    return report
