"""``vllm-dev test`` and ``vllm-dev test --watch``: the command, one cycle (build, pick, test), the
watch loop and what it watches. What they build on below the steps (picking the tests, pytest's
arguments and its run, the remembered selection) is in ``kerneltests/``."""
