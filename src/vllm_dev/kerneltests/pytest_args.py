"""The arguments after ``vllm-dev test --``, split into the test *selection* (remembered for the
checkout) and the per-run rest (output and behaviour flags such as ``-v``, ``-x``, ``--pdb``).

pytest's own parser is not used: it lives in the target interpreter, not in vllm-dev's, and a
run must be split before that interpreter starts. What matters is small and stable: which
options pick tests (paths and node ids, ``-k``, ``-m``, ``--deselect``, ``--ignore``,
``--ignore-glob``) and which options take a value as the next word (so ``--tb short`` is not read
as a path). An option not listed here is taken as a flag; ``--opt=value`` is always unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

# Options that pick tests: remembered (with their value).
SELECTING = frozenset({"-k", "-m", "--deselect", "--ignore", "--ignore-glob"})
# Options of pytest and its common plugins that take the next word as their value.
VALUED = SELECTING | frozenset({
    "-p", "-c", "-o", "--override-ini", "-r", "--tb", "--capture", "--durations",
    "--durations-min", "--maxfail", "--rootdir", "--basetemp", "--confcutdir", "--junitxml",
    "--junit-xml", "--junit-prefix", "--import-mode", "--log-level", "--log-format",
    "--log-date-format", "--log-cli-level", "--log-cli-format", "--log-cli-date-format",
    "--log-file", "--log-file-level", "--log-file-format", "--log-file-date-format",
    "--show-capture", "-W", "--pythonwarnings", "--pdbcls", "--doctest-glob", "--doctest-report",
    "--assert", "--verbosity", "--color", "--code-highlight", "--timeout", "--timeout-method",
    "-n", "--numprocesses", "--dist", "--maxprocesses", "--count", "--reruns", "--reruns-delay",
    "--seed", "--cov", "--cov-report", "--cov-config"})
JUNIT_OPTIONS = ("--junitxml", "--junit-xml")


@dataclass(frozen=True)
class PytestArgs:
    """``selection``: what picks the tests (remembered); ``rest``: everything else (not)."""

    selection: tuple[str, ...] = ()
    rest: tuple[str, ...] = ()

    @property
    def junit_path(self) -> str | None:
        """The user's own ``--junitxml`` (vllm-dev then reads that file for the counts)."""
        found = None
        words = list(self.rest)
        for i, word in enumerate(words):
            name, eq, value = word.partition("=")
            if name in JUNIT_OPTIONS:
                found = value if eq else (words[i + 1] if i + 1 < len(words) else None)
        return found


def split(args: tuple[str, ...] | list[str]) -> PytestArgs:
    """Split pytest's command line into selection and the rest (order kept within each)."""
    selection: list[str] = []
    rest: list[str] = []
    words = list(args)
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, _ = word.partition("=")
        if word == "--":  # pytest's own end of options: only positionals follow
            selection.extend(words[i + 1:])
            break
        positional = not word.startswith("-") or word == "-"
        if positional or (word[:2] in ("-k", "-m") and len(word) > 2):  # a path, -kEXPR
            selection.append(word)
        elif name in VALUED and not eq:
            taken = [word, *words[i + 1:i + 2]]
            (selection if word in SELECTING else rest).extend(taken)
            i += 1
        else:
            (selection if name in SELECTING else rest).append(word)
        i += 1
    return PytestArgs(tuple(selection), tuple(rest))
