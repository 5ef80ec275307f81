"""Which commit W the prebuilt kernels in ``vllm/`` were built from.

What vLLM records, as read in vLLM 0.33.0's ``setup.py``:

* A vLLM wheel knows its commit: its ``vllm/_version.py`` (setuptools-scm) holds
  ``__commit_id__ = commit_id = 'g<short sha>'``, and nightly wheels also carry it in the version
  (``0.11.2.dev278+gdbc3d9991``, in the file name and in ``*.dist-info/METADATA``). METADATA also
  pins the torch the kernels were built against (``Requires-Dist: torch==2.14.0``).
* A precompiled *editable* install keeps none of that: setup.py copies only the ``.so`` files out
  of the wheel (then deletes a downloaded wheel), and ``vllm/_version.py`` and the editable
  install's ``.dist-info`` describe the *checkout* (its own setuptools-scm version, plus
  ``+precompiled`` on CUDA), not the wheel.

So W can only be learnt while the wheel is at hand: ``vllm-dev setup`` reads it then and keeps it in
``.vllm-dev/precompiled.json``. The order at build time follows vLLM's own choice of wheel:
``VLLM_PRECOMPILED_WHEEL_COMMIT`` (40 hex digits, as setup.py requires), else what the wheel said
(the setup record, or the wheel ``VLLM_PRECOMPILED_WHEEL_LOCATION`` names now), else setup.py's
fallback: the merge-base of HEAD with upstream main, found here through a local remote-tracking
branch of vllm-project/vllm (setup.py asks GitHub; we never go online). setup.py may then walk back
up to 20 first-parent commits to one with a published wheel, but refuses to when ``csrc``,
``cmake`` or ``CMakeLists.txt`` changed in between, so the merge-base has the same kernels.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from vllm_dev.errors import CannotRun
from vllm_dev.process.runner import Completed, query
from vllm_dev.state import layout, records

RECORD = layout.PRECOMPILED
FORMAT = records.Format("record of the prebuilt kernels' commit", "vllm-dev precompiled base", 1)
_COMMIT_ID_RE = re.compile(r"""__commit_id__\s*=\s*(?:commit_id\s*=\s*)?['"]g?([0-9a-f]{7,40})""")
_SHA_LABEL_RE = re.compile(r"^g([0-9a-f]{7,40})$")  # one part of a local version label
_FULL_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_UPSTREAM_URL_RE = re.compile(r"github\.com[:/]vllm-project/vllm(?:\.git)?/?$")


@dataclass(frozen=True)
class WheelFacts:
    """What a vLLM wheel says about itself."""

    name: str
    version: str = ""
    commit_hint: str = ""  # a (short) sha from _version.py or the version's +g<sha>
    torch: str = ""  # the wheel's torch requirement, e.g. "==2.14.0" ("" when it has none)


@dataclass(frozen=True)
class Base:
    """W: the commit the prebuilt kernels match, or why it is unknown."""

    commit: str | None
    origin: str  # how W was found, for messages
    problem: str = ""  # why W is unknown (commit is None)
    torch: str = ""  # the wheel's torch requirement, when known


def git(root: Path, *args: str) -> Completed:
    """``git -C root ARGS``, a query (the module default of process/runner.py: W is found by
    pure functions that have no runner at hand, see :func:`~vllm_dev.process.runner.query`); a
    git that cannot start or answer within a minute reads as a failure (exit 1, why as stderr)."""
    try:
        return query(["git", "-C", str(root), *args], timeout=60)
    except CannotRun as exc:
        return Completed(["git", *args], 1, "", exc.detail)


def resolve_commit(root: Path, rev: str) -> str | None:
    """The full sha of ``rev`` when it names a commit of the local history, else None."""
    if not rev or rev.startswith("-"):
        return None
    done = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and _FULL_SHA_RE.match(sha) else None


def read_wheel(location: str) -> WheelFacts:
    """Facts of a local wheel (its members), or of a URL's file name alone."""
    parsed = urlparse(location)
    if parsed.scheme in ("http", "https"):
        name = unquote(parsed.path.rsplit("/", 1)[-1])
        return WheelFacts(name=name, version=_version_from_name(name),
                          commit_hint=_hint_from_version(_version_from_name(name)))
    path = Path(location).expanduser()
    version = _version_from_name(path.name)
    hint = torch = ""
    try:
        with zipfile.ZipFile(path) as wheel:
            for member in wheel.namelist():
                if member.endswith(".dist-info/METADATA"):
                    metadata, _ = parse_email(wheel.read(member).decode(errors="replace"))
                    version = metadata.get("version") or version
                    torch = _torch_pin(metadata.get("requires_dist") or [])
                elif member == "vllm/_version.py":
                    found = _COMMIT_ID_RE.search(wheel.read(member).decode(errors="replace"))
                    hint = found.group(1) if found else hint
    except (OSError, zipfile.BadZipFile):
        pass
    return WheelFacts(name=path.name, version=version,
                      commit_hint=hint or _hint_from_version(version), torch=torch)


def _version_from_name(name: str) -> str:
    try:
        return str(parse_wheel_filename(name)[1])
    except InvalidWheelFilename:
        return ""


def _hint_from_version(version: str) -> str:
    """``0.11.2.dev278+gdbc3d9991`` -> ``dbc3d9991``: setuptools-scm's ``g<sha>`` local label."""
    try:
        local = Version(version).local or ""
    except InvalidVersion:
        return ""
    found = (_SHA_LABEL_RE.match(part) for part in local.split("."))
    return next((m.group(1) for m in found if m), "")


def _torch_pin(requires_dist: list[str]) -> str:
    """The specifier of the wheel's torch requirement (``==2.14.0``) that applies here, or ""."""
    for line in requires_dist:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) != "torch":
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            return str(requirement.specifier)
    return ""


