"""Turning a raw setting value into a typed one, or one line naming where the bad value came from.

Each parser takes ``(value, origin)``: the value as a flag, an environment variable or a YAML file
gave it (a string, or any YAML value: a number, a list, a map), and the name of that source
(``--jobs``, ``MAX_JOBS``, ``config vllm_dev.jobs``) for the error message. The declarations in
:mod:`vllm_dev.config.declarations` pick one parser per setting.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from typing import Any

from vllm_dev.errors import VllmDevError

Parser = Callable[[Any, str], Any]


def text(value: Any, origin: str) -> str:
    """A string setting; numbers (YAML reads ``arch: 8.0`` as one) become their text."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise VllmDevError(f"{origin} must be a string, got {value!r}"[:300])


def positive_int(value: Any, origin: str) -> int:
    """An integer >= 1, or a one-line error naming where the bad value came from."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise VllmDevError(f"{origin} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise VllmDevError(f"{origin} must be a positive integer, got {value!r}")
    return number


def positive_float(value: Any, origin: str) -> float:
    """A number > 0 (e.g. GiB), or a one-line error naming where the bad value came from."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise VllmDevError(f"{origin} must be a positive number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise VllmDevError(f"{origin} must be a positive number, got {value!r}")
    return number


def non_negative_float(value: Any, origin: str) -> float:
    """A number >= 0 (0 often means "never"), or a one-line error naming the origin."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise VllmDevError(f"{origin} must be a number >= 0, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise VllmDevError(f"{origin} must be a number >= 0, got {value!r}")
    return number


def boolean(value: Any, origin: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case), or a one-line error naming the origin."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise VllmDevError(f"{origin} must be true or false, got {value!r}")


def choice(value: Any, allowed: tuple[str, ...], origin: str) -> str:
    """One of ``allowed`` (any case), or a one-line error listing them."""
    word = str(value).strip().lower()
    if word not in allowed:
        raise VllmDevError(f"{origin} must be one of {', '.join(allowed)}, got {value!r}")
    return word


def checked_text(check: Callable[..., Any]) -> Parser:
    """A string that ``check(text, origin=...)`` accepts; the value is what ``check`` returns
    when that is a string (a normalized URL or size), else the text itself (arch lists are
    checked here and parsed again where they are used)."""

    def parse(value: Any, origin: str) -> str:
        given = text(value, origin)
        checked = check(given, origin=origin)
        return checked if isinstance(checked, str) else given

    return parse


def defines(value: Any, origin: str) -> tuple[str, ...]:
    """``--define`` values (a list), ``VLLM_DEV_DEFINES`` (shell words, so a value may hold
    spaces when quoted) or config ``defines`` (a list of NAME=VALUE, or a NAME: VALUE map)."""
    from vllm_dev.presets.render import parse_define  # lazy: tests/test_lazy_imports.py

    # Invoke hands a map in its configuration over as its own DataProxy, which has items() but
    # is no Mapping.
    if isinstance(value, Mapping) or callable(getattr(value, "items", None)):
        items = [f"{k}={'ON' if v is True else 'OFF' if v is False else v}"
                 for k, v in value.items()]
    elif isinstance(value, str):
        try:
            items = shlex.split(value)
        except ValueError as exc:
            raise VllmDevError(f"{origin}: {exc} in {value!r}") from None
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        raise VllmDevError(f"{origin} must be a list of NAME=VALUE, got {value!r}"[:300])
    by_name = {parse_define(item, origin)[0]: item for item in items}  # the last one wins
    return tuple(by_name.values())
