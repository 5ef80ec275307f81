"""Which kernel tests exercise what changed: changed files -> translation units -> the ops those
units define -> the test files under ``tests/kernels/`` that call those ops.

Nothing here guesses from file names; each link is read from what the build and the code say:

* file -> translation units: a changed source is a unit of ``compile_commands.json``; a changed
  header reaches the units whose objects list it in ninja's deps log (``ninja -t deps``, VALID
  records: after a build, every object of the built targets has one);
* unit -> functions it defines: the symbols its object *defines* (``nm --defined-only
  --extern-only -C``, type ``T``: strong code symbols; weak ones are inline functions of headers,
  defined again in every unit that includes them);
* function -> op: the op registrations of the extensions' bindings, the calls shaped like vLLM's
  ``ops.impl("rms_norm", torch::kCPU, &rms_norm)`` and ``ops.def("schema", &func)`` (any object
  name, any dispatch key, ``&f``, ``TORCH_FN(f)``, ``TORCH_BOX(&f)`` or a bare ``f``), found in
  the checkout's own units of this build dir;
* op -> tests: the files under ``tests/kernels/`` that name the op as vLLM's tests call ops:
  ``torch.ops.<namespace>.<op>``, ``<alias>.<op>`` where ``alias`` is ``vllm._custom_ops`` (as
  ``ops`` or any name it is imported under), or ``<op>`` imported from ``vllm._custom_ops``.

A unit whose object is not built cannot be read: the picker says so rather than guess.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vllm_dev.checkout.build_graph import cache_value, ninja_deps
from vllm_dev.checkout.header_scan import compile_units
from vllm_dev.errors import CannotRun, VllmDevError
from vllm_dev.process.runner import query
from vllm_dev.state import layout

TESTS_DIR = "tests/kernels"
_SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".cu", ".hip")
# Paths (relative to the checkout) whose files are never the checkout's own sources.
_NOT_OWN = (".deps/", layout.STATE_DIR + "/", ".git/")
_REGISTRATION = re.compile(r"\b[A-Za-z_]\w*\s*\.\s*(impl|def)\s*\(")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FUNCTION_REF = re.compile(
    r"(?:&\s*|\bTORCH_FN\s*\(\s*&?\s*|\bTORCH_BOX\s*\(\s*&?\s*)((?:::)?[A-Za-z_][\w:]*)")
_BARE = re.compile(r"^(?:::)?[A-Za-z_][\w:]*(?:\s*<[^()]*>)?$")
_NOT_A_FUNCTION = re.compile(r"^(?:torch|c10|at)::|^k[A-Z]")  # dispatch keys, not functions
_CUSTOM_OPS_ALIAS = re.compile(
    r"^\s*(?:import\s+vllm\._custom_ops\s+as\s+(\w+)|from\s+vllm\s+import\s+_custom_ops\s+as\s+"
    r"(\w+)|from\s+vllm\s+import\s+(_custom_ops)\b)", re.M)
_CUSTOM_OPS_NAMES = re.compile(r"^\s*from\s+vllm\._custom_ops\s+import\s+\(?([^)\n]*)\)?", re.M)


@dataclass(frozen=True)
class Registration:
    """One op registration: ``op`` is implemented by ``function`` (as written, maybe qualified)."""

    op: str
    function: str
    file: str  # relative to the checkout
    line: int


@dataclass
class UnitOps:
    """A changed translation unit and the ops it defines (empty: it defines none)."""

    source: str  # relative to the checkout
    ops: list[str] = field(default_factory=list)
    because: str = ""  # the changed file that reached it, when not the unit itself
    problem: str = ""  # why its ops are unknown (no object to read)


@dataclass
class Pick:
    """The picker's answer: the test files to run, and why, as lines a user can check."""

    units: list[UnitOps]
    tests: dict[str, list[str]]  # test file (relative) -> the ops of `units` it calls
    bindings: list[str] = field(default_factory=list)  # files the registrations came from
    where: str = ""  # what the changes are relative to, for the first line

    @property
    def ops(self) -> list[str]:
        return sorted({op for unit in self.units for op in unit.ops})

    def lines(self) -> list[str]:
        where = f" {self.where}" if self.where else ""
        if not self.units:
            return [f"no test picked: no changed file{where} is compiled into a kernel (give the "
                    "tests after --: vllm-dev test -- tests/kernels/...)"]
        out = []
        for unit in self.units:
            via = f" (through {unit.because})" if unit.because else ""
            if unit.problem:
                out.append(f"{unit.source}{via}: {unit.problem}")
            elif unit.ops:
                out.append(f"{unit.source}{via} defines op(s) {', '.join(unit.ops)}")
            else:
                out.append(f"{unit.source}{via} defines no registered op")
        if all(unit.problem for unit in self.units):
            return [f"no test picked: which ops the changed translation unit(s){where} define "
                    "is unknown (give the tests after --: vllm-dev test -- tests/kernels/...)",
                    *(f"  {line}" for line in out)]
        if not self.ops:
            return [f"no test picked: the translation unit(s) changed{where} define no op "
                    "registered in the extensions' bindings (give the tests after --: vllm-dev "
                    "test -- tests/kernels/...)", *(f"  {line}" for line in out)]
        if not self.tests:
            return [f"no test picked: no file under {TESTS_DIR}/ calls {', '.join(self.ops)}",
                    *(f"  {line}" for line in out)]
        head = (f"picked {len(self.tests)} test file(s) calling the ops of what changed{where}"
                + (f" (registered in {', '.join(self.bindings)})" if self.bindings else ""))
        return [head, *(f"  {line}" for line in out),
                *(f"  {path}: calls {', '.join(ops)}" for path, ops in self.tests.items())]


