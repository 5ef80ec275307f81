"""Which extension targets a change since commit W reaches, asked of the build system.

After a precompiled setup every extension in ``vllm/`` is a prebuilt ``.so`` from a wheel built at
W. Only targets whose translation units, or headers those units include, differ between W and the
working tree need compiling; the prebuilt rest is already right. Nothing here guesses from paths:

* target -> sources and objects: ``ninja -t inputs <target>`` (transitive, from the generated
  graph, so it works before anything was built);
* object -> headers: ninja's own deps log (``ninja -t deps``) for objects built before with a
  VALID record, else the compiler itself: the object's command from ``compile_commands.json`` with
  ``-M`` (gcc and nvcc both print the make rule of every file the unit reads). Scans run in
  parallel and are remembered per object (command + identity of every file read), so a second
  selection costs only ``stat`` calls;
* what decides the whole build: every file CMake's configure read (the ``RERUN_CMAKE`` inputs of
  ``build.ninja``), plus what the issue names outright (top-level ``CMakeLists.txt``, ``cmake/``,
  the build requirements, ``pyproject.toml``'s build-system pins); a change there builds
  everything.

This module is the policy: what changed since W (or ``--since``), which targets that reaches, what
decides the whole build, and what a build dir built before. The graph queries are in
checkout/build_graph.py, the header scans in checkout/header_scan.py.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.checkout.build_graph import read_graph
from vllm_dev.checkout.header_scan import DepsScanner, compile_units
from vllm_dev.checkout.precompiled import Base, BaseMove, base_moved, find_base, git, resolve_commit
from vllm_dev.checkout.tree import Checkout
from vllm_dev.errors import VllmDevError
from vllm_dev.installs.components import components
from vllm_dev.state import layout, records
from vllm_dev.toolchain.interpreter import meets

TARGETS_STATE = layout.TARGETS
_STATE_KIND = "vllm-dev targets"
TARGETS_FORMAT = records.Format("targets record", _STATE_KIND, 1)
# Paths (relative to the checkout) whose change decides the whole build, whatever CMake read.
_WHOLE_BUILD = re.compile(r"^(CMakeLists\.txt|cmake/.*|requirements/build(/.*|\.txt)|"
                          r"pyproject\.toml)$")
# Never #included by C++/CUDA: a change of only these needs no header scan (which would find them
# in no unit anyway; skipping it keeps a Python-only edit free).
_NOT_INCLUDED = (".py", ".pyi", ".md", ".rst", ".ipynb", ".rs", ".yaml", ".yml", ".toml",
                 ".json", ".png", ".jpg", ".svg", ".sh", ".lock")
# Where vLLM's setup.py and vllm-dev's presets put fetched dependencies (never the user's edits).
_FETCHED = (".deps/",)
# Files vllm-dev itself writes at the checkout root (presets, the clangd link and config, its
# state): never a kernel's input, so never "a change since W".
_OWN_FILES = layout.ROOT_FILES
_OWN_DIRS = (layout.STATE_DIR + "/",)


@dataclass(frozen=True)
class Hit:
    """One reason a target is affected: ``changed`` reached it (directly or through ``via``)."""

    target: str
    changed: str  # path relative to the checkout
    via: str = ""  # the translation unit that includes ``changed`` (empty: it is one)


@dataclass
class Selection:
    """What to build: ``targets`` (None = every target) and why, in lines a user can check.

    ``why`` and ``narrow`` are for the cost of a big build (steps/cost.py): why the selection
    could not be narrowed (empty when it was), and the command that narrows it. ``base_move``:
    the checkout's base moved past W (upstream's kernel changes count as changed)."""

    targets: list[str] | None
    reason: str  # one line
    hits: list[Hit] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # built here before, still built
    changed: int = 0
    scanned: int = 0
    why: str = ""
    narrow: str = ""
    base_move: BaseMove | None = None

    def lines(self) -> list[str]:
        out = [self.reason]
        if self.base_move is not None:
            out.append(self.base_move.line())
        by_target: dict[str, list[Hit]] = {}
        for hit in self.hits:
            by_target.setdefault(hit.target, []).append(hit)
        for target, hits in by_target.items():
            shown = ", ".join(h.changed + (f" (included by {h.via})" if h.via else "")
                              for h in hits[:3])
            more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
            out.append(f"  {target}: {shown}{more}")
        for target in self.kept:
            if target not in by_target:
                out.append(f"  {target}: built in this build dir before")
        return out


def changed_files(root: Path, base: str, *, skip: Iterable[Path] = ()) -> list[str]:
    """Files that differ between ``base`` and the working tree (committed, staged, unstaged,
    untracked), relative to ``root``; untracked build dirs and venvs are skipped."""
    done = git(root, "diff", "--name-only", "--no-renames", "-z", base, "--")
    if done.returncode != 0:
        raise VllmDevError(f"git diff against {base[:12]} failed in {root}: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    found = {p for p in done.stdout.split("\0") if p}
    untracked = git(root, "ls-files", "--others", "--exclude-standard", "--directory", "-z")
    skipped = {os.path.realpath(p) for p in skip}
    expand = []  # untracked dirs that are not build dirs or venvs: list their files, ignores kept
    for entry in (p for p in untracked.stdout.split("\0") if p):
        if not entry.endswith("/"):
            if entry not in _OWN_FILES:
                found.add(entry)
        elif (os.path.realpath(root / entry) not in skipped and not _is_tool_dir(root / entry)
              and entry not in _FETCHED and entry not in _OWN_DIRS):
            expand.append(entry)
    if expand:
        inner = git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *expand)
        found.update(p for p in inner.stdout.split("\0")
                     if p and not any(_is_tool_dir(root / d) for d in _parents(p)))
    return sorted(found)


def _is_tool_dir(path: Path) -> bool:
    return any((path / marker).exists() for marker in ("CMakeCache.txt", "pyvenv.cfg",
                                                       layout.BUILD_RECORD))


def _parents(relative: str) -> list[str]:
    parts = relative.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


# ----------------------------------------------------------------------------- selection


def select(root: Path, build_dir: Path, base: Base, *, targets: list[str], jobs: int,
           torch_version: str | None, remember: bool = True) -> Selection:
    """The affected targets of ``targets`` (the build's extensions) since ``base``."""
    if base.commit is None:
        return Selection(None, f"building every target: W is unknown ({base.problem})",
                         why=f"W (the commit of the prebuilt kernels) is unknown: {base.problem}",
                         narrow=NARROW_UNKNOWN_W)
    if base.torch and not (torch_version and meets(base.torch, torch_version)):
        have = f"torch {torch_version}" if torch_version else "no torch"
        return Selection(None, f"building every target: the prebuilt kernels were built for "
                               f"torch{base.torch} and the target venv has {have} (a mix would "
                               "fail at import)",
                         why=f"the prebuilt kernels need torch{base.torch}, the venv has {have}",
                         narrow="`vllm-dev setup` (installs the torch the kernels were built "
                                "for), or `vllm-dev build --target T` for one extension")
    started = time.monotonic()
    changed = changed_files(root, base.commit, skip=[build_dir])
    where = f"since {base.commit[:12]} ({base.origin})"
    graph = read_graph(build_dir, targets, root)
    absolute = {str(root / c): c for c in changed}
    whole = sorted(c for p, c in absolute.items()
                   if p in graph.configure_inputs or _WHOLE_BUILD.match(c))
    if whole:
        more = f" and {len(whole) - 1} more" if len(whole) > 1 else ""
        return Selection(None, f"building every target: {whole[0]}{more} changed {where} and "
                               "decides the whole build", changed=len(changed),
                         why=f"{whole[0]}{more} changed since W and decides the whole build",
                         narrow=NARROW_TARGET)
    hits = [Hit(t, absolute[s]) for t in targets for s in sorted(graph.sources[t])
            if s in absolute]
    all_sources = set().union(*graph.sources.values()) if graph.sources else set()
    candidates = {p for p, c in absolute.items()
                  if p not in all_sources and not c.endswith(_NOT_INCLUDED)}
    scanner = DepsScanner(build_dir, jobs, remember=remember)
    reached = {h.target for h in hits}
    if candidates:
        units = compile_units(build_dir)
        owners = {o: ts for o, ts in graph.objects.items() if ts - reached and o in units
                  and units[o].source.startswith(str(root) + os.sep)}
        try:
            found = scanner.find(owners, candidates, set(reached))
        except VllmDevError as exc:  # a unit the compiler cannot scan: no guessing
            return Selection(None, f"building every target: {exc}", changed=len(changed),
                             why=str(exc), narrow=NARROW_TARGET)
        for obj, header in found:
            via = os.path.relpath(units[obj].source, root)
            hits += [Hit(t, absolute[header], via) for t in sorted(owners[obj] - reached)]
        reached = {h.target for h in hits}
    hits.sort(key=lambda h: targets.index(h.target))
    chosen = [t for t in targets if t in reached]
    seconds = time.monotonic() - started
    reason = (f"{len(chosen)} of {len(targets)} target(s) affected by {len(changed)} changed "
              f"file(s) {where}" if chosen else
              f"no target is affected by the {len(changed)} changed file(s) {where}")
    if scanner.scanned:
        reason += f"; header scan of {scanner.scanned} unit(s) took {seconds:.1f} s"
        if not remember:  # builds keep their scans (vllm-dev-deps.json), dry runs read them
            reason += " (a dry run keeps no record: the next build scans and remembers)"
    return Selection(chosen, reason, hits=_unique(hits), changed=len(changed),
                     scanned=scanner.scanned)


def _unique(hits: list[Hit]) -> list[Hit]:
    seen: set[tuple[str, str]] = set()
    out = []
    for hit in hits:
        if (hit.target, hit.changed) not in seen:
            seen.add((hit.target, hit.changed))
            out.append(hit)
    return out


# ----------------------------------------------------------------------------- build dir memory


def built_before(build_dir: Path) -> list[str] | None:
    """Targets this build dir builds: a list, None for "every target", [] for a fresh dir."""
    data = records.load(TARGETS_FORMAT, build_dir / TARGETS_STATE, lambda body: body).value
    if data is not None:
        built = data.get("built")
        return [str(t) for t in built] if isinstance(built, list) else None
    return None if _has_built(build_dir) else []


def _has_built(build_dir: Path) -> bool:
    try:
        text = (build_dir / ".ninja_log").read_text(errors="replace")
    except OSError:
        return False
    return any(line.strip() and not line.startswith("#") for line in text.splitlines())


def remember_built(build_dir: Path, targets: list[str] | None) -> None:
    """Noted before compiling: a build stopped halfway still counts its targets as built here."""
    records.save(TARGETS_FORMAT, build_dir / TARGETS_STATE,
                 {"built": sorted(targets) if targets is not None else "all"})


# ----------------------------------------------------------------------------- the build's plan


# The commands that narrow a build that could not be narrowed (steps/cost.py shows them).
NARROW_TARGET = "`vllm-dev build --target T` builds one extension"
NARROW_UNKNOWN_W = ("`vllm-dev setup` with VLLM_PRECOMPILED_WHEEL_LOCATION naming the wheel of "
                    "your prebuilt kernels (it records W), or `vllm-dev build --target T`")
NARROW_BASE_MOVED = ("`vllm-dev setup` (prebuilt kernels for the new base; then only your own "
                     "changes compile)")


def check_since(root: Path, since: str | None) -> str | None:
    """``--since REF`` as a full sha, or a one-line error (checked before anything is written)."""
    if not since:
        return None

    sha = resolve_commit(root, since)
    if sha is None:
        raise VllmDevError(f"--since {since}: not a commit of the git history of {root} "
                           "(pass a branch, tag or sha that `git rev-parse` knows)")
    return sha


def plan(build_dir: Path, checkout: Checkout, *, environ: Mapping[str, str], torch: str | None,
         jobs: int, dry: bool, since: str | None, every: bool) -> Selection:
    """What this build compiles: every target, or the affected ones plus those built here.
    ``torch`` is the target interpreter's torch version (None: no torch)."""
    before = built_before(build_dir)
    if every:
        return Selection(None, "building every target (--all)")
    if before is None:
        return Selection(None, "building every target, as this build dir did before "
                               "(`vllm-dev clean` then build: only affected targets)",
                         why=f"{build_dir.name} built every target before, so it still does",
                         narrow="`vllm-dev clean`, then `vllm-dev build` (only the affected "
                                "targets)")
    if not (build_dir / "build.ninja").is_file():
        return Selection(None, f"building every target: {build_dir.name} is not configured yet, "
                               "so the affected targets are unknown (`vllm-dev prime` first)",
                         why=f"{build_dir.name} is not configured yet",
                         narrow="`vllm-dev prime`, then `vllm-dev build`")
    root = checkout.root
    if git(root, "rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        return Selection(None, f"building every target: W is unknown ({root} is not a git "
                               "checkout)",
                         why=f"W is unknown: {root} is not a git checkout",
                         narrow=NARROW_TARGET)
    sha = check_since(root, since)
    base = (Base(sha, f"--since {since}") if sha else
            find_base(root, checkout.state_dir, environ))
    torch_version = torch if base.torch else None
    selection = select(root, build_dir, base, targets=components(build_dir),
                       jobs=jobs, torch_version=torch_version, remember=not dry)
    if not sha:  # --since names its own base: no move to speak of
        selection.base_move = base_moved(root, base.commit)
        if selection.base_move is not None:
            selection.narrow = NARROW_BASE_MOVED
    if selection.targets is None:
        return selection
    known = components(build_dir)
    selection.kept = [t for t in before if t in known and t not in selection.targets]
    selection.targets = [t for t in known if t in selection.targets or t in selection.kept]
    return selection
