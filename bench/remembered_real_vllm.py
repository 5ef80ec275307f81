#!/usr/bin/env python3
"""What recompiles, on the real vLLM tree (CPU), when a setting is given once, dropped, or the
cache must be fresh; and what an upgrade from an older vllm-dev costs (issue 19's figures).

Each case runs on its own clone of the tier's cached tree (tests/real_vllm.py), building the two
one-file targets (``spinloop``, ``fs_io_C``), with a private ccache, and reports for the step
measured: whether cmake configured (and with ``--fresh`` or ``-U``), the objects ninja recompiled
(from ``.ninja_log``), ccache's hits and misses, and the wall time:

* ``define kept``   a build, ``prime -D VLLM_DEV_PROBE=1``, then a plain ``build`` (the issue's
                    case: an older vllm-dev dropped the define with a fresh cache);
* ``-U``            then ``build -U VLLM_DEV_PROBE`` (a define no source reads: goal 0 objects);
* ``fresh``         ``prime -D VLLM_DEV_PROBE_DIR=/tmp``, then ``build -U VLLM_DEV_PROBE_DIR``
                    (a ``*_DIR`` name: a fresh cache, on purpose);
* ``remote``        ``build --cache-remote file://...``, changed, then ``--cache none``;
* ``upgrade``       with ``--old VLLM_DEV`` (an install of an older vllm-dev): the old one
                    builds, then this one (the one reconfigure after an upgrade), then this one
                    again; the same ``define kept`` case with the old one, for comparison.

    VLLM_DEV_REAL_VLLM=../shared/testbeds/vllm-0.33.0-src.tar.xz \\
        python bench/remembered_real_vllm.py --old /tmp/oldmain/.venv/bin/vllm-dev --json out.json

Not a test: the tests (tests/test_real_vllm.py) assert the outcomes; this prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import real_vllm as rv  # noqa: E402

TARGETS = ["--target", "spinloop", "--target", "fs_io_C"]
NEW = str(Path(sys.executable).parent / "vllm-dev")


class Clone:
    def __init__(self, repo: Path, work: Path, name: str, python: Path, onednn: Path | None):
        self.root = rv.fresh_clone(repo, work / name)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("VLLM_DEV_", "CCACHE_", "INVOKE_"))
                    and k != "VIRTUAL_ENV"}
        self.env.update({"VLLM_TARGET_DEVICE": "cpu", "CCACHE_DIR": str(work / f"cc-{name}"),
                         "VLLM_DEV_PYTHON": str(python), "NO_COLOR": "1"})
        if onednn:
            self.env["FETCHCONTENT_SOURCE_DIR_ONEDNN"] = str(onednn)

    def log_size(self) -> int:
        log = self.root / "cmake-build-release" / ".ninja_log"
        return log.stat().st_size if log.exists() else 0

    def run(self, exe: str, *args: str) -> dict[str, object]:
        mark = self.log_size()
        start = time.monotonic()
        done = subprocess.run([exe, *args], cwd=self.root, env=self.env, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, check=False)
        seconds = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"{exe} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        log = self.root / "cmake-build-release" / ".ninja_log"
        new = log.read_bytes()[mark:].decode() if log.exists() else ""
        objects = [ln.split("\t")[3] for ln in new.splitlines()
                   if ln and not ln.startswith("#") and ln.split("\t")[3].endswith(".o")]
        configure = re.search(r"^vllm-dev: \$ .*cmake --preset release(.*)$", done.stderr, re.M)
        cache = re.search(r"ccache: (\d+) hit\(s\), (\d+) miss", done.stderr)
        reason = re.search(r"^vllm-dev: (reconfiguring .*)$", done.stderr, re.M)
        return {"command": " ".join(args), "seconds": round(seconds, 1),
                "configured": bool(configure),
                "configure_args": configure.group(1).strip() if configure else None,
                "objects": len(objects), "ccache_hits": int(cache.group(1)) if cache else None,
                "ccache_misses": int(cache.group(2)) if cache else None,
                "line": reason.group(1) if reason else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", help="an older vllm-dev executable (the upgrade case)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    source = rv.RealSource.from_env()
    if source is None:
        print(rv.SKIP_REASON, file=sys.stderr)
        return 2
    repo, onednn = rv.adapted_repo(source), rv.onednn_dir(source)
    work = Path(tempfile.mkdtemp(prefix="vllm-dev-remembered-"))
    python = rv.make_target_venv(work / ".venv", repo)
    rows: list[dict[str, object]] = []

    def row(case: str, tool: str, result: dict[str, object]) -> None:
        rows.append({"case": case, "tool": tool, **result})
        print(f"{case:12} {tool:4} {result['command']:48} configured={result['configured']!s:5}"
              f" {result['configure_args'] or '':22} objects={result['objects']} "
              f"ccache={result['ccache_hits']}/{result['ccache_misses']} "
              f"{result['seconds']} s", flush=True)
        if result["line"]:
            print(f"{'':17} {result['line']}", flush=True)

    c = Clone(repo, work, "new", python, onednn)
    c.run(NEW, "build", *TARGETS)
    c.run(NEW, "prime", "-D", "VLLM_DEV_PROBE=1")
    row("define kept", "new", c.run(NEW, "build", *TARGETS))
    row("-U", "new", c.run(NEW, "build", "-U", "VLLM_DEV_PROBE", *TARGETS))
    c.run(NEW, "prime", "-D", "VLLM_DEV_PROBE_DIR=/tmp")
    row("fresh", "new", c.run(NEW, "build", "-U", "VLLM_DEV_PROBE_DIR", *TARGETS))
    for extra in (["--cache-remote", f"file://{work}/remote-a"],
                  ["--cache-remote", f"file://{work}/remote-b"], ["--cache", "none"]):
        row("remote", "new", c.run(NEW, "build", *extra, *TARGETS))
    if args.old:
        o = Clone(repo, work, "old", python, onednn)
        o.run(args.old, "build", *TARGETS)
        o.run(args.old, "prime", "-D", "VLLM_DEV_PROBE=1")
        row("define kept", "old", o.run(args.old, "build", *TARGETS))
        u = Clone(repo, work, "upgrade", python, onednn)
        row("upgrade", "old", u.run(args.old, "build", *TARGETS))
        row("upgrade", "new", u.run(NEW, "build", *TARGETS))
        row("upgrade", "new", u.run(NEW, "build", *TARGETS))
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"),
                                         "machine": os.uname().nodename,
                                         "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
