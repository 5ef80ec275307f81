#!/usr/bin/env python3
"""The real-vLLM tier's steps × CMake versions, each step run whatever the one before did.

The tests (tests/test_real_vllm.py) stop at the first failed assertion; this script runs every step
of the same flow on every CMake version and prints a table of outcome (ok / failed + vllm-dev's
error line) and wall time, plus the tier's preparation times (unpack, venv). Not a test: it is
for the closing note of a change and for watching the real tree across CMake releases.

    VLLM_DEV_REAL_VLLM=../shared/testbeds/vllm-0.33.0-src.tar.xz python bench/real_vllm_matrix.py
    python bench/real_vllm_matrix.py --cmake 4.4.5 --cmake 3.30.9 --json out.json

Uses the tier's own harness (tests/real_vllm.py): the same cache, adaptations and target venv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import real_vllm as rv  # noqa: E402

TARGETS = ["--target", "spinloop", "--target", "fs_io_C"]
PROBE = '\nextern "C" __attribute__((visibility("default"))) int vllm_dev_matrix_probe() ' \
        '{ return 7; }\n'


@dataclass
class Step:
    cmake: str
    step: str
    ok: bool
    seconds: float
    detail: str


def _vllm_dev() -> str:
    found = Path(sys.executable).parent / "vllm-dev"
    return str(found) if found.exists() else "vllm-dev"


def run_steps(cmake: str, repo: Path, onednn: Path | None, python: Path, work: Path
              ) -> list[Step]:
    version = rv.cmake_into(python, cmake)
    root = rv.fresh_clone(repo, work / f"vllm-cmake-{version}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_DEV_", "CCACHE_"))}
    env.update({"VLLM_TARGET_DEVICE": "cpu", "CCACHE_DIR": str(work / f"ccache-{version}"),
                "VLLM_DEV_PYTHON": str(python), "NO_COLOR": "1"})
    if onednn:
        env["FETCHCONTENT_SOURCE_DIR_ONEDNN"] = str(onednn)
    steps: list[Step] = []

    def step(name: str, *args: str, before: object = None) -> None:
        if callable(before):
            before()
        start = time.monotonic()
        done = subprocess.run([_vllm_dev(), *args], cwd=root, env=env, capture_output=True,
                              text=True, check=False, stdin=subprocess.DEVNULL)
        seconds = time.monotonic() - start
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("vllm-dev: ")]
        if done.returncode == 0:
            summary = [ln for ln in errors if " in " in ln and "configure" in ln]
            detail = summary[-1][len("vllm-dev: "):] if summary else ""
        else:
            detail = (errors[-1] if errors else (done.stderr.strip().splitlines() or ["?"])[-1])
        steps.append(Step(version, name, done.returncode == 0, seconds, detail[:200]))

    def edit() -> None:
        source = root / "csrc" / "fs_io.cpp"
        source.write_text(source.read_text() + PROBE)

    step("doctor", "doctor")
    step("prime", "prime")
    step("build spinloop fs_io_C", "build", *TARGETS)
    step("verify", "verify")
    step("one-function edit + build", "build", *TARGETS, before=edit)
    installed = sorted((root / "vllm").glob("fs_io_C*.so"))
    symbol = bool(installed) and "vllm_dev_matrix_probe" in subprocess.run(
        ["nm", "-D", "--defined-only", str(installed[0])], capture_output=True, text=True,
        check=False).stdout
    steps.append(Step(version, "new symbol in installed .so", symbol, 0.0,
                      str(installed[0].name) if installed else "no installed fs_io_C"))
    step("no-op build", "build", *TARGETS)
    step("clean", "clean")
    step("build after clean", "build", *TARGETS)
    step("clean --installed", "clean", "--installed")
    left = sorted(p.name for p in (root / "vllm").glob("*.so"))
    steps.append(Step(version, "installed files gone", not left, 0.0, ", ".join(left)))
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cmake", action="append",
                        help="a PyPI cmake version or requirement (repeatable; default: the "
                             "tier's versions)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    source = rv.RealSource.from_env()
    if source is None:
        print(f"real_vllm_matrix: {rv.SKIP_REASON}", file=sys.stderr)
        return 2
    start = time.monotonic()
    repo = rv.adapted_repo(source)
    onednn = rv.onednn_dir(source)
    rows: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="vllm-dev-matrix-") as tmp:
        work = Path(tmp)
        python = rv.TIMINGS.timed("target venv", lambda: rv.make_target_venv(work / ".venv", repo))
        assert isinstance(python, Path)
        for cmake in args.cmake or list(rv.CMAKE_VERSIONS.values()):
            rows.extend(run_steps(cmake, repo, onednn, python, work))
    prep = ", ".join(f"{k} {v:.1f} s" for k, v in rv.TIMINGS.seconds.items())
    print(f"preparation: {prep or 'all cached'}; total {time.monotonic() - start:.0f} s\n")
    print("| step | cmake | outcome | wall s | detail |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.step} | {r.cmake} | {'ok' if r.ok else 'FAILED'} | {r.seconds:.1f} | "
              f"{r.detail.replace('|', '/')} |")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
