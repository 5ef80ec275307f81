"""Shared fixtures: fresh copies of the vLLM-shaped test project and a way to run vllm-dev on them.

Every test that proves a flow runs the real ``vllm-dev`` console script in a subprocess, against
real uv, cmake, ninja and ccache (and nvcc when present), in a project copy under ``tmp_path``
with its own ``.venv`` and its own ccache directory.
"""

from __future__ import annotations

import contextvars
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import minivllm_tools as mv  # noqa: E402

# The test project's own kernel tests (tests/minivllm/tests/kernels) are run by `vllm-dev test`
# inside copies of it, against its built extension; never collected by this suite.
collect_ignore = ["minivllm"]

BIN_DIR = Path(sys.executable).parent
VLLM_DEV = str(BIN_DIR / "vllm-dev")
NVCC = shutil.which("nvcc") or (
    "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else None
)
# The ``cuda`` tier marker: such a test skips without nvcc (a failure in CI, see below).
requires_nvcc = pytest.mark.cuda
# Variables from the developer's shell that would change what vllm-dev decides.
_SCRUBBED = ("VIRTUAL_ENV", "VLLM_TARGET_DEVICE", "VLLM_DEV_SOURCE", "VLLM_DEV_PYTHON", "MAX_JOBS",
             "NVCC_THREADS", "TORCH_CUDA_ARCH_LIST", "VLLM_USE_PRECOMPILED",
             "VLLM_PRECOMPILED_WHEEL_LOCATION", "CCACHE_DIR", "CMAKE_BUILD_PARALLEL_LEVEL",
             "NVCC_APPEND_FLAGS", "NVCC_PREPEND_FLAGS")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUBBED and not k.startswith(("INVOKE_", "VLLM_DEV_", "CCACHE_"))}
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Project:
    """A copy of the test project with its own venv; ``run`` calls the real vllm-dev in it."""

    root: Path
    python: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, cwd: Path | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([VLLM_DEV, *args], cwd=cwd or self.root, text=True,
                              capture_output=True, env=clean_env({**self.env, **(env or {})}),
                              stdin=subprocess.DEVNULL, timeout=1200, check=False)
        if check and done.returncode != 0:
            raise AssertionError(
                f"vllm-dev {' '.join(args)} exited {done.returncode}\n"
                f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
        return done

    def value(self, module: str, func: str = "known_value") -> int:
        return mv.import_value(str(self.python), module, func, cwd=self.root)

    @property
    def build_dir(self) -> Path:
        return self.root / "cmake-build-release"

    def ninja_log_mark(self, build_dir: Path | None = None) -> int:
        """Where the next build's entries will start in .ninja_log (ninja only appends)."""
        log = (build_dir or self.build_dir) / ".ninja_log"
        return len(log.read_bytes()) if log.is_file() else 0

    def ninja_log_entries(self, build_dir: Path | None = None, *, since: int = 0) -> list[str]:
        """Outputs ninja recorded after byte offset ``since`` (a ``ninja_log_mark``): the steps of
        the builds run since then. Entries carry no run id, so the mark is the reliable cut."""
        log = (build_dir or self.build_dir) / ".ninja_log"
        text = log.read_bytes()[since:].decode()
        return [ln.split("\t")[3] for ln in text.splitlines()
                if ln.strip() and not ln.startswith("#")]


def make_project(tmp_path: Path, *, layout: str = "new", device: str = "cpu",
                 setup: bool = True) -> Project:
    if _RUNNING_TIER.get(None) == "unit":
        raise AssertionError("a unit test built a copy of the test project: mark it `flow` "
                             "(or the tier of what else it needs)")
    root = mv.copy_project(tmp_path / "vllm", layout=layout)
    python = mv.make_venv(root / ".venv")
    project = Project(root=root, python=python,
                      env={"CCACHE_DIR": str(tmp_path / "ccache"), "VLLM_TARGET_DEVICE": device})
    if setup:
        project.run("setup")
    return project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A CPU-device copy of the test project, set up (editable install + build requirements)."""
    return make_project(tmp_path)


@pytest.fixture
def cuda_project(tmp_path: Path) -> Project:
    if NVCC is None:
        pytest.skip("nvcc not found: the CUDA cases need the CUDA toolkit on PATH")
    return make_project(tmp_path, device="cuda")


# --- The real-vLLM tier (marker real_vllm; tests/real_vllm.py holds the how and the why) -------

import real_vllm as rv  # noqa: E402

# --- Test tiers: pytest markers declared in pyproject.toml; every test carries exactly one ---

TIERS = ("unit", "flow", "real_vllm", "cuda", "services", "mounts")
# A test with no tier marker of its own gets the tier of the fixture it builds on.
_FIXTURE_TIERS = (("real_vllm", "real_vllm"), ("cuda_project", "cuda"), ("project", "flow"))
# Items whose tier markers are not exactly one, found at collection (test_tiers.py reads it).
TIER_PROBLEMS: list[str] = []
TIER_COUNTS: dict[str, int] = {}
_RUNNING_TIER: contextvars.ContextVar[str] = contextvars.ContextVar("tier")


def tiers_of(item: pytest.Item) -> list[str]:
    return list(dict.fromkeys(mark.name for mark in item.iter_markers() if mark.name in TIERS))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark by fixture where the test has no tier marker, before ``-m`` selects (tryfirst)."""
    TIER_PROBLEMS.clear()
    TIER_COUNTS.clear()
    for item in items:
        if not tiers_of(item):
            fixtures = getattr(item, "fixturenames", ())
            for fixture, tier in _FIXTURE_TIERS:
                if fixture in fixtures:
                    item.add_marker(tier)
                    break
        found = tiers_of(item)
        if len(found) != 1:
            TIER_PROBLEMS.append(f"{item.nodeid}: {found or 'no tier'}")
        for tier in found:
            TIER_COUNTS[tier] = TIER_COUNTS.get(tier, 0) + 1


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Without VLLM_DEV_REAL_VLLM the tier skips, with one line saying how to turn it on (one
    skip site, so ``-rs`` folds every skipped test of the tier into that one line). The same
    for the cuda tier without nvcc."""
    found = tiers_of(item)
    _RUNNING_TIER.set(found[0] if len(found) == 1 else "")
    if item.get_closest_marker("real_vllm") and rv.RealSource.from_env() is None:
        pytest.skip(rv.SKIP_REASON)
    if item.get_closest_marker("cuda") and NVCC is None:
        pytest.skip("nvcc not found: the CUDA cases need the CUDA toolkit on PATH")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI (``CI`` set) a skipped test is a failed one: a tier that skips there because a tool
    or the real vLLM tree is missing proves nothing, and .ci/run must provide what it needs."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI is set, a skip is a failure): {reason}"


_TIER_PREPARATION: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What preparing the tier cost this run, when a test used it (the tree is 0 s when cached)."""
    if _TIER_PREPARATION:
        terminalreporter.write_line("real-vLLM tier preparation: " + ", ".join(
            f"{name} {seconds:.1f} s" for name, seconds in _TIER_PREPARATION.items()))


@dataclass(frozen=True)
class RealTree:
    """The session's shared pieces of the tier: the cached adapted repository, the oneDNN
    sources and the target venv's python."""

    repo: Path
    onednn: Path | None
    python: Path


@pytest.fixture(scope="session")
def real_tree(tmp_path_factory: pytest.TempPathFactory) -> RealTree:
    source = rv.RealSource.from_env()
    if source is None:
        pytest.skip(rv.SKIP_REASON)
    start = time.monotonic()
    repo = rv.adapted_repo(source)
    onednn = rv.onednn_dir(source)
    _TIER_PREPARATION["tree (unpack, git, adapt; or cached)"] = time.monotonic() - start
    start = time.monotonic()
    python = rv.make_target_venv(tmp_path_factory.mktemp("real-vllm-venv") / ".venv", repo)
    _TIER_PREPARATION["target venv"] = time.monotonic() - start
    return RealTree(repo=repo, onednn=onednn, python=python)


@pytest.fixture
def real_vllm(real_tree: RealTree, tmp_path: Path) -> Project:
    """A fresh git clone of the adapted real vLLM tree, targeting the session's venv (CPU).

    The venv is shared by the session: its cmake is reset to the newest 4.x here (a no-op when
    it is already), so a test that switched it with ``rv.cmake_into`` does not leak into the next.
    """
    rv.cmake_into(real_tree.python, rv.CMAKE_VERSIONS["cmake4"])
    root = rv.fresh_clone(real_tree.repo, tmp_path / "vllm")
    env = {"VLLM_TARGET_DEVICE": "cpu", "CCACHE_DIR": str(tmp_path / "ccache"),
           "VLLM_DEV_PYTHON": str(real_tree.python)}
    if real_tree.onednn is not None:
        env["FETCHCONTENT_SOURCE_DIR_ONEDNN"] = str(real_tree.onednn)
    return Project(root=root, python=real_tree.python, env=env)
