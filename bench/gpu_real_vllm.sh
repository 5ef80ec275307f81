#!/usr/bin/env bash
# GPU validation of vllm-dev on the real vLLM 0.33.0 tree, CUDA target (run on the lent GPU
# machine from the repository root; see bench/gpu_prepare.sh for what it needs there):
#   1. doctor, prime (arch picked from the GPU), build cumem_allocator + _moe_C_stable_libtorch,
#      verify, one op of torch.ops._moe_C on the GPU against a torch reference;
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
  step "op check"
  run python - <<'EOF'
import glob, importlib.util, sys, torch
path = glob.glob("vllm/_moe_C_stable_libtorch*.so")[0]
spec = importlib.util.spec_from_file_location("vllm._moe_C_stable_libtorch", path)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
ops = torch.ops._moe_C
torch.manual_seed(0)
for dtype in (torch.float32, torch.bfloat16):
    x = torch.randn(257, 4, 1024, device="cuda", dtype=dtype)
    out = torch.empty(257, 1024, device="cuda", dtype=dtype)
    ops.moe_sum(x, out)
    ref = x.float().sum(dim=1).to(dtype)
    err = (out.float() - ref.float()).abs().max().item()
    print(f"moe_sum {dtype}: max abs error {err:.3g} against torch.sum")
    assert torch.allclose(out.float(), ref.float(), atol=1e-2 if dtype == torch.bfloat16 else 1e-5)
logits = torch.randn(64, 16, device="cuda")
w = torch.empty(64, 2, device="cuda"); idx = torch.empty(64, 2, device="cuda", dtype=torch.int32)
tok = torch.empty(64, 2, device="cuda", dtype=torch.int32)
try:
    ops.topk_softmax(w, idx, tok, logits, True)
    rw, ri = torch.softmax(logits, -1).topk(2, -1)
    rw = rw / rw.sum(-1, keepdim=True)
    print("topk_softmax: ids match:", bool((ri.int().sort(-1).values == idx.sort(-1).values).all()),
          "max weight error", (w.sort(-1).values - rw.sort(-1).values).abs().max().item())
except Exception as exc:  # the signature differs between versions: moe_sum is the check
    print("topk_softmax not checked:", exc)
print("ops in torch.ops._moe_C:", len([n for n in dir(ops) if not n.startswith("_")]))
EOF
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
