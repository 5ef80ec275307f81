"""Nox sessions for vllm-dev: `nox -l` lists them."""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint"]


@nox.session(tags=["check"])
def tests(session: nox.Session) -> None:
    """Run the test suite against real cmake, ninja, ccache, uv (and nvcc when present)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(tags=["check"])
def lint(session: nox.Session) -> None:
    """Ruff for style and errors, mypy for types."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "tasks.py", "noxfile.py")
    session.run("mypy")
