#!/bin/bash
# usage: noop.sh ROUNDS ; alternating no-op builds, bytecode-compiled install (p3) vs plain (p4)
export VLLM_TARGET_DEVICE=cpu
for i in $(seq 1 $1); do
  for n in 3 4; do
    b=$([ $n = 3 ] && echo toolbin || echo toolbin2)
    cd /tmp/sur/p$n/vllm
    s=$(date +%s.%N); CCACHE_DIR=/tmp/sur/p$n/cc /tmp/sur/$b/vllm-dev build --plain >/dev/null 2>&1; e=$(date +%s.%N)
    echo "$n $(echo "$e - $s" | bc)"
  done
done
