#!/usr/bin/env bash
# Affected-target builds on the real vLLM 0.33.0 tree, CUDA target (issue 12), for the lead's GPU
# run. From the repository root on the lent GPU machine (prepared as bench/gpu_prepare.sh says:
# .testbeds/ and .whl/ carried):
#     bench/gpu_affected.sh            # the affected-target proof and timing (~5 min on an H200)
#     FULL=1 bench/gpu_affected.sh     # also the whole CUDA build in a second clone (~9 min more)
# Works in fresh clones of the prepared tree ($WORK/affected-*), never in its build dir, so the
# other GPU scripts' builds stay warm. No precompiled wheel exists offline: W is given with
# `--since HEAD` (the tree as unpacked, with the testbed's externals switch).
#   1. a new __global__ in csrc/moe/fused_globalize_align_block_size.cu (committed edit):
#      `--dry build` names the affected targets and why; the first build into an empty build dir
#      compiles objects of _moe_C_stable_libtorch only (.ninja_log), installs one .so; timed;
#   2. an edit of a csrc/moe header: `--dry build` lists the targets nvcc's -M scan finds, and
#      the scan's cost (the vllm-dev line says "header scan of N unit(s) took S s");
#   3. FULL=1: `build --all` of the same edit in another clone, timed: the whole CUDA build.
# Everything goes to $OUT/gpu_affected.log.
source "$(dirname "$0")/gpu_prepare.sh"
set +e
LOG=$OUT/gpu_affected.log
: >"$LOG"
step() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
run() { echo "\$ $*" | tee -a "$LOG"; local t0=$(date +%s.%N); "$@" 2>&1 | tee -a "$LOG";
        local rc=${PIPESTATUS[0]}; echo "--> exit $rc in $(python3 -c "import time; print(round(time.time() - $t0, 2))") s" | tee -a "$LOG"; return $rc; }
# A fresh clone, configured once, with the kernels vLLM's configure generates into csrc/ (Marlin,
# Machete) excluded from git as vLLM's own .gitignore excludes them (the sdist has no .gitignore:
# left untracked they would count as changes, and their targets as affected).
clone() { rm -rf "$1" && git clone -q "$TREE" "$1" && cd "$1" && run vllm-dev prime \
          && git ls-files --others --exclude-standard csrc >> .git/info/exclude; }
EDIT=csrc/moe/fused_globalize_align_block_size.cu
probe() { printf '\n__global__ void vllm_dev_affected_probe_kernel(int* out) { if (out) *out = 4343; }\n' >> "$EDIT"
          git -c user.name=t -c user.email=t@t commit -qam "one kernel edit"; }

step "machine"; run nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader; nproc

step "1. one committed kernel edit, first build into an empty build dir, --since HEAD~1"
clone "$WORK/affected-moe"; probe
run vllm-dev --dry build --plain --since HEAD~1
run vllm-dev build --plain --since HEAD~1
echo "objects compiled (per target):" | tee -a "$LOG"
grep -v '^#' cmake-build-release/.ninja_log | cut -f4 | grep '\.o$' | sed -E 's#.*CMakeFiles/([^/]+)\.dir/.*#\1#' | sort | uniq -c | tee -a "$LOG"
grep -v '^#' cmake-build-release/.ninja_log | cut -f4 | grep -c '\.o$' | sed 's/^/objects in all: /' | tee -a "$LOG"
cuobjdump -symbols vllm/_moe_C_stable_libtorch*.so 2>/dev/null | grep -c vllm_dev_affected_probe | sed 's/^/probe kernel symbols in the installed .so: /' | tee -a "$LOG"
ls -la vllm/*.so | tee -a "$LOG"
run vllm-dev report

step "2. a csrc/moe header edit: --dry (nvcc -M scan)"
header=$(git ls-files 'csrc/moe/*.h' 'csrc/moe/*.cuh' | head -1)
echo "header: $header" | tee -a "$LOG"
echo "// edited" >> "$header"
run vllm-dev --dry build --plain --since HEAD~1
run vllm-dev --dry build --plain --since HEAD~1   # the second selection reuses the scans
git checkout -q "$header"

if [[ ${FULL:-} == 1 ]]; then
  step "3. the same edit, --all (the whole CUDA build, externals skipped)"
  clone "$WORK/affected-all"; probe
  run vllm-dev build --plain --all
  grep -v '^#' cmake-build-release/.ninja_log | cut -f4 | grep -c '\.o$' | sed 's/^/objects in all: /' | tee -a "$LOG"
  run vllm-dev report
fi
cp "$WORK"/affected-moe/cmake-build-release/vllm-dev-report.json "$OUT/affected-report.json" 2>/dev/null
exit 0
