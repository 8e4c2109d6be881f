#!/usr/bin/env bash
# N training processes on this machine, each with its own fake CPU devices, joined over gloo.
#   launch/local.sh NUM_PROCESSES DEVICES_PER_PROCESS [train flags...]
# e.g. launch/local.sh 2 4 --gin_file=configs/experiments/tiny_code.gin --gin.TrainConfig.num_steps=20
set -euo pipefail
n=${1:?usage: launch/local.sh NUM_PROCESSES DEVICES_PER_PROCESS [train flags...]}
d=${2:?usage: launch/local.sh NUM_PROCESSES DEVICES_PER_PROCESS [train flags...]}
shift 2
port=${COORDINATOR_PORT:-$((20000 + RANDOM % 20000))}
cd "$(dirname "$0")/.."
# XLA:CPU steps run faster on tcmalloc than on glibc malloc (bench/README.md, "The allocator"):
# preload it when installed, unless LD_PRELOAD is already set or CPT_JAX_PRELOAD_TCMALLOC=0.
if [[ -z "${LD_PRELOAD:-}" && "${CPT_JAX_PRELOAD_TCMALLOC:-1}" != 0 ]]; then
  tcmalloc=$(python3 -c 'from cpt_jax.parallel.runtime import find_tcmalloc; print(find_tcmalloc() or "")')
  if [[ -n "$tcmalloc" ]]; then export LD_PRELOAD=$tcmalloc; fi
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < n; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=$d ${XLA_FLAGS:-}" JAX_PLATFORMS=cpu \
    python3 -m cpt_jax.train "$@" --coordinator_address="localhost:$port" --num_processes="$n" --process_id="$i" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