# ----------------------------------------------------------------------------- functions


def function_name(demangled: str) -> str:
    """``fused_add_rms_norm(at::Tensor&, double)`` -> ``fused_add_rms_norm``;
    ``void vllm::f<float>(float*)`` -> ``vllm::f``; ``PyInit__C`` -> ``PyInit__C``."""
    depth = 0
    end = len(demangled)
    for i, char in enumerate(demangled):
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        elif char == "(" and depth == 0 and i > 0:
            if demangled.startswith("operator", max(0, i - 8)):
                continue
            end = i
            break
    head = demangled[:end].strip()
    # A return type before the name (function templates): the name is the last top-level word.
    depth = 0
    start = 0
    for i, char in enumerate(head):
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        elif char == " " and depth == 0:
            start = i + 1
    name = head[start:]
    return _strip_templates(name)


def _strip_templates(name: str) -> str:
    out = []
    depth = 0
    for char in name:
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out).strip()


def find_nm(build_dir: Path) -> str:
    """The build's own ``nm`` (CMake's ``CMAKE_NM``), else the one on PATH."""
    configured = cache_value(build_dir, "CMAKE_NM")
    if configured and Path(configured).is_file():
        return configured
    found = shutil.which("nm")
    if found is None:
        raise VllmDevError("nm not found (binutils): install binutils to pick tests by op, or "
                           "give the tests after -- (vllm-dev test -- tests/kernels/...)")
    return found


def defined_functions(obj: Path, *, nm: str) -> set[str]:
    """The functions ``obj`` defines (strong code symbols), demangled, without arguments."""
    try:  # a query with the module default: no runner is at hand here (process/runner.py)
        done = query([nm, "--defined-only", "--extern-only", "-C", str(obj)], timeout=120)
    except CannotRun as exc:
        raise VllmDevError(f"cannot read the symbols of {obj}: {exc.detail}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise VllmDevError(f"`nm` cannot read {obj}: {last}")
    found = set()
    for line in done.stdout.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[1] == "T":
            found.add(function_name(parts[2]))
    return found


# ----------------------------------------------------------------------------- registrations


def registrations(text: str, *, file: str = "") -> list[Registration]:
    """The op registrations in one bindings file's text."""
    found = []
    for match in _REGISTRATION.finditer(text):
        args = _call_arguments(text, match.end())
        if args is None:
            continue
        first = _STRING.match(args.lstrip())
        if not first:
            continue
        op = re.split(r"[(.\s]", first.group(1), maxsplit=1)[0]
        rest = args.lstrip()[first.end():]
        functions = [_strip_templates(f) for f in _FUNCTION_REF.findall(_drop_strings(rest))]
        if not functions:
            last = _drop_strings(rest).split(",")[-1].strip()
            if _BARE.match(last) and not _NOT_A_FUNCTION.match(last):
                functions = [_strip_templates(last)]
        line = text.count("\n", 0, match.start()) + 1
        found += [Registration(op, f.lstrip(":"), file, line) for f in functions if op]
    return found


def _call_arguments(text: str, start: int) -> str | None:
    """The text between the ``(`` ending at ``start`` and its matching ``)``."""
    depth = 1
    i = start
    while i < len(text):
        char = text[i]
        if char == '"':
            string = _STRING.match(text, i)
            i = string.end() if string else i + 1
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        elif char == ";":
            return None
        i += 1
    return None


def _drop_strings(text: str) -> str:
    return _STRING.sub('""', text)


def matches(defined: str, registered: str) -> bool:
    """Whether a defined function (``vllm::rms_norm``) is the registered one (``rms_norm``,
    ``vllm::rms_norm``): same name, and the registration's qualification, if any, agrees."""
    defined_parts = defined.split("::")
    registered_parts = registered.split("::")
    return defined_parts[-len(registered_parts):] == registered_parts


# ----------------------------------------------------------------------------- tests


def calls_in(text: str, ops: Iterable[str]) -> list[str]:
    """Which of ``ops`` a test file's text calls, in the ways vLLM's kernel tests call ops."""
    aliases = {"ops"}
    for match in _CUSTOM_OPS_ALIAS.finditer(text):
        aliases.add(next(g for g in match.groups() if g))
    imported = set()
    for match in _CUSTOM_OPS_NAMES.finditer(text):
        for item in match.group(1).split(","):
            words = item.split()
            if words:
                imported.add(words[-1] if len(words) == 3 and words[1] == "as" else words[0])
    found = []
    prefix = "|".join(sorted(map(re.escape, aliases)))
    for op in sorted(set(ops)):
        name = re.escape(op)
        called = re.search(rf"(?<![\w.])(?:torch\.ops\.\w+|{prefix})\.{name}\b", text)
        if called or (op in imported and re.search(rf"(?<![\w.]){name}\s*\(", text)):
            found.append(op)
    return found


def test_files(root: Path) -> list[Path]:
    """pytest's default test files under ``tests/kernels/``."""
    base = root / TESTS_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*.py")
                  if p.name.startswith("test_") or p.name.endswith("_test.py"))


