#!/usr/bin/env bash
# MFU of the paper's S encoder (305M, 20 layers, width 1024) at sequence 512 in bfloat16 on one
# NVIDIA GPU, with the real train step (bench/mfu.py). Prepared for the lent H100/H200 machine:
# its image has jax, flax and optax but not gin-config, which travels as a wheel in .whl/:
#   echo /.whl/ >> .git/info/exclude && python -m pip download gin-config==0.5.0 --no-deps -d .whl
# then run `bash bench/gpu.sh` there (it needs no network). Prints one table per setting, plus the
# device. --nominal_tflops is the H100 SXM dense bf16 figure (989); on an H200 it is the same.
# The same commands run on CPU with SMOKE=1 (tiny config, seq 64) to check the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
"$PY" -c "import gin" 2>/dev/null || "$PY" -m pip install -q --no-index --find-links .whl gin-config
if [[ "${SMOKE:-0}" == 1 ]]; then
  "$PY" bench/mfu.py --model configs/model/tiny.gin --batch 16 --seq 64 --steps 2 --warmup 1
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# batch x remat: no remat needs the most memory; "dots" saves matmul outputs; "full" recomputes.
for setting in "32 none" "64 dots" "128 full" "256 full"; do
  set -- $setting
  "$PY" bench/mfu.py --model configs/model/s.gin --batch "$1" --seq 512 --dtype bfloat16 --remat "$2" \
    --steps 10 --warmup 3 --nominal_tflops 989 || echo "batch $1 remat $2: failed (out of memory?)"
done
