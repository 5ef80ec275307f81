"""``demo``: the whole flow on a temporary copy of the bundled vLLM-shaped example project.

It is the onboarding path for a machine with no vLLM checkout and no GPU: it shows each step,
what it ran, and that an edit to one kernel source recompiles just that file.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from vllm_dev.checkout.tree import DEVICES
from vllm_dev.commands import pipeline
from vllm_dev.config.settings import choice
from vllm_dev.errors import VllmDevError
from vllm_dev.planning.workspace import RunnerFactory, Workspace, open_workspace
from vllm_dev.process.runner import Runner
from vllm_dev.reporting.ninja_log import entries_since, log_size
from vllm_dev.state import layout
from vllm_dev.steps.setup import find_uv, run_setup
from vllm_dev.toolchain.tools import find_nvcc

_IGNORE = shutil.ignore_patterns("cmake-build-*", ".venv", "*.so", layout.USER_PRESETS,
                                 ".deps", layout.STATE_DIR, "__pycache__", "*.egg-info")


DEMO_DEVICES = tuple(d for d in DEVICES if d in ("cuda", "cpu"))  # what the example models
EXAMPLE_ARCH = "7.5"  # tests/minivllm/CMakeLists.txt's default TORCH_CUDA_ARCH_LIST


def example_project_dir() -> Path:
    """``tests/minivllm`` of a source checkout of vllm-dev, else the copy inside the wheel."""
    source_tree = Path(__file__).resolve().parents[3] / "tests" / "minivllm"
    if source_tree.is_dir():
        return source_tree

    return Path(str(resources.files("vllm_dev") / "example_project"))


def _step(title: str) -> None:
    print(f"\n==> {title}", file=sys.stderr, flush=True)


def _call_add(runner: Runner, python: str, project: Path) -> str:
    """``vllm._C.add(2, 3)`` as the target interpreter answers it (the installed extension)."""
    done = runner.query([python, "-c", "import vllm._C as m; print(m.add(2, 3))"], cwd=project,
                        timeout=None)
    return (done.stdout.strip().splitlines() or ["?"])[-1] if done.ok else "?"


def run_demo(*, runner: RunnerFactory, keep: bool = False, device: str | None = None) -> Path:
    """The demo, its commands run by the door's kind of runner (see
    :func:`~vllm_dev.planning.workspace.open_workspace`); returns the example project's copy."""
    # Checked before the temporary copy exists: a bad --device leaves nothing behind.
    device = choice(device, DEMO_DEVICES, "--device") if device else (
        "cuda" if find_nvcc(os.environ) else "cpu")
    work = Path(tempfile.mkdtemp(prefix="vllm-dev-demo-"))
    project = work / "vllm"
    try:
        _step(f"copy the example project to {project} (device: {device})")
        shutil.copytree(example_project_dir(), project, ignore=_IGNORE)
        flags = {"source": str(project), "device": device,
                 "python": str(project / ".venv" / "bin" / "python")}
        chosen: dict[str, tuple[object, str]] = {}

        def workspace() -> Workspace:
            """A fresh view for each step (setup changes the interpreter). The demo's copy is
            thrown away: nothing to remember in it."""
            return open_workspace(command="demo", flags=flags, runner=runner, cwd=project,
                                  remember=False, chosen=chosen)

        ws = workspace()
        _step("create the target virtual environment (.venv) with uv")
        ws.runner.run([find_uv(), "venv", "--quiet", "--python", sys.executable,
                       str(project / ".venv")])
        if device == "cuda" and workspace().arch.archs is None:
            # No GPU to narrow to: "vLLM's default arch list" is, for the example project, its
            # own default (7.5, CMakeLists.txt), so say that, and CMake's arch line agrees.
            chosen["arch"] = (EXAMPLE_ARCH, "the demo (the example project's default arch)")
        _step("setup: editable install + build requirements (the example has no published "
              "wheel, so no prebuilt kernels are copied)")
        run_setup(workspace())
        _step("prime: writes CMakeUserPresets.json and configures the build dir "
              "(cmake --preset release)")
        pipeline.run(workspace(), pipeline.Request(stages=pipeline.PRIME))
        _step("build: compiles every target and installs the extensions into vllm/")
        start = time.monotonic()
        pipeline.run(workspace(), pipeline.Request())
        print(f"    first build: {time.monotonic() - start:.1f} s", file=sys.stderr)
        _step("edit one kernel (csrc/ops/add.cpp: add() returns a + b + 1) and build again: "
              "one object recompiles, one file is installed")
        python = str(project / ".venv" / "bin" / "python")
        before = _call_add(ws.runner, python, project)
        edited = project / "csrc" / "ops" / "add.cpp"
        if not ws.dry:
            edited.write_text(edited.read_text().replace("return a + b;", "return a + b + 1;"))
        build_dir = workspace().build_dir
        mark = log_size(build_dir)
        start = time.monotonic()
        result = pipeline.run(workspace(), pipeline.Request())
        print(f"    incremental build: {time.monotonic() - start:.1f} s", file=sys.stderr)
        objects = [e.output for e in entries_since(build_dir, mark) if e.is_object]
        written = [str(p.relative_to(project)) for p in (result.install.written
                                                          if result.install else [])]
        print(f"    recompiled: {', '.join(objects) or 'nothing'} ({len(objects)} object(s)); "
              f"installed: {', '.join(written) or 'nothing'} ({len(written)} file(s))",
              file=sys.stderr)
        _step("call the changed function from Python, in the target interpreter")
        after = _call_add(ws.runner, python, project)
        print(f"    vllm._C.add(2, 3): {before} before the edit, {after} after it",
              file=sys.stderr)
        _step("done: inside a real vLLM checkout, `vllm-dev setup` once, then `vllm-dev build`")
    except VllmDevError:
        keep = True
        raise
    finally:
        if keep:
            print(f"example project kept at {project}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return project
