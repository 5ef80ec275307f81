"""``vllm-dev test`` as a command: the selection, the check before any build, then one cycle
(cycle.py) or the watcher (watch.py)."""

from __future__ import annotations

from collections.abc import Callable

from vllm_dev.commands.testloop.cycle import (
    CycleResult,
    TestOptions,
    build_request,
    choose_selection,
    installed_preset_line,
    run_cycle,
)
from vllm_dev.commands.testloop.watch import watch
from vllm_dev.errors import VllmDevError
from vllm_dev.kerneltests.pytest_run import check_pytest
from vllm_dev.planning.workspace import Workspace

WorkspaceFactory = Callable[[], Workspace]


def run_test(make_ws: WorkspaceFactory, options: TestOptions) -> int:
    """``vllm-dev test`` (and ``--watch``); returns the exit status. ``make_ws`` gives a fresh
    workspace for each cycle (the settings and the machine as they are then)."""
    ws = make_ws()
    selection = choose_selection(ws, options)
    if not ws.dry:
        check(ws)
    if options.watch:
        return watch(make_ws, ws, options, selection)
    request = build_request(options, started_at=options.started_at)
    result = run_cycle(ws, options, selection, request)
    if ws.dry:
        ws.say("dry run: nothing was built, installed or tested")
        return 0
    ws.say(result.summary())
    _after(ws, result)
    return result.status


def check(ws: Workspace) -> None:
    """pytest is there and the tests import this checkout's vllm (pytest_run.check_pytest)."""
    check_pytest(ws.interpreter.path, ws.checkout, ws.runner,
                 device=ws.settings.device or _device_or_cuda(ws))


def _device_or_cuda(ws: Workspace) -> str:
    try:
        return ws.device
    except VllmDevError:
        return "cuda"


def _after(ws: Workspace, result: CycleResult) -> None:
    """A run whose preset is not the release one ends saying what is installed now."""
    line = installed_preset_line(ws, result)
    if line:
        ws.say(line)
