"""``verify``: do the installed extensions load, and is anything stale lying in ``vllm/``?

Three things make a build "succeed" and still fail at ``import vllm``: an extension compiled
against another interpreter's torch (``undefined symbol``), a ``.so`` that a precompiled wheel left
and this build no longer produces (vLLM's wheel extraction never deletes, so an old ``_C.abi3.so``
can sit beside ``_C_stable_libtorch.abi3.so``), and an installed file that is not what the build
dir's last build would install (built with ``--no-install``, or replaced since).

How an extension is checked: in the *target* interpreter, in a subprocess (a freshly built ``.so``
cannot be re-imported in-process, and a crash on load must not take vllm-dev down), ``import
torch`` first when it is installed (the extensions link libtorch), then each installed file is
loaded with ``importlib.util.spec_from_file_location``. vLLM's own ``vllm/__init__.py`` is never
run: it pulls in vLLM's whole runtime (seconds, and its dependencies), which is not what an
extension check is about. ``dlopen`` resolves every symbol at load (``RTLD_NOW``, CPython's
default), so an ``undefined symbol`` is caught exactly as ``import vllm._C`` would hit it.

Which files are modules is the target interpreter's answer (``importlib.machinery.
EXTENSION_SUFFIXES``), not ours. ``.so`` alone is one of those suffixes on Linux, so a plain shared
library installed beside the extensions (``libfoo.so``, found through ``INSTALL_RPATH $ORIGIN``)
is told apart by the module's init symbol: a file without ``PyInit_<name>`` is loaded with
``ctypes`` (which still resolves its symbols) and never imported as a module.

``build`` (and a Nox session, through the same pipeline) checks only the components whose
installed files changed since they last loaded (see install_state.py); ``vllm-dev verify`` checks
every installed extension.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_dev.checkout import affected
from vllm_dev.checkout.affected import built_before
from vllm_dev.checkout.precompiled import find_base
from vllm_dev.errors import CannotRun, VllmDevError
from vllm_dev.installs import install_state
from vllm_dev.installs.components import components
from vllm_dev.installs.install_record import InstallRecord
from vllm_dev.installs.staged_install import build_outputs
from vllm_dev.planning.plan import Resolved
from vllm_dev.process.children import Child
from vllm_dev.state import layout
from vllm_dev.state.records import ensure_state_dir

IMPORT_TIMEOUT_S = 300.0

# Runs inside the target venv: an installed vllm (the editable install) must be this checkout's,
# or `import vllm` picks other kernels; finding its spec does not run its __init__.
_EDITABLE_CHECK = r"""
import importlib.util, os, sys
package = os.path.realpath(sys.argv[1])
spec = importlib.util.find_spec(os.path.basename(package))
where = [os.path.realpath(p) for p in (spec.submodule_search_locations or [])] if spec else []
if spec is not None and package not in where:
    print(f"{os.path.basename(package)} is installed from {', '.join(where) or '?'}, "
          f"not from {package}")
    sys.exit(1)
