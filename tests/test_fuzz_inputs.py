"""Property-based fuzzing of every file vllm-dev reads: preset templates, an existing
CMakeUserPresets.json, invoke.yaml, and vllm-dev's own state files (vllm-dev-build.json,
.vllm-dev/setup.json, the lock's holder note).

Properties: random or malformed content never raises anything but :class:`VllmDevError` (whose
text is one line), a user's file is never lost (unchanged, or replaced only after a byte-identical
backup, or merged with every one of the user's presets kept), and a corrupt state file is set
aside byte for byte and rebuilt with a message. Most cases call the core in-process; a few go
through the real console script to prove there is no traceback end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vllm_dev.config.declarations import SETTINGS
from vllm_dev.config.settings import Settings
from vllm_dev.errors import VllmDevError
from vllm_dev.presets import render as presets_mod
from vllm_dev.presets.user_presets import write_user_presets
from vllm_dev.process.locking import HOLDER_NAME, read_holder
from vllm_dev.state import build_record, records
from vllm_dev.state.build_record import BuildRecord, is_marked_build_dir
from vllm_dev.state.layout import BUILD_RECORD, SETUP
from vllm_dev.steps.setup import SETUP_FORMAT

from conftest import VLLM_DEV, Project, clean_env

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def one_line(exc: VllmDevError) -> None:
    assert str(exc) and "\n" not in str(exc), repr(str(exc))


def as_bytes(value: Any, mode: str, raw: bytes) -> bytes:
    if mode == "json":
        return json.dumps(value).encode()
    if mode == "truncated":
        text = json.dumps(value).encode()
        return text[: max(0, len(text) - 1)]
    return raw


file_bytes = st.tuples(json_values, st.sampled_from(["json", "truncated", "raw"]),
                       st.binary(max_size=64)).map(lambda t: as_bytes(*t))

# Templates: mostly well-shaped objects with wrong types here and there, plus garbage.
template_keys = st.sampled_from(["description", "displayName", "buildType", "cacheVariables",
                                 "environment", "binaryDir", "unknown"])
template_docs = st.one_of(
    st.dictionaries(template_keys, json_values, max_size=5).map(json.dumps).map(str.encode),
    file_bytes)
stems = st.sampled_from(["release", "debug", "bad name", "-dash", "vllm-dev-base", "ok.2", "é"])


def _inputs(device: str = "cpu") -> presets_mod.PresetInputs:
    return presets_mod.PresetInputs(python="/usr/bin/python3", device=device, jobs=2,
                                    nvcc_threads=1, make_program="/usr/bin/ninja",
                                    nvcc="/usr/local/cuda/bin/nvcc", launcher="ccache")


@pytest.mark.unit
@FUZZ
@given(files=st.lists(st.tuples(stems, template_docs), min_size=1, max_size=3))
def test_fuzzed_templates_load_render_or_fail_in_one_line(tmp_path: Path,
                                                          files: list[tuple[str, bytes]]) -> None:
    directory = tmp_path / "presets"
    directory.mkdir(exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    for stem, data in files:
        (directory / f"{stem}.json").write_bytes(data)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    try:
        templates = presets_mod.load_templates(directory)
        for template in templates.values():
            try:
                presets_mod.resolve_binary_dir(template, source_dir=tmp_path / "checkout")
            except VllmDevError as exc:
                one_line(exc)
        for device in ("cpu", "cuda"):
            document = presets_mod.render(templates, _inputs(device))
            json.loads(presets_mod.dumps(document))  # always valid JSON
    except VllmDevError as exc:
        one_line(exc)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before  # never rewritten


preset_entries = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["mine", "release", "debug", "vllm-dev-base",
                                                    "other"])},
                          optional={"inherits": json_values, "binaryDir": json_values}),
    json_values)
vendor_entries = st.one_of(
    json_values,
    st.fixed_dictionaries({"vllm-dev": st.fixed_dictionaries(
        {}, optional={"owned": st.one_of(json_values, st.lists(st.sampled_from(
            ["release", "debug", "vllm-dev-base", "mine"]), max_size=4)),
            "merged": json_values, "generator": json_values})}))
user_docs = st.one_of(
    st.fixed_dictionaries({}, optional={
        "version": json_values,
        "configurePresets": st.one_of(st.lists(preset_entries, max_size=3), json_values),
        "buildPresets": st.one_of(st.lists(preset_entries, max_size=3), json_values),
        "testPresets": json_values,
        "vendor": vendor_entries,
    }).map(lambda d: json.dumps(d, indent=1).encode()),
    file_bytes)


def _ours(templates: dict[str, presets_mod.PresetTemplate]) -> dict[str, Any]:
    return presets_mod.render(templates, _inputs())


OURS = _ours(presets_mod.load_templates(presets_mod.bundled_presets_dir()))


def _user_presets(doc: Any, owned: set[str]) -> list[Any]:
    """The user's own preset entries of a parsed document (those vllm-dev does not own)."""
    kept = []
    for kind in ("configurePresets", "buildPresets"):
        entries = doc.get(kind) if isinstance(doc, dict) else None
        if isinstance(entries, list):
            kept += [p for p in entries
                     if isinstance(p, dict) and p.get("name") not in owned]
    return kept


