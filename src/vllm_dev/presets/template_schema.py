"""What a preset template (``presets/<name>.json``) may hold, as a JSON Schema, and its errors as
one line that points at the file, line and column.

The schema is checked by :mod:`jsonschema`. Importing it costs about 150 ms (``referencing``,
``attrs``, the format checkers), as much as the rest of a no-op build's start-up, so it is imported
only when a template is read, and :func:`vllm_dev.presets.render.load_template_set` remembers a
valid template in the fact cache until its file (or this schema) changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from vllm_dev.errors import VllmDevError

_STRING = {"type": "string", "description": "a string"}
_CACHE_VALUE = {
    "description": 'a string, true/false, or {"type": "BOOL", "value": "ON"}',
    "anyOf": [
        {"type": "string"},
        {"type": "boolean"},
        {"type": "object", "required": ["value"], "additionalProperties": False,
         "properties": {"type": {"type": "string"},
                        "value": {"type": ["string", "boolean"]}}},
    ],
}
TEMPLATE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "description": "a JSON object",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": _STRING,
        "displayName": _STRING,
        "buildType": _STRING,
        "binaryDir": _STRING,
        "cacheVariables": {"type": "object", "description": "an object of cache variables",
                           "additionalProperties": _CACHE_VALUE},
        "environment": {"type": "object", "description": "an object of strings",
                        "additionalProperties": _STRING},
    },
}
KEYS = tuple(sorted(TEMPLATE_SCHEMA["properties"]))
#: Changes with the schema, so a template remembered as valid is checked again after an upgrade.
SCHEMA_STAMP = hashlib.sha256(json.dumps(TEMPLATE_SCHEMA, sort_keys=True).encode()).hexdigest()[:12]


def check_template(path: Path, text: str, data: Any) -> None:
    """Raise one line ``<file>:<line>:<col>: <what is wrong>`` unless ``data`` (parsed from
    ``text``) fits :data:`TEMPLATE_SCHEMA`."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(TEMPLATE_SCHEMA)
    # The first error in the file (the document's own first) is reported: one line, not a list.
    error = min(validator.iter_errors(data),
                key=lambda e: locate(text, [str(p) for p in e.absolute_path]), default=None)
    if error is None:
        return
    keys = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and not keys:
        unknown = sorted(set(data) - set(KEYS))[0]
        line, col = locate(text, [unknown])
        raise VllmDevError(f"{path}:{line}:{col}: unknown key {unknown!r}; allowed: "
                           f"{', '.join(KEYS)}")
    where = ".".join(keys) or "a preset template"
    expected = error.schema.get("description") or f"of type {error.validator_value}"
    line, col = locate(text, keys)
    raise VllmDevError(f"{path}:{line}:{col}: {where} must be {expected} (fix the template)")


# By hand: neither json nor jsonschema keeps positions, and an error without a line is a hunt in a
# long template. Each key of the path is looked for as `"key":` after the previous one.
def locate(text: str, keys: list[str]) -> tuple[int, int]:
    """Line and column (1-based) of the value at ``keys`` in the JSON ``text``, as near as can be
    found; ``1, 1`` for the document itself."""
    position = 0
    for key in keys:
        found = re.compile(re.escape(json.dumps(key)) + r"\s*:").search(text, position)
        if found is None:
            break
        position = found.start()
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1
