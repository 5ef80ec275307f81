"""The checkout's kernel tests, for ``vllm-dev test``: which tests a change reaches, pytest's
arguments, its run in the target interpreter, the selection remembered for the checkout. Below the
steps: the command that loops over them is commands/testloop/."""
