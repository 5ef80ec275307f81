"""The task namespace for ``tasks.py``, also from a fresh clone of vllm-dev (no install yet).

``invoke --list`` in a clone needs only invoke; the tasks need vllm-dev's dependencies too
(packaging, filelock, uv...), imported where a task runs. So ``invoke --list`` lists the tasks,
and a task run without them says in one line which one is missing and the command that installs
them, instead of a traceback (were the task module itself not to import, the listing would show
one task, ``install-me``, saying the same).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from invoke import Collection, Exit, task

INSTALL = "pip install -e .   (or: uv pip install -e .)"


def namespace() -> Collection:
    """The real tasks; each says in one line which dependency is missing, if one is."""
    try:
        from vllm_dev_frontends.invoke_tasks import namespace as tasks
    except ImportError as exc:  # a dependency of vllm-dev is not installed here
        return _not_installed(exc.name or str(exc))
    collection = tasks()
    for each in collection.tasks.values():
        each.body = _needs_install(each.body)
    return collection


def _needs_install(body: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except ModuleNotFoundError as exc:
            raise Exit(f"vllm-dev: its dependency {exc.name!r} is not installed here: run "
                       f"`{INSTALL}` in this clone", code=1) from None
    return run


def _not_installed(missing: str) -> Collection:
    @task(name="install-me")
    def install_me(c):  # type: ignore[no-untyped-def]
        raise Exit(f"vllm-dev: its dependency {missing!r} is not installed here: run "
                   f"`{INSTALL}` in this clone, then `invoke --list`", code=1)

    install_me.__doc__ = (f"vllm-dev's dependencies are not installed ({missing} is missing): "
                          f"run `{INSTALL}`")
    return Collection(install_me)