def upstream_main(root: Path) -> str | None:
    """``<remote>/main`` of the first local remote of vllm-project/vllm that has one."""
    remotes = git(root, "remote", "-v").stdout.splitlines()
    for line in remotes:
        parts = line.split()
        if (len(parts) >= 2 and _UPSTREAM_URL_RE.search(parts[1])
                and resolve_commit(root, f"refs/remotes/{parts[0]}/main")):
            return f"{parts[0]}/main"
    return None


def upstream_merge_base(root: Path) -> tuple[str | None, str]:
    """vLLM setup.py's fallback: merge-base of HEAD with upstream main (from a local remote)."""
    upstream = upstream_main(root)
    if upstream:
        done = git(root, "merge-base", f"refs/remotes/{upstream}", "HEAD")
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip(), f"merge-base of HEAD with {upstream}"
    return None, ""


# What decides the kernels: a change of these between two commits changes the prebuilt .so files.
KERNEL_PATHS = ("csrc", "cmake", "CMakeLists.txt")


@dataclass(frozen=True)
class BaseMove:
    """The checkout's base (its merge-base with upstream main) is past W: a ``git pull`` or a
    rebase brought upstream's kernel changes since W, which are not the user's own. The way out is
    new prebuilt kernels for the new base (``vllm-dev setup``), never ``--since``: that would keep
    W's kernels beside the new base's Python."""

    w: str
    base: str
    upstream: str  # "upstream/main"
    kernel_files: int  # files under KERNEL_PATHS that differ between W and the base

    def line(self) -> str:
        return (f"the checkout's base moved since W: W is {self.w[:12]}, the merge-base of HEAD "
                f"with {self.upstream} is {self.base[:12]}, and {self.kernel_files} upstream "
                f"kernel file(s) changed between them; `vllm-dev setup` refreshes the prebuilt "
                f"kernels for {self.base[:12]}")


