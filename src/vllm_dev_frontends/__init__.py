"""vllm-dev's two front ends over the one workflow in :mod:`vllm_dev`: the Invoke tasks
(``tasks.py`` and the ``vllm-dev`` console script) and the Nox build sessions (``noxfile.py``).

Kept apart from :mod:`vllm_dev` so the workflow package never imports Invoke or Nox.
"""

from vllm_dev_frontends.invoke_tasks import DEFAULTS, namespace

__all__ = ["DEFAULTS", "namespace"]