"""
_SHARED_SUFFIXES = (".so", ".pyd", ".dylib")

# Runs in the target interpreter. argv[1]: JSON [[module name, path], ...] (or "-": read it from
# stdin, after torch is loaded); argv[2]: "0" no torch, "1" `import torch` first, "light" only
# torch's shared libraries (falls back to "1"). Prints one JSON line: {"mode": ..., "files":
# {path: {"kind": "module"|"library"|"other", "error": ...}}}.
_CHECKER = r"""
import ctypes, importlib.machinery, importlib.util, json, os, sys
mode = sys.argv[2]
if mode == "light":
    # torch's shared libraries as `import torch` loads them (libtorch_global_deps RTLD_GLOBAL, then
    # what torch._C links, RTLD_LOCAL), without torch's Python side (most of its 2-15 s).
    try:
        lib = os.path.join(os.path.dirname(importlib.util.find_spec("torch").origin), "lib")
        ctypes.CDLL(os.path.join(lib, "libtorch_global_deps.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(os.path.join(lib, "libtorch_python.so"))
    except Exception:
        mode = "1"
if mode == "1":
    import torch  # noqa: F401  (a torch that fails to import is the first thing to report)
# "-": started ahead of time (WarmChecker); the files arrive on stdin once installed
items = json.loads(sys.stdin.read() if sys.argv[1] == "-" else sys.argv[1])
if not items:
    sys.exit(0)
suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
bare = min(suffixes, key=len) if suffixes else None
out = {}
for name, path in items:
    base = os.path.basename(path)
    suffix = next((s for s in suffixes if base.endswith(s)), None)
    entry = {"kind": "module", "error": None}
    try:
        if suffix is None:
            entry["kind"] = "other"
        else:
            short = base[: -len(suffix)]
            if suffix == bare and getattr(ctypes.CDLL(path), "PyInit_" + short, None) is None:
                entry["kind"] = "library"  # loaded (symbols resolved), not a module
            else:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
    except BaseException as exc:
        text = (str(exc).strip().splitlines() or [""])[0]
        entry["error"] = f"{type(exc).__name__}: {text}"
    out[path] = entry
print("VLLM_DEV_VERIFY " + json.dumps({"mode": mode, "files": out}), flush=True)
"""


@dataclass(frozen=True)
class ImportResult:
    module: str
    path: Path
    error: str | None = None
    kind: str = "module"  # "module", or "library" (a shared library, loaded but not imported)

    @property
    def ok(self) -> bool:
        return self.error is None


# The state of each extension of the checkout (``vllm-dev verify`` lists every one with one).
INSTALLED = "built here and installed"
PREBUILT = "prebuilt from the wheel at W"
PREBUILT_CHANGED = "prebuilt at W, but its sources changed since W"
BUILT_NOT_INSTALLED = "built here, not installed"
ABSENT = "not built and not installed"
STATES = (INSTALLED, PREBUILT, PREBUILT_CHANGED, BUILT_NOT_INSTALLED, ABSENT)


@dataclass
class Extension:
    """One extension of the checkout (a build dir's install component, or a prebuilt one when
    the build dir knows none), its state, its files in ``vllm/`` and whether they load."""

    name: str
    state: str
    files: list[Path] = field(default_factory=list)
    w: str = ""  # W, shortened ("" when unknown)
    cause: str = ""  # why: what changed since W, why W is unknown, why it is not installed
    results: list[ImportResult] = field(default_factory=list)

    @property
    def detail(self) -> str:
        """The state in words, with W, the cause and the fix."""
        if self.state == PREBUILT:
            return (f"prebuilt from the wheel at W {self.w}" if self.w
                    else f"prebuilt from a wheel (W unknown: {self.cause})")
        if self.state == PREBUILT_CHANGED:
            return (f"prebuilt at W {self.w}, but its sources changed since W ({self.cause}): "
                    "rebuild it with `vllm-dev build`")
        if self.state == BUILT_NOT_INSTALLED:
            return f"built here, not installed ({self.cause}): run `vllm-dev install`"
        return self.state

    @property
    def failed(self) -> list[ImportResult]:
        return [r for r in self.results if not r.ok]

    def label(self, root: Path) -> str:
        modules = [f for f in self.files if _shared(f)]
        try:
            return module_name(modules[0], root=root) if modules else self.name
        except ValueError:
            return self.name


@dataclass
class VerifyReport:
    imports: list[ImportResult] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)
    older: list[Path] = field(default_factory=list)
    removed_to: Path | None = None
    extensions: list[Extension] = field(default_factory=list)  # ``vllm-dev verify`` only

    def count(self, state: str) -> int:
        return sum(e.state == state for e in self.extensions)

    @property
    def ok(self) -> bool:
        """Every extension built here is installed, and everything installed loads."""
        return not self.failed and not self.count(BUILT_NOT_INSTALLED)

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in STATES if self.count(s))
        stale = f"; {len(self.stale)} stale file(s)" if self.stale else ""
        loads = f"{len(self.modules) - len(self.failed)} of {len(self.modules)} load"
        verdict = "verify ok" if self.ok else "verify NOT ok"
        return (f"{verdict}: {len(self.extensions)} extension(s): {counts or 'none'}; "
                f"{loads}{stale}")

    @property
    def failed(self) -> list[ImportResult]:
        return [r for r in self.imports if not r.ok]

    @property
    def modules(self) -> list[ImportResult]:
        return [r for r in self.imports if r.kind == "module"]


def module_name(path: Path, *, root: Path) -> str:
    """``<root>/vllm/sub/_C.abi3.so`` -> ``vllm.sub._C``."""
    rel = path.relative_to(root)
    return ".".join([*rel.parent.parts, rel.name.split(".", 1)[0]])


def _shared(path: Path) -> bool:
    return path.name.endswith(_SHARED_SUFFIXES) or ".so." in path.name


def find_stale(package: Path, *, installed: list[Path], build_dir: Path) -> list[Path]:
    """Extensions in ``package`` that this build neither installed nor can produce."""
    installed_real = {os.path.realpath(p) for p in installed}
    produced = set(components(build_dir)) | {
        name.split(".", 1)[0] for name in build_outputs(build_dir)}
    stale = []
    for top, dirs, names in os.walk(package):
        # vllm/libs/ holds libraries vLLM's setup.py bundles (tcmalloc for CPU), not extensions
        dirs[:] = [d for d in dirs if d != "__pycache__" and not (top == str(package)
                                                                  and d == "libs")]
        for name in sorted(names):
            path = Path(top) / name
            if not _shared(path) or name.startswith("_rust_"):  # vLLM's Rust frontend
                continue
            if os.path.realpath(path) in installed_real or name.split(".", 1)[0] in produced:
                continue
            stale.append(path)
    return sorted(stale)


def prebuilt_files(package: Path, *, installed: list[Path], build_dir: Path) -> list[Path]:
    """Extensions of this build's targets that it did not install: the prebuilt kernels an
    affected-targets build left in place (checked too: they must load beside the rebuilt)."""
    installed_real = {os.path.realpath(p) for p in installed}
    targets = set(components(build_dir))
    return sorted(p for p in package.glob("**/*") if _shared(p)
                  and p.name.split(".", 1)[0] in targets
                  and os.path.realpath(p) not in installed_real and "__pycache__" not in p.parts)


def find_older(record: InstallRecord) -> list[Path]:
    """Installed files that are not what the build dir would install now: their build output
    was rebuilt since the install (``build --no-install``), or they changed behind our back."""
    if record.prefix is None:
        return []
    return [record.prefix / f.path for f in record.entries()
            if f.source_changed() or f.installed_changed(record.prefix)]


class WarmChecker:
    """The checking interpreter, started while ninja compiles so that its start-up and
    ``import torch`` (1-3 s; the bulk of a check) overlap the compile instead of following the
    install. It then waits for the list of files on stdin. Started on ninja's first status line
    only: a no-op build starts no interpreter at all. A long-lived child of the runner
    (``runner.start``, process/children.py): an interrupt stops it with the rest."""

    def __init__(self, ws: Resolved) -> None:
        self.ws = ws
        self.child: Child | None = None

    def start(self) -> None:
        if self.child is not None:
            return
        ws = self.ws
        try:
            self.child = ws.runner.start(
                [str(ws.interpreter.path), "-c", _CHECKER, "-", _torch_mode(ws)],
                cwd=ws.checkout.root, grace=1.0)
        except CannotRun:
            self.child = None  # the check then starts its interpreter when needed

    def on_line(self, text: str) -> None:
        if self.child is None and text.lstrip().startswith("["):  # a ninja step started
            self.start()

    def check(self, modules: dict[str, Path]) -> tuple[int, str, str] | None:
        """Hand over the files; (exit code, stdout, stderr), or None when never started."""
        child, self.child = self.child, None
        if child is None:
            return None
        items = [[name, str(path)] for name, path in modules.items()]
        try:
            out, err = child.communicate(json.dumps(items), timeout=IMPORT_TIMEOUT_S)
        except CannotRun:  # timed out: the child was stopped
            raise VllmDevError(f"loading the installed extensions in {self.ws.interpreter.path} "
                               f"did not finish within {IMPORT_TIMEOUT_S:g} s") from None
        return child.returncode if child.returncode is not None else -1, out, err

    def close(self) -> None:
        """Not needed after all (nothing installed, or the build failed): stop it."""
        child, self.child = self.child, None
        if child is not None:
            child.stop()


def _torch_mode(ws: Resolved) -> str:
    return "light" if ws.facts.torch else "0"


def import_all(ws: Resolved, modules: dict[str, Path], *, warm: WarmChecker | None = None,
               mode: str | None = None) -> list[ImportResult]:
    """Load each file in the target interpreter; a crash is retried one file at a time.

    With torch, files are first loaded beside torch's shared libraries only (``light``); a file
    that fails that way is loaded again after a full ``import torch`` (a fresh interpreter), and
    that answer counts: ``light`` loads a subset of what ``import torch`` loads, so it can fail
    where the full import would not (e.g. CUDA libraries torch preloads itself), never the other
    way round."""
    if not modules:
        return []
    mode = mode or _torch_mode(ws)
    answer = _run_checker(ws, modules, warm=warm, mode=mode)
    if answer is None and mode == "light":  # crashed: the full import decides
        return import_all(ws, modules, mode="1")
    if answer is None and len(modules) > 1:
        results: list[ImportResult] = []
        for name, path in modules.items():
            results += import_all(ws, {name: path}, mode=mode)
        return results
    files = (answer or {}).get("files") or {}
    first = _results(modules, files if answer is not None else None)
    if answer is not None and answer.get("mode") == "light":
        failed = {r.module: r.path for r in first if not r.ok}
        if failed:  # confirmed (or refuted) by a full `import torch`
            confirmed = {r.path: r for r in import_all(ws, failed, mode="1")}
            return [confirmed.get(r.path, r) for r in first]
    return first


def _results(modules: dict[str, Path], files: dict[str, Any] | None) -> list[ImportResult]:
    results = []
    for name, path in modules.items():
        entry = (files or {}).get(str(path))
        if entry is None:
            results.append(ImportResult(name, path, "the checking interpreter crashed"))
        elif entry.get("kind") == "other":
            continue  # not a module by the interpreter's suffixes, and not a bare .so
        else:
            error = entry.get("error")
            results.append(ImportResult(name, path, str(error) if error else None,
                                        kind=str(entry.get("kind") or "module")))
    return results


def _run_checker(ws: Resolved, modules: dict[str, Path], *, mode: str,
                 warm: WarmChecker | None = None) -> dict[str, Any] | None:
    answered = warm.check(modules) if warm is not None else None
    if answered is None:
        items = [[name, str(path)] for name, path in modules.items()]
        done = ws.runner.query(
            [ws.interpreter.path, "-c", _CHECKER, json.dumps(items), mode],
            cwd=ws.checkout.root, timeout=IMPORT_TIMEOUT_S)
        answered = (done.returncode, done.stdout, done.stderr)
    code, stdout, stderr = answered
    for line in reversed(stdout.splitlines()):
        if line.startswith("VLLM_DEV_VERIFY "):
            data: dict[str, Any] = json.loads(line.split(" ", 1)[1])
            return data
    if code != 0 and "import torch" in stderr:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise VllmDevError(f"torch does not import in {ws.interpreter.path} ({last}): the "
                           "extensions cannot load without it; fix the target environment")
    return None


def remove_stale(ws: Resolved, stale: list[Path]) -> Path:
    """Move stale files under ``.vllm-dev/stale/<time>/`` (never deleted: they may be a user's)."""
    root = ws.checkout.root
    target = ensure_state_dir(ws.checkout.state_dir) / layout.STALE / time.strftime("%Y%m%d-%H%M%S")
    for path in stale:
        dest = target / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    return target


def run_verify(ws: Resolved, *, remove: bool = False, components: list[str] | None = None,
               warm: WarmChecker | None = None) -> VerifyReport:
    """Load the installed files of ``components`` (every installed one when None) and look
    for stale and outdated files in ``vllm/``."""
    build_dir = ws.build_dir
    root = ws.checkout.root
    package = ws.checkout.package_dir
    record = InstallRecord.load(build_dir)
    everything = record.files()
    prebuilt = prebuilt_files(package, installed=everything, build_dir=build_dir)
    if not everything and not prebuilt:
        raise VllmDevError(f"nothing installed from {build_dir} yet: run `vllm-dev build` first")
    report = VerifyReport()
    modules = {}
    for path in [*record.files(components), *prebuilt]:
        if not _shared(path):
            continue
        try:
            modules[module_name(path, root=root)] = path
        except ValueError:
            continue  # outside the checkout: the install refuses that before it happens
    report.imports = import_all(ws, modules, warm=warm)
    report.stale = find_stale(package, installed=everything, build_dir=build_dir)
    report.older = find_older(record)
    if components is None:  # `vllm-dev verify`: every extension of the checkout, in one state
        report.extensions = extension_states(ws, record, prebuilt, report)
    if remove and report.stale and not ws.dry:
        report.removed_to = remove_stale(ws, report.stale)
    return report


def extension_states(ws: Resolved, record: InstallRecord, prebuilt: list[Path],
                     report: VerifyReport) -> list[Extension]:
    """Each extension of the checkout with its state (see :data:`STATES`)."""
    build_dir = ws.build_dir
    names = components(build_dir)
    built = {name.split(".", 1)[0] for name in build_outputs(build_dir)} if names else set()
    by_name: dict[str, list[Path]] = {}
    for path in prebuilt:
        by_name.setdefault(path.name.split(".", 1)[0], []).append(path)
    older = {os.path.realpath(p) for p in report.older}
    base = find_base(ws.checkout.root, ws.checkout.state_dir, getattr(ws, "environ", os.environ))
    w = base.commit[:12] if base.commit else ""
    extensions = []

    meant = built_before(build_dir)  # what this build dir builds for vllm/ (None: everything)
    for name in names or sorted(by_name):
        files = record.files([name]) if name in record.components else []
        # built here, but not one of the targets this build dir builds now (e.g. built for an
        # older W): the prebuilt file in vllm/ is the one that counts
        set_aside = name in by_name and meant is not None and name not in meant
        if files and not any(os.path.realpath(f) in older for f in files):
            extensions.append(Extension(name, INSTALLED, files))
        elif (files or name in built) and not set_aside:
            why = ("rebuilt or changed since its install" if files else
                   "vllm/ has another file" if name in by_name else "nothing of it in vllm/")
            extensions.append(Extension(name, BUILT_NOT_INSTALLED, files or by_name.get(name, []),
                                        cause=why))
        elif name in by_name:
            extensions.append(Extension(name, PREBUILT, by_name[name], w=w, cause=base.problem))
        else:
            extensions.append(Extension(name, ABSENT))
    _mark_changed_since_w(ws, base, [e for e in extensions if e.state == PREBUILT])
    results = {os.path.realpath(r.path): r for r in report.imports}
    for extension in extensions:
        extension.results = [results[os.path.realpath(f)] for f in extension.files
                             if os.path.realpath(f) in results]
    return extensions


def _mark_changed_since_w(ws: Resolved, base: Any, prebuilt: list[Extension]) -> None:
    """Prebuilt extensions whose sources (or headers) changed since W: rebuild them. Asked of
    the build dir's graph, as a build's selection is (checkout/affected.py)."""
    if not prebuilt or base.commit is None or not (ws.build_dir / "build.ninja").is_file():
        return

    try:
        selection = affected.select(ws.checkout.root, ws.build_dir, base,
                                    targets=components(ws.build_dir), jobs=os.cpu_count() or 1,
                                    torch_version=ws.facts.torch if base.torch else None,
                                    remember=not ws.dry)
    except VllmDevError:  # cannot tell: they stay "prebuilt"; a build would say why
        return
    reached: dict[str, list[str]] = {}
    for hit in selection.hits:
        reached.setdefault(hit.target, []).append(hit.changed)
    for extension in prebuilt:
        if selection.targets is None or extension.name in (selection.targets or []):
            extension.state = PREBUILT_CHANGED
            changed = reached.get(extension.name, [])
            extension.cause = (", ".join(changed[:3]) + (f" and {len(changed) - 3} more"
                                                         if len(changed) > 3 else "")
                               if changed else selection.reason)


def describe(report: VerifyReport, *, root: Path) -> list[str]:
    """Human lines: one per extension (with its state, for ``vllm-dev verify``) or per loaded
    file, then stale and older files with their fix."""
    lines = []
    shown: set[Path] = set()
    for extension in report.extensions:
        state = extension.detail
        if extension.failed:
            first = extension.failed[0]
            lines.append(f"{extension.label(root)}: FAILED: {first.error} ({state})")
        elif extension.results:
            lines.append(f"{extension.label(root)}: ok ({state})")
        else:
            lines.append(f"{extension.label(root)}: {state}")
        shown.update(r.path for r in extension.results if r.kind == "module")
    for result in report.imports:
        if result.path in shown:
            continue
        what = "ok" if result.kind == "module" else "ok (shared library: loads, not a module)"
        lines.append(f"{result.module}: " + (what if result.ok else f"FAILED: {result.error}"))
    for path in report.stale:
        rel = path.relative_to(root)
        if report.removed_to:
            lines.append(f"stale {rel}: moved to {report.removed_to / rel}")
        else:
            lines.append(f"stale {rel}: this build does not produce it (left by a precompiled "
                         "wheel?); remove with `vllm-dev verify --remove-stale`")
    for path in report.older:
        lines.append(f"{path.relative_to(root)} is not what the build dir would install (rebuilt "
                     "since, or changed in vllm/): run `vllm-dev install`")
    return lines


def check(ws: Resolved, report: VerifyReport) -> None:
    """Raise one line naming every extension that fails to import."""
    if report.failed:
        first = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise VllmDevError(
            f"{first.module} does not load in {ws.interpreter.path}: {first.error}{more}; "
            "rebuild with that interpreter (`vllm-dev build --python ...`) or run "
            "`vllm-dev verify` for details"
        )


def verify_after_build(ws: Resolved, *, components: list[str],
                       warm: WarmChecker | None = None) -> VerifyReport | None:
    """The last step of ``build``: load the extensions of ``components`` that changed since they
    last loaded; stale/older files are warnings, a load failure an error."""
    if ws.dry:
        return None
    todo = install_state.unverified(ws.build_dir, components)
    if not todo:
        ws.say("verify skipped: the installed extensions did not change since they last loaded")
        return None
    try:
        report = run_verify(ws, components=todo, warm=warm)
        for line in describe(report, root=ws.checkout.root):
            if not line.endswith(": ok"):
                ws.say(line)
        check(ws, report)
    except VllmDevError:
        install_state.mark_unverified(ws.build_dir, todo)
        raise
    install_state.mark_verified(ws.build_dir, todo)
    modules = report.modules
    ws.say(f"verified: {len(modules)} extension(s) load in {ws.interpreter.path} "
           f"({', '.join(r.module for r in modules)})")
    return report


def check_editable_install(ws: Resolved) -> None:
    """The target interpreter's ``vllm`` is this checkout's (a Nox session's fresh venv could
    hold another one); run from the venv's directory so that the checkout is not on the path."""
    package_dir = ws.checkout.package_dir
    done = ws.runner.query([ws.interpreter.path, "-I", "-c", _EDITABLE_CHECK, str(package_dir)],
                           cwd=ws.interpreter.path.parent.parent, timeout=IMPORT_TIMEOUT_S)
    if not done.ok:
        problem = (done.stdout.strip().splitlines() or done.stderr.strip().splitlines()
                   or ["no output"])[-1]
        raise VllmDevError(f"{problem}: run the session without -R, or `vllm-dev setup` with "
                           f"{ws.interpreter.path}")


def run_verify_task(ws: Resolved, *, remove: bool = False, as_json: bool = False,
                    strict: bool = False) -> VerifyReport:
    """``vllm-dev verify``: every extension with its state, one line each, and a summary line
    on stdout (or JSON); non-zero when an installed file does not load or an extension built
    here is not installed, and with ``strict`` also on stale files and on prebuilt extensions
    whose sources changed since W."""
    report = run_verify(ws, remove=remove)
    root = ws.checkout.root
    if as_json:
        print(json.dumps({
            "imports": [{"module": r.module, "path": str(r.path), "ok": r.ok, "error": r.error,
                         "kind": r.kind}
                        for r in report.imports],
            "extensions": [{"name": e.name, "module": e.label(root), "state": e.state,
                            "detail": e.detail, "files": [str(f) for f in e.files],
                            "loads": bool(e.results) and not e.failed}
                           for e in report.extensions],
            "stale": [str(p) for p in report.stale],
            "moved_to": str(report.removed_to) if report.removed_to else None,
            "older_than_build": [str(p) for p in report.older],
            "ok": report.ok,
            "summary": report.summary(),
        }, indent=2))
    else:
        for line in describe(report, root=root):
            print(line)
        print(report.summary())

    if report.failed and not ws.dry:  # the next build checks them all again
        install_state.mark_unverified(ws.build_dir)
    check(ws, report)
    unbuilt = [e.name for e in report.extensions if e.state == BUILT_NOT_INSTALLED]
    if unbuilt:
        raise VllmDevError(f"{', '.join(unbuilt)} built here but not installed: run "
                           "`vllm-dev install` (or `vllm-dev build`)")
    changed = [e.name for e in report.extensions if e.state == PREBUILT_CHANGED]
    if strict and (report.stale or changed):
        what = ([f"{len(report.stale)} stale file(s) (`vllm-dev verify --remove-stale`)"]
                if report.stale else []) + ([f"prebuilt {', '.join(changed)} with sources "
                                             "changed since W (`vllm-dev build`)"]
                                            if changed else [])
        raise VllmDevError(f"--strict: {' and '.join(what)}")
    if not ws.dry:  # every installed extension loaded: the next build need not check them
        install_state.mark_verified(ws.build_dir, list(InstallRecord.load(ws.build_dir).components))
    return report
