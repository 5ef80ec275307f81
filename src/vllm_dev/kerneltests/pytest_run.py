"""Running the kernel tests: pytest in the target interpreter, from the checkout, maybe under a
tool (``--under "compute-sanitizer"``), and reading back what happened.

The counts (passed, failed, skipped) come from pytest's own JUnit XML report (``--junitxml``,
built into pytest), not from its terminal output, which ``-q``/``-v``/plugins reshape. The exit
status is pytest's, except that a run that tested nothing (no test collected, or every selected
test skipped) is a failure here: it proved nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from vllm_dev.checkout.tree import Checkout
from vllm_dev.errors import VllmDevError
from vllm_dev.kerneltests.pytest_args import PytestArgs
from vllm_dev.process.foreground import run_foreground
from vllm_dev.process.runner import Runner
from vllm_dev.state import layout

JUNIT_FILE = layout.JUNIT
#: pytest's "no tests were collected" status; also vllm-dev's for "every selected test skipped".
NOTHING_TESTED = 5
_EXIT_MEANINGS = {2: "interrupted", 3: "internal error",
                  4: "usage error, or a conftest.py that does not import",
                  5: "no test collected"}

# Runs in the target interpreter, from the checkout, with sys.path as `python -m pytest` has it
# (the working directory first). Finds, never imports (vllm/__init__.py is vLLM's whole runtime):
# pytest's version, the vllm the tests import, and the vllm installed in the venv (what their
# subprocesses, which may start elsewhere, import).
_PROBE = r"""
import importlib.metadata, importlib.util, json, os, sys
out = {"pytest": None, "tests_vllm": None, "installed_vllm": None}
if importlib.util.find_spec("pytest") is not None:
    try:
        out["pytest"] = importlib.metadata.version("pytest")
    except importlib.metadata.PackageNotFoundError:
        out["pytest"] = "?"
def where():
    spec = importlib.util.find_spec("vllm")
    return [os.path.realpath(p) for p in (spec.submodule_search_locations or [])] if spec else []
out["tests_vllm"] = where()
sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
importlib.invalidate_caches()
sys.path_importer_cache.clear()
out["installed_vllm"] = where()
print(json.dumps(out))
"""


def check_pytest(python: Path, checkout: Checkout, runner: Runner, *, device: str) -> str:
    """Before the tests: pytest is in the target interpreter and the tests will import this
    checkout's vllm (and so will their subprocesses). Returns pytest's version."""
    done = runner.query([str(python), "-c", _PROBE], cwd=checkout.root, timeout=60)
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise VllmDevError(f"cannot ask the target interpreter {python} about pytest: {last}") \
            from None
    requirements = checkout.test_requirements(device)
    if not found.get("pytest"):
        how = ("`vllm-dev setup --tests` installs "
               f"{requirements.relative_to(checkout.root)}" if requirements else
               "this checkout has no requirements/test.txt")
        raise VllmDevError(f"pytest is not installed in the target interpreter {python}: {how} "
                           f"(or `uv pip install -p {python} pytest`)")
    package = os.path.realpath(checkout.package_dir)
    tests = found.get("tests_vllm") or []
    if package not in tests:
        raise VllmDevError(f"tests run from {checkout.root} would import vllm from "
                           f"{', '.join(tests) or 'nowhere'}, not from {package}: is "
                           "vllm/__init__.py there?")
    installed = found.get("installed_vllm") or []
    if installed and package not in installed:
        raise VllmDevError(f"the target interpreter {python} has another vllm installed "
                           f"({', '.join(installed)}): the tests' subprocesses would import it, "
                           f"not {package}; run `vllm-dev setup` to install this checkout")
    return str(found["pytest"])


@dataclass(frozen=True)
class TestOutcome:
    """What one pytest run did. Counts are None when pytest wrote no report (it crashed, or
    stopped on a usage error)."""

    __test__ = False  # a name pytest would otherwise try to collect

    exit_code: int  # pytest's (or the wrapping tool's)
    seconds: float
    passed: int | None = None
    failed: int | None = None
    errors: int | None = None
    skipped: int | None = None

    @property
    def counted(self) -> bool:
        return self.passed is not None

    @property
    def nothing_tested(self) -> bool:
        """No test collected, or every selected test skipped."""
        if self.exit_code == NOTHING_TESTED:
            return True
        return (self.counted and self.exit_code == 0 and not self.passed and not self.failed
                and not self.errors)

    @property
    def status(self) -> int:
        """vllm-dev's exit status for this run: pytest's, or NOTHING_TESTED."""
        return NOTHING_TESTED if self.nothing_tested and self.exit_code == 0 else self.exit_code

    def counts(self) -> str:
        if not self.counted:
            meaning = _EXIT_MEANINGS.get(self.exit_code, "no report")
            return f"pytest exited {self.exit_code} ({meaning})"
        errors = f", {self.errors} error(s)" if self.errors else ""
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped{errors}"

    def problem(self) -> str | None:
        """The one line saying that nothing was tested, or None."""
        if not self.nothing_tested:
            return None
        if self.counted and self.skipped:
            return (f"every selected test was skipped ({self.skipped}): nothing was tested "
                    "(see pytest's skip reasons above; -rs lists them)")
        return "no test found: nothing was tested (check the selection, or the files' names)"


def pytest_argv(python: Path, args: PytestArgs, *, under: str | None, junit: Path | None
                ) -> list[str]:
    """The test command: ``[tool...] python -m pytest SELECTION REST --junitxml=...``.

    vllm-dev's ``--junitxml`` comes before the user's words, so a ``--junitxml`` of theirs
    wins (and is the file read back)."""
    tool = shlex.split(under) if under else []
    own = [f"--junitxml={junit}"] if junit is not None and args.junit_path is None else []
    return [*tool, str(python), "-m", "pytest", *own, *args.selection, *args.rest]


def read_junit(path: Path) -> tuple[int, int, int, int] | None:
    """(passed, failed, errors, skipped) from pytest's JUnit XML; None when absent/unreadable."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    if not suites:
        return None
    total = failures = errors = skipped = 0
    for suite in suites:
        total += int(suite.get("tests", 0))
        failures += int(suite.get("failures", 0))
        errors += int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return max(0, total - failures - errors - skipped), failures, errors, skipped


def run_tests(argv: list[str], *, cwd: Path, junit: Path, own_interrupt: bool,
              env: dict[str, str] | None = None) -> TestOutcome:
    """Run the test command with the terminal (process/foreground.py) and read its report."""
    try:
        junit.unlink()  # a report from an earlier run must not be read as this one's
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise VllmDevError(f"cannot remove the old test report {junit}: {exc.strerror}") from None
    started = time.monotonic()
    code = run_foreground(argv, cwd=cwd, env=env, own_interrupt=own_interrupt)
    seconds = time.monotonic() - started
    counts = read_junit(junit)
    if counts is None:
        return TestOutcome(code, seconds)
    passed, failed, errors, skipped = counts
    return TestOutcome(code, seconds, passed, failed, errors, skipped)