def base_moved(root: Path, w: str | None) -> BaseMove | None:
    """A :class:`BaseMove` when HEAD's merge-base with upstream main descends from W (and is
    not W); None otherwise, or when there is no local upstream branch to tell."""
    upstream = upstream_main(root) if w else None
    if not w or not upstream:
        return None
    done = git(root, "merge-base", f"refs/remotes/{upstream}", "HEAD")
    base = done.stdout.strip()
    if done.returncode != 0 or not base or base == w:
        return None
    if git(root, "merge-base", "--is-ancestor", w, base).returncode != 0:
        return None
    diff = git(root, "diff", "--name-only", "--no-renames", "-z", w, base, "--", *KERNEL_PATHS)
    count = len([p for p in diff.stdout.split("\0") if p])
    return BaseMove(w, base, upstream, count)


def from_environment(root: Path, environ: Mapping[str, str]) -> Base | None:
    """W as the precompiled variables name it now (None when they name nothing)."""
    commit = environ.get("VLLM_PRECOMPILED_WHEEL_COMMIT", "").strip().lower()
    if commit:
        if not _FULL_SHA_RE.match(commit):  # setup.py ignores it then (e.g. "nightly")
            return Base(None, "VLLM_PRECOMPILED_WHEEL_COMMIT",
                        f"VLLM_PRECOMPILED_WHEEL_COMMIT={commit!r} is not a 40-digit commit")
        sha = resolve_commit(root, commit)
        return Base(sha, f"VLLM_PRECOMPILED_WHEEL_COMMIT {commit[:12]}",
                    "" if sha else f"VLLM_PRECOMPILED_WHEEL_COMMIT {commit[:12]} is not in the "
                    "local git history (git fetch it)")
    location = environ.get("VLLM_PRECOMPILED_WHEEL_LOCATION", "").strip()
    if location:
        return from_wheel(root, read_wheel(location))
    return None


def from_wheel(root: Path, facts: WheelFacts) -> Base:
    origin = f"wheel {facts.name}" + (f" ({facts.version})" if facts.version else "")
    if not facts.commit_hint:
        return Base(None, origin, f"the wheel {facts.name} records no commit", facts.torch)
    sha = resolve_commit(root, facts.commit_hint)
    return Base(sha, f"{origin}, commit {facts.commit_hint}",
                "" if sha else f"commit {facts.commit_hint} of the wheel {facts.name} is not in "
                "the local git history (git fetch it)", facts.torch)


def remember_setup(root: Path, state_dir: Path, environ: Mapping[str, str]) -> Base | None:
    """Called by ``setup`` while the wheel is at hand: keep W (or why it is unknown)."""
    base = from_environment(root, environ)
    if base is None:
        sha, origin = upstream_merge_base(root)
        base = Base(sha, origin) if sha else None
    records.ensure_state_dir(state_dir)
    records.save(FORMAT, state_dir / RECORD, asdict(base) if base else {"commit": None})
    return base


def recorded(state_dir: Path) -> dict[str, object] | None:
    """What the last ``setup`` recorded about W (``commit``, ``origin``...), or None."""
    return records.load(FORMAT, state_dir / RECORD, lambda body: body).value


def find_base(root: Path, state_dir: Path, environ: Mapping[str, str]) -> Base:
    """W for the build: the environment, else setup's record, else vLLM's merge-base rule."""
    base = from_environment(root, environ)
    if base is not None:
        return base
    record = recorded(state_dir)
    if record and record.get("origin"):
        commit = record.get("commit")
        sha = resolve_commit(root, str(commit)) if commit else None
        problem = str(record.get("problem") or "")
        if commit and not sha:
            problem = f"commit {str(commit)[:12]} recorded by setup is no longer in the git history"
        return Base(sha, f"{record['origin']} (recorded by setup)", problem,
                    str(record.get("torch") or ""))
    sha, origin = upstream_merge_base(root)
    if sha:
        return Base(sha, origin)
    return Base(None, "", "no VLLM_PRECOMPILED_WHEEL_COMMIT, no wheel recorded by `vllm-dev "
                "setup` and no branch of vllm-project/vllm's main to take the merge-base with")
