"""The user-facing commands, above the steps they run: the build pipeline (prime, build, install,
the Nox sessions), the demo, ``vllm-dev test`` and its watcher, the build farm's session.

Every import runs downwards: the front ends call the commands (or a single step directly), the
commands call the steps, the steps read the plan and the workspace (``planning/``), and those the
layers below (tests/test_layering.py checks it)."""
