"""The Invoke front end of vllm-dev: task definitions shared by ``tasks.py`` and ``vllm-dev``.

Kept apart from :mod:`vllm_dev` so the workflow package never imports Invoke.
"""

from vllm_dev_frontends.invoke_tasks import DEFAULTS, namespace

__all__ = ["DEFAULTS", "namespace"]