# ----------------------------------------------------------------------------- the pick


@dataclass
class Picker:
    """Picks for one build dir; remembers what it read while the files are unchanged (the
    watcher asks once per save)."""

    root: Path
    build_dir: Path
    _texts: dict[str, tuple[tuple[int, int], str]] = field(default_factory=dict)

    def pick(self, changed: Iterable[Path | str], *, where: str = "") -> Pick:
        """The tests for ``changed`` files (absolute, or relative to the checkout)."""
        root = self.root
        changed_abs = {os.path.normpath(os.path.join(root, os.fspath(c))) for c in changed}
        units = compile_units(self.build_dir)
        by_source: dict[str, list[str]] = {}
        for obj, unit in units.items():
            by_source.setdefault(unit.source, []).append(obj)
        reached: dict[str, str] = {}  # unit source -> the changed file that reached it ("": it)
        for path in sorted(changed_abs):
            if path in by_source:
                reached[path] = ""
        headers = changed_abs - set(by_source)
        if headers:
            for obj, deps in ninja_deps(self.build_dir).items():
                hit = headers.intersection(deps)
                including = units.get(obj)
                if hit and including is not None and including.source not in reached:
                    reached[including.source] = min(hit)
        own = {s: why for s, why in reached.items() if self._own(s)}
        if not own:
            return Pick([], {}, where=where)
        nm = find_nm(self.build_dir)
        table = self._registrations(by_source)
        result: list[UnitOps] = []
        for source in sorted(own):
            entry = UnitOps(self._rel(source), because=self._rel(own[source]) if own[source]
                            else "")
            built = [Path(o) for o in by_source[source] if Path(o).is_file()]
            if not built:
                entry.problem = (f"not compiled in {self.build_dir.name} yet: no object to read "
                                 "the functions it defines from")
            else:
                functions = defined_functions(built[0], nm=nm)
                entry.ops = sorted({r.op for r in table for f in functions
                                    if matches(f, r.function)})
            result.append(entry)
        ops = {op for unit in result for op in unit.ops}
        tests: dict[str, list[str]] = {}
        if ops:
            for test in test_files(root):
                called = calls_in(self._text(test), ops)
                if called:
                    tests[self._rel(str(test))] = called
        bindings = sorted({r.file for r in table if r.op in ops})
        return Pick(result, tests, bindings=bindings, where=where)

    def _registrations(self, by_source: dict[str, list[str]]) -> list[Registration]:
        found: list[Registration] = []
        for source in sorted(by_source):
            if self._own(source):
                text = self._text(Path(source))
                if ".impl" in text or ".def" in text:
                    found += registrations(text, file=self._rel(source))
        return found

    def _own(self, path: str) -> bool:
        """A file of the checkout itself: not a fetched dependency, a build dir or a venv."""
        rel = os.path.relpath(path, self.root)
        if rel.startswith("..") or rel.startswith(_NOT_OWN):
            return False
        return os.path.realpath(path).startswith(os.path.realpath(self.root) + os.sep) and not \
            os.path.realpath(path).startswith(os.path.realpath(self.build_dir) + os.sep)

    def _text(self, path: Path) -> str:
        key = str(path)
        try:
            st = path.stat()
        except OSError:
            return ""
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._texts.get(key)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        self._texts[key] = (stamp, text)
        return text

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)


def is_source(path: str) -> bool:
    return path.endswith(_SOURCE_SUFFIXES)
