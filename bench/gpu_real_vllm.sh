#!/usr/bin/env bash
# GPU validation of vllm-dev on the real vLLM 0.33.0 tree, CUDA target (run on the lent GPU
# machine from the repository root; see bench/gpu_prepare.sh for what it needs there):
#   1. doctor, prime (arch picked from the GPU), build cumem_allocator + _moe_C_stable_libtorch,
#      verify, moe_sum and topk_softmax on the GPU against torch (bench/check_moe_ops.py);
#   2. a one-file edit (a new __global__ in csrc/moe/fused_globalize_align_block_size.cu):
#      exactly one object recompiled per .ninja_log, one file installed;
#   3. with `bench` as first argument: bench/bench.py side by side against the raw commands
#      (noop, onefile, jobs) for _moe_C_stable_libtorch.
# Everything it prints goes to $OUT/gpu_real_vllm.log too.
source "$(dirname "$0")/gpu_prepare.sh"
set +e
LOG=$OUT/gpu_real_vllm.log
step() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
run() { echo "\$ $*" | tee -a "$LOG"; local t0=$(date +%s.%N); "$@" 2>&1 | tee -a "$LOG";
        local rc=${PIPESTATUS[0]}; echo "--> exit $rc in $(python3 -c "import time; print(round(time.time() - $t0, 2))") s" | tee -a "$LOG"; return $rc; }
cd "$TREE"
BD=$TREE/cmake-build-release
TARGETS=(--target cumem_allocator --target _moe_C_stable_libtorch)

if [[ ${1:-} != bench ]]; then
  step "machine"; run nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader; nproc; free -g | head -2
  step "doctor"; run vllm-dev doctor
  step "prime"; run vllm-dev prime
  grep -E "^(TORCH_CUDA_ARCH_LIST|CUDA_ARCHS|VLLM_GPU_ARCHES|CMAKE_CUDA_ARCHITECTURES)" "$BD/CMakeCache.txt" | tee -a "$LOG"
  step "build"; run vllm-dev build --plain "${TARGETS[@]}"
  run vllm-dev report
  step "verify"; run vllm-dev verify
  step "post-build check: torch's libraries only against a full import torch"
  run python "$REPO/bench/check_light_vs_full.py" --python "$VENV/bin/python" vllm/_moe_C_stable_libtorch*.so vllm/cumem_allocator*.so
  step "op check: moe_sum and topk_softmax (vLLM 0.33.0's signature, with and without bias) against torch"
  run python "$REPO/bench/check_moe_ops.py" vllm/_moe_C_stable_libtorch*.so
  step "one-file edit"
  mark=$(wc -c < "$BD/.ninja_log")
  printf '\n__global__ void vllm_dev_gpu_probe_kernel(int* out) { if (out) *out = 4242; }\n' >> csrc/moe/fused_globalize_align_block_size.cu
  run vllm-dev build --plain "${TARGETS[@]}"
  echo "ninja steps after the edit:" | tee -a "$LOG"
  tail -c +$((mark + 1)) "$BD/.ninja_log" | grep -v '^#' | cut -f4 | tee -a "$LOG"
  cuobjdump -symbols vllm/_moe_C_stable_libtorch*.so 2>/dev/null | grep -c vllm_dev_gpu_probe | sed 's/^/probe kernel symbols in the installed .so: /' | tee -a "$LOG"
  step "no-op build"; run vllm-dev build --plain "${TARGETS[@]}"
  git checkout -q csrc/moe/fused_globalize_align_block_size.cu
fi

if [[ ${1:-} == bench ]]; then
  step "bench"
  run python3 "$REPO/bench/bench.py" --source "$TREE" --python "$VENV/bin/python" \
    --vllm-dev "$VENV/bin/vllm-dev" --target _moe_C_stable_libtorch \
    --touch csrc/moe/fused_globalize_align_block_size.cu --cases noop,onefile,jobs \
    --repeat "${REPEAT:-5}" --json "$OUT/bench-gpu-moe.json"
fi
cp "$BD/vllm-dev-report.json" "$OUT/" 2>/dev/null
exit 0
