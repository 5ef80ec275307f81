"""``build``: prime when needed, compile, install, and check what was installed."""

from __future__ import annotations

from dataclasses import dataclass

from vllm_dev.install import InstallReport, check_components, check_installed
from vllm_dev.prime import PrimeResult, run_prime
from vllm_dev.workspace import Workspace


@dataclass(frozen=True)
class BuildResult:
    prime: PrimeResult
    install: InstallReport | None


def run_build(
    ws: Workspace,
    *,
    targets: list[str] | None = None,
    install: bool = True,
    merge: bool = False,
    force: bool = False,
) -> BuildResult:
    primed = run_prime(ws, merge=merge, force=force)
    build_dir = ws.build_dir
    if not ws.dry:
        check_components(build_dir, targets)
    cmake = str(ws.cmake.path)
    argv = [cmake, "--build", "--preset", ws.template.name]
    if targets:
        argv += ["--target", *targets]
    elif install:
        argv += ["--target", "install"]
    ws.runner.run(argv, cwd=ws.checkout.root)
    if install and targets:
        for target in targets:
            ws.runner.run([cmake, "--install", str(build_dir), "--component", target],
                          cwd=ws.checkout.root)
    report = None
    if install and not ws.dry:
        report = check_installed(ws, build_dir, targets)
    return BuildResult(primed, report)
