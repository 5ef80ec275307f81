"""vllm-dev's two front ends over the one workflow in :mod:`vllm_dev`: the Invoke tasks
(``invoke_tasks.py``, used by ``tasks.py`` and the ``vllm-dev`` console script in ``program.py``)
and the Nox build sessions (``nox_flow.py`` and ``nox_options.py``, used by ``noxfile.py``).

Kept apart from :mod:`vllm_dev` so the workflow package never imports Invoke or Nox. This file
imports nothing: nox's own interpreter loads the Nox side without Invoke installed.
"""