@pytest.mark.unit
@FUZZ
@given(existing=user_docs, merge=st.booleans(), force=st.booleans())
def test_existing_user_presets_are_never_lost(tmp_path: Path, existing: bytes, merge: bool,
                                              force: bool) -> None:
    root = tmp_path / "checkout"
    root.mkdir(exist_ok=True)
    for old in root.iterdir():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    path = root / "CMakeUserPresets.json"
    backup_dir = root / ".vllm-dev" / "backups"
    path.write_bytes(existing)
    try:
        result = write_user_presets(path, OURS, merge=merge, force=force)
    except VllmDevError as exc:
        one_line(exc)
        assert path.read_bytes() == existing
        assert [p.name for p in root.iterdir()] == [path.name]  # no stray files
        return
    after = path.read_bytes()
    json.loads(after)
    backups = sorted(backup_dir.iterdir()) if backup_dir.is_dir() else []
    assert [p.name for p in root.iterdir() if p.name != ".vllm-dev"] == [path.name]
    if after == existing:
        return
    if result.backup is not None:
        assert backups == [result.backup] and result.backup.read_bytes() == existing
        return
    # No backup: only allowed over a file vllm-dev wrote; a merged one keeps the user's presets.
    previous = json.loads(existing)
    entry = previous["vendor"]["vllm-dev"]
    assert isinstance(entry, dict)
    if entry.get("merged"):
        listed = entry.get("owned")
        owned = {n for n in listed if isinstance(n, str)} if isinstance(listed, list) else set()
        new = json.loads(after)
        for preset in _user_presets(previous, owned | {"release", "debug", "vllm-dev-base"}):
            assert preset in new["configurePresets"] + new["buildPresets"], preset


STATE_NAMES = [BUILD_RECORD, SETUP]
FORMATS = {BUILD_RECORD: build_record.FORMAT, SETUP: SETUP_FORMAT}


