"""The README's settings table, generated from the declarations (:data:`SETTINGS`).

``python -m vllm_dev.config.table`` prints it; ``--write README.md`` replaces the table between
the markers in that file; ``--check README.md`` exits 1 when the file's table is not the
generated one (tests/test_settings_views.py runs the same check).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from vllm_dev.config.declarations import SETTINGS, STEPS, Setting

BEGIN = ("<!-- settings table: generated from src/vllm_dev/config/declarations.py by "
         "`python -m vllm_dev.config.table --write README.md`; edit the declarations -->")
END = "<!-- end of the settings table -->"
REGENERATE = "python -m vllm_dev.config.table --write README.md"
HEADER = ("| config key (`vllm_dev.`) | flag | short | environment (first set wins) | default "
          "| what it is | read by | remembered |")


def _cell(text: str) -> str:
    """Markdown-safe: a ``|`` would end the cell, ``<checkout>`` would be read as an HTML tag."""
    for raw, escaped in (("|", "\\|"), ("<", "&lt;"), (">", "&gt;"), ("*", "\\*"), ("\n", " ")):
        text = text.replace(raw, escaped)
    return text


def _code(items: Iterable[str]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def row(s: Setting) -> str:
    """One setting's row: config key, flag, short flag, variables, default, meaning, the
    steps that read it (each step's task takes the flag) and whether a flag is remembered."""
    choices = f" One of {_code(s.choices)}." if s.choices else ""
    flag = f"`{s.flag}`" + (" (repeatable)" if s.repeatable else "") if s.flag else ""
    default = f"`{s.default}`" if s.default not in (None, ()) and not s.switch else s.shown_default
    cells = [f"`{s.config_key}`", flag, f"`-{s.short}`" if s.short else "", _code(s.env),
             default if default.startswith("`") else _cell(default), _cell(s.help) + "." + choices,
             "every step" if s.steps == set(STEPS) else
             ", ".join(step for step in STEPS if step in s.steps),
             "yes" if s.remember else ""]
    return "| " + " | ".join(cells) + " |"


def markdown_table(settings: Sequence[Setting] = SETTINGS) -> str:
    """The whole table, with its markers, as it stands in the README."""
    lines = [BEGIN, HEADER, "|" + "---|" * HEADER.count(" |"), *map(row, settings), END]
    return "\n".join(lines)


def table_in(text: str) -> str | None:
    """The table between the markers in ``text`` (markers included), or None without them."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start:end + len(END)]


def with_table(text: str) -> str:
    """``text`` with its table replaced by the generated one."""
    found = table_in(text)
    if found is None:
        raise ValueError(f"no settings table markers ({BEGIN!r} ... {END!r})")
    return text.replace(found, markdown_table(), 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vllm_dev.config.table",
                                     description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", type=Path,
                       help="replace the table between the markers in FILE")
    group.add_argument("--check", metavar="FILE", type=Path,
                       help="exit 1 when FILE's table is not the generated one")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(with_table(args.write.read_text()))
        return 0
    if args.check:
        if table_in(args.check.read_text()) != markdown_table():
            print(f"{args.check}: the settings table differs from the declarations; run "
                  f"`{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    print(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
