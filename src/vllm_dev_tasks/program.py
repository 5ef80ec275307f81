"""The ``vllm-dev`` console script: Invoke's Program over the same namespace as ``tasks.py``."""

from __future__ import annotations

import os

from invoke import Program

from vllm_dev import __version__
from vllm_dev_tasks.tasks import namespace


class VllmDevProgram(Program):
    """Also reads ``./invoke.yaml`` of the working directory, as ``invoke`` does beside tasks.py."""

    def update_config(self, merge: bool = True) -> None:
        self.config.set_project_location(os.getcwd())
        self.config.load_project(merge=False)
        super().update_config(merge=merge)


program = VllmDevProgram(namespace=namespace(), name="vllm-dev", binary="vllm-dev",
                         version=__version__)


def main() -> None:
    program.run()