@pytest.mark.unit
@FUZZ
@given(data=file_bytes, name=st.sampled_from(STATE_NAMES))
def test_corrupt_state_files_are_set_aside_byte_for_byte(tmp_path: Path, data: bytes, name: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    directory = tmp_path / "state"
    directory.mkdir(exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    path = directory / name
    path.write_bytes(data)
    capsys.readouterr()
    records.load(FORMATS[name], path, lambda body: body)
    message = capsys.readouterr().err
    asides = [p for p in directory.iterdir() if ".corrupt-" in p.name]
    if not asides:  # a JSON object: read, or another kind's (ignored); kept either way
        assert path.read_bytes() == data
        if name == BUILD_RECORD:
            try:  # any object shape loads, is ignored or set aside, or stops in one line
                BuildRecord.load(directory)
            except VllmDevError as exc:
                one_line(exc)
            is_marked_build_dir(directory)
        return
    assert not path.exists() and len(asides) == 1
    assert asides[0].read_bytes() == data
    assert message.count("\n") == 1 and "moved to" in message and "rebuilding" in message


@pytest.mark.unit
def test_two_corruptions_in_one_second_keep_both_copies(tmp_path: Path) -> None:
    path = tmp_path / SETUP
    for data in (b"{bad", b"[1, 2]", b"\xff"):
        path.write_bytes(data)
        assert records.load(SETUP_FORMAT, path, lambda body: body).value is None
    kept = sorted(p.read_bytes() for p in tmp_path.iterdir())
    assert kept == sorted([b"{bad", b"[1, 2]", b"\xff"])


# Lock holder notes: mostly well-formed ones (any pid, command and start time a note can carry:
# dead, huge or negative pids, NaN or far-future times), plus garbage and wrong types.
note_fields = st.fixed_dictionaries({
    "pid": st.one_of(st.integers(), st.sampled_from([0, 1, os.getpid(), 2**31 - 1, 2**31,
                                                    2**63, -1])),
    "command": st.text(max_size=40),
    "started": st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                         st.integers(min_value=-(2**64), max_value=2**64)),
})
holder_notes = st.one_of(
    note_fields.map(lambda note: ("valid", json.dumps(note).encode())),
    st.tuples(note_fields, st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    .map(lambda t: ("valid", json.dumps({**t[1], **t[0]}).encode())),
    file_bytes.map(lambda data: ("any", data)))


@pytest.mark.unit
@FUZZ
@given(note=holder_notes)
def test_lock_holder_notes_of_any_content_are_harmless(tmp_path: Path,
                                                       note: tuple[str, bytes]) -> None:
    kind, data = note
    (tmp_path / HOLDER_NAME).write_bytes(data)
    holder = read_holder(tmp_path)
    if kind == "valid":  # a well-formed note is read back as written
        written = json.loads(data)
        assert holder is not None
        assert (holder.pid, holder.command) == (written["pid"], written["command"])
        assert holder.started == float(written["started"]) or holder.started != holder.started
    if holder is not None:
        assert str(holder.pid) in holder.describe()
        assert isinstance(holder.alive, bool)


config_values = st.dictionaries(
    st.sampled_from([*(s.config_key for s in SETTINGS), "unknown"]), json_values, max_size=5)


@pytest.mark.unit
@FUZZ
@given(config=config_values)
def test_any_invoke_config_values_resolve_or_fail_in_one_line(config: dict[str, Any]) -> None:
    try:
        resolved = Settings.resolve(flags={}, environ={}, config=config)
    except VllmDevError as exc:
        one_line(exc)
        return
    for name in ("source", "python", "device", "preset", "arch", "cache", "presets_dir"):
        value = getattr(resolved, name)
        assert value is None or isinstance(value, str)
    assert isinstance(resolved.no_wait, bool)


INVOKE_YAMLS = [b"vllm_dev: [\n", b"vllm_dev: 5\n", b"- 1\n", b"\xff\xfe\x00",
                b"vllm_dev:\n  jobs: [1]\n",
                b"vllm_dev:\n  source: {a: 1}\n", b"vllm_dev:\n  preset: 7\n", b": : :\n",
                b"vllm_dev:\n  no_wait: maybe\n", b"run: 5\n", b"\t\tvllm_dev:\n"]


@pytest.mark.unit
@pytest.mark.parametrize("content", INVOKE_YAMLS, ids=range(len(INVOKE_YAMLS)))
def test_bad_invoke_yaml_through_the_console_script(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "invoke.yaml").write_bytes(content)
    done = subprocess.run([VLLM_DEV, "clean"], cwd=tmp_path, text=True, capture_output=True,
                          env=clean_env(), stdin=subprocess.DEVNULL, check=False, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vllm-dev: "), done.stderr
    assert (tmp_path / "invoke.yaml").read_bytes() == content


def test_corrupt_state_and_presets_through_a_real_build(project: Project) -> None:
    """End to end: a corrupt build record and setup record are set aside with a message and the
    build still completes; a corrupt CMakeUserPresets.json is refused in one line, kept as is."""
    project.run("build")
    record = project.build_dir / BUILD_RECORD
    record.write_bytes(b'{"kind": "vllm-dev build dir", "fingerprint": ')
    setup_record = project.root / ".vllm-dev" / "setup.json"
    if setup_record.exists():
        setup_record.write_bytes(b"\x00\xff not json")
    done = project.run("build")
    assert "was corrupt" in done.stderr and "rebuilding it" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(project.build_dir.glob(f"{BUILD_RECORD}.corrupt-*"))
    assert project.value("_C") == 42
    user = project.root / "CMakeUserPresets.json"
    user.write_bytes(b'{"version": 6, "configurePresets": [')
    done = project.run("build", check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is not a valid presets file" in done.stderr.strip().splitlines()[-1]
    assert user.read_bytes() == b'{"version": 6, "configurePresets": ['
