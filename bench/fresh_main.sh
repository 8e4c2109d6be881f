#!/bin/bash
# The README's first command as a new user runs it: a fresh clone of this checkout's HEAD and a fresh
# venv, every output line timestamped, then the wall time of each part (install; training, which
# includes building the site corpora; evaluation). Prints everything; keeps nothing outside WORK.
#   bash bench/fresh_main.sh [WORK]     (default WORK: /tmp/cpt_jax_fresh; it is emptied first)
set -euo pipefail
export PYTHONUNBUFFERED=1
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=${1:-/tmp/cpt_jax_fresh}
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%T)" "$line"; done; }
quiet() { grep --line-buffered -v '^WARNING\|absl' || true; }
rm -rf "$work" && mkdir -p "$work"
git clone -q "$repo" "$work/repo" && cd "$work/repo"
python -m venv "$work/venv"
# shellcheck disable=SC1091  # created just above
. "$work/venv/bin/activate"
echo "$(date +%T) START $(git rev-parse --short HEAD), $(nproc) cores"
t0=$(date +%s)
pip install -q -r requirements.txt 2>&1 | stamp
t1=$(date +%s)
python -m cpt_jax.train --gin_file=configs/experiments/minilm_cpt.gin 2>&1 | quiet | stamp
t2=$(date +%s)
python -m cpt_jax.evaluate --checkpoint outputs/minilm_cpt --tasks site_code,site_text --max_pairs 1000 \
  --max_len 256 --classification stdlib_packages 2>&1 | quiet | stamp
t3=$(date +%s)
echo "install $((t1 - t0)) s, training (with the data build) $((t2 - t1)) s, evaluation $((t3 - t2)) s, total $((t3 - t0)) s"
