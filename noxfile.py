"""Nox sessions for vllm-dev: `nox -l` lists them.

`tests` and `lint` run with plain `nox`. One build session per preset template (presets/*.json:
`nox -s release`, `nox -s debug`, `nox -t build` for all) proves the whole flow from scratch in
its own venv; the logic is in src/vllm_dev_frontends/nox_flow.py. Options go after `--`:
`nox -s release -- --source ~/vllm`.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import nox

# nox's own interpreter may not have vllm-dev installed: the package is pure Python, use the source.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
from vllm_dev_frontends import nox_flow  # noqa: E402

nox.needs_version = ">=2025.2.9"  # default=False sessions
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint"]


@nox.session(tags=["check"])
def tests(session: nox.Session) -> None:
    """Run the test suite against real cmake, ninja, ccache, uv (and nvcc when present)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The whole flow on a temporary copy of the bundled example project (no vLLM checkout,
    no GPU needed): setup, prime, build, a one-file rebuild."""
    session.install("-e", ".")
    session.run("vllm-dev", "demo", *session.posargs)


@nox.session(tags=["check"])
def lint(session: nox.Session) -> None:
    """Ruff for style and errors, mypy for types."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "tasks.py", "noxfile.py")
    session.run("mypy")


# Under `nox -j`, build sessions still run one at a time (they install into the same vllm/);
# separate nox processes are serialized by a lock on the checkout (see nox_flow).
_SERIAL = ({"allow_parallel": False}
           if "allow_parallel" in inspect.signature(nox.session).parameters else {})


@nox.session(default=False, **_SERIAL)
def kernels(session: nox.Session) -> None:
    """`vllm-dev test` from scratch in its own venv (release preset, test requirements, no
    remembered settings): `nox -s kernels -- [VLLM-DEV OPTIONS --] PYTEST ARGS`."""
    nox_flow.kernels_session(session)


def _build_session(preset: str, templates: Path) -> None:
    def build(session: nox.Session) -> None:
        nox_flow.build_session(session, preset=preset)

    build.__doc__ = nox_flow.session_doc(preset, templates)
    nox.session(build, name=preset, tags=["build"], default=False, **_SERIAL)


for _preset, _templates in nox_flow.session_templates(os.environ).items():
    if _preset in ("tests", "lint", "kernels"):
        print(f"noxfile: preset template {_preset}.json clashes with the {_preset} session; "
              "rename it to get a build session", file=sys.stderr)
        continue
    _build_session(_preset, _templates)
